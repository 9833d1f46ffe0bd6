package backoff

import (
	"context"
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

func TestSleepWaitsOrStopsWithItsContext(t *testing.T) {
	start := time.Now()
	assert.True(t, Sleep(context.Background(), 20*time.Millisecond), "a whole wait")
	assert.GreaterOrEqual(t, time.Since(start), 20*time.Millisecond)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start = time.Now()
	assert.False(t, Sleep(ctx, time.Hour), "an ended context cuts the wait short")
	assert.Less(t, time.Since(start), time.Minute)
	assert.False(t, Sleep(ctx, 0), "no wait at all still reports the ended context")
	assert.True(t, Sleep(context.Background(), 0))
}
