package chaos_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/logmon"
)

// burst-fast: a task writes 200,000 lines of about 80 bytes (16 MB) in one
// go; logmon writes them at full speed into 1 MiB files and keeps three,
// so each file lives a few milliseconds (Nomad 2.0.5 purged 83% of such a
// burst within half a second, writing at about 200 MB/s). The burst comes
// from memory, which the logmon imitation takes 32 KiB at a time as logmon
// takes it from the task's pipe, at 250 MB/s: a quarter faster than the
// real logmon managed (the imitation alone, with no pipe and no buffered
// writer, goes several times faster than any logmon). The daemon opens
// each file the moment it appears: nothing is lost.
// burstRate is logmon's speed in burst-fast, in bytes a second.
const burstRate = 250_000_000

func TestBurstFast(t *testing.T) {
	const lines = 200_000
	rounds := pick(1, 3)
	w := newWorld(t, worldConfig{streams: specs("b", 1), pad: 120, logmon: logmon.Options{MaxFiles: 3, FileSize: 1 << 20}})
	s := w.streams[0]
	p := w.startDaemon()
	require.NoError(t, s.Write(1))
	waitFor(t, 20*time.Second, "the first line", func() bool { return w.recv.Count() >= 1 })

	var slowest time.Duration
	var mbps float64
	for range rounds {
		before := s.Index()
		took, err := s.BurstAt(lines, burstRate)
		require.NoError(t, err)
		slowest = max(slowest, took)
		mbps = float64(s.Index()-before) / took.Seconds() // files of 1 MiB
		waitFor(t, 60*time.Second, "the burst to arrive", func() bool { w.update(); return w.tally.CaughtUp() })
	}
	skipped := w.metric("nlf_files_skipped_total")
	w.stopDaemon(p)

	rep := w.report("burst-fast")
	rep.Add("bursts", rounds)
	rep.Add("files", s.Index()+1)
	rep.Add("purged", len(s.Purged()))
	rep.Add("slowest_burst", slowest.Round(time.Millisecond))
	rep.Add("write_mib_per_s", fmt.Sprintf("%.0f", mbps))
	rep.Add("files_skipped_metric", skipped)
	fmt.Println(rep.Summary())

	require.Greater(t, len(s.Purged()), 10*rounds, "the burst outran logmon's retention")
	assert.Zero(t, rep.Missing, "nothing is lost")
	assert.Zero(t, rep.Duplicates)
	assert.Zero(t, rep.OrderViolations)
	assert.Zero(t, rep.Unparsed)
	assert.Zero(t, skipped)
	assert.Zero(t, countLogs(w.stderr(), "purged before it could be opened"))
}
