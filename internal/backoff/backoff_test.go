package backoff

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestDoublesWithJitterUpToItsCap(t *testing.T) {
	for range 100 {
		b := Backoff{Min: 100 * time.Millisecond, Max: time.Second}
		for i, ceiling := range []time.Duration{
			100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond,
			800 * time.Millisecond, time.Second, time.Second, time.Second,
		} {
			d := b.Next()
			assert.GreaterOrEqual(t, d, ceiling/2, "failure %d", i+1)
			assert.LessOrEqual(t, d, ceiling, "failure %d", i+1)
		}
		b.Reset()
		assert.LessOrEqual(t, b.Next(), 100*time.Millisecond, "a success starts over")
	}
}
