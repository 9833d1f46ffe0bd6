package enrich

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestBackoffDoublesWithJitterUpToItsCap(t *testing.T) {
	w := NewWatcher(WatcherConfig{MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second})
	for failures, ceiling := range map[int]time.Duration{
		1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 400 * time.Millisecond,
		4: 800 * time.Millisecond, 5: time.Second, 50: time.Second,
	} {
		w.failures = failures
		for range 100 {
			d := w.backoff()
			assert.GreaterOrEqual(t, d, ceiling/2, "failures=%d", failures)
			assert.LessOrEqual(t, d, ceiling, "failures=%d", failures)
		}
	}
}
