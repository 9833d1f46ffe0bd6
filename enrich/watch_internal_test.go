package enrich

import (
	"testing"
	"time"
)

func TestJitteredStaysWithin20Percent(t *testing.T) {
	const d = 30 * time.Second
	lo, hi := d, d
	for range 10000 {
		j := jittered(d)
		if j < d*8/10 || j > d*12/10 {
			t.Fatalf("jittered(%s) = %s, beyond 20%%", d, j)
		}
		lo, hi = min(lo, j), max(hi, j)
	}
	// 10,000 uniform draws come within 1% of both ends.
	if lo > d*81/100 || hi < d*119/100 {
		t.Errorf("draws span %s..%s, want about 24s..36s", lo, hi)
	}
}
