package chaos_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/fakenomad"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/scenario"
)

const apiFailed = "Nomad API request failed"

// api-flap: the Nomad API answers 500, then hangs, then answers with a body
// that is not JSON, for the length of an outage, then heals. A new
// allocation appears during the outage: its lines are delivered once the
// API answers again. Known streams never stop shipping meanwhile.
func TestAPIFlap(t *testing.T) {
	// Long enough in the short form that a pause caused by one fault
	// would stand out from a busy machine's hiccups.
	outage := pick(6*time.Second, 30*time.Second)
	w := newWorld(t, worldConfig{streams: specs("f", 8)})
	feeder := feed(w.streams, 800)
	defer feeder.Stop()
	p := w.startDaemon()
	waitFor(t, 20*time.Second, "warm-up", func() bool { return w.recv.Count() >= 400 })

	faults := []fakenomad.Fault{fakenomad.Status500, fakenomad.Hang, fakenomad.Garbage}
	down := time.Now()
	var fresh []*scenario.Stream
	var freshFeeder *scenario.Feeder
	for i, f := range faults {
		failures := strings.Count(p.Stderr(), apiFailed)
		w.api.SetFault(f)
		if f != fakenomad.Hang {
			waitFor(t, 40*time.Second, fmt.Sprintf("a request to fail with fault %s", f), func() bool {
				return strings.Count(p.Stderr(), apiFailed) > failures
			})
		}
		if f == fakenomad.Hang {
			// A new allocation is placed while nobody can list it.
			fresh = w.addStreams(specs("n", 2)...)
			freshFeeder = feed(fresh, 100)
			defer freshFeeder.Stop()
		}
		// The outage lasts its length: a timer is the point here.
		<-time.After(time.Until(down.Add(outage * time.Duration(i+1) / time.Duration(len(faults)))))
	}
	w.api.SetFault(fakenomad.NoFault)
	healed := time.Now()
	freshName := fresh[0].Name
	var firstFresh time.Time
	waitFor(t, 90*time.Second, "the new allocation's first line", func() bool {
		w.update()
		for _, l := range w.tally.Lines() {
			if l.Stream == freshName {
				firstFresh = time.Now()
				return true
			}
		}
		return false
	})
	require.NoError(t, feeder.Stop())
	require.NoError(t, freshFeeder.Stop())
	waitFor(t, 30*time.Second, "every line", w.complete)
	w.stopDaemon(p)

	rep := w.report("api-flap")
	rep.Events = len(faults)
	stall := maxStall(w.recv.Arrivals(), down, healed)
	rep.Add("outage", outage)
	rep.Add("api_failures_logged", strings.Count(w.stderr(), apiFailed))
	rep.Add("max_stall_known_streams", stall.Round(time.Millisecond))
	rep.Add("new_alloc_delay_after_heal", firstFresh.Sub(healed).Round(time.Millisecond))
	fmt.Println(rep.Summary())
	require.True(t, rep.OK(), "%s\n%+v", rep.Summary(), rep.PerStream)
	assert.Zero(t, rep.Duplicates)
	assert.Less(t, stall, 1500*time.Millisecond, "known streams paused during the outage")
	assert.Contains(t, w.stderr(), `"status":500`)
	assert.Contains(t, w.stderr(), `"kind":"invalid"`, "the body that is not JSON is an error, not an empty list")
	assert.Contains(t, w.stderr(), "Nomad API answers again")
	assert.NotContains(t, w.stderr(), "draining stream", "no known stream was retired")
}
