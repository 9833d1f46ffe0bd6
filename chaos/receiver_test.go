package chaos_test

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/logmon"
)

// receiver-down: the receiver closes gracefully and stays away, then comes
// back. Nothing is lost, and the daemon does not buffer what it cannot
// send: the files are the buffer, so its memory stays flat.
func TestReceiverDown(t *testing.T) {
	outage := pick(3*time.Second, 30*time.Second)
	const rate = 2000
	w := newWorld(t, worldConfig{streams: specs("d", 10), logmon: logmon.Options{MaxFiles: 10, FileSize: 1 << 20}, pad: 200})
	feeder := feed(w.streams, rate)
	defer feeder.Stop()
	p := w.startDaemon()
	// Warm-up: two seconds of lines shipped.
	waitFor(t, 30*time.Second, "warm-up", func() bool { return w.recv.Count() >= 2*rate })
	base, err := procStatus(p.Pid(), "VmRSS")
	require.NoError(t, err)

	w.recv.Stop()
	down := time.Now()
	peak := base
	sample := time.NewTicker(100 * time.Millisecond)
	defer sample.Stop()
	for time.Since(down) < outage {
		<-sample.C
		rss, err := procStatus(p.Pid(), "VmRSS")
		require.NoError(t, err, "the daemon is gone")
		peak = max(peak, rss)
	}
	writtenDuringOutage := 0
	for _, s := range w.streams {
		writtenDuringOutage += s.Written()
	}
	require.NoError(t, w.recv.Start())
	back := time.Now()
	require.NoError(t, feeder.Stop())
	waitFor(t, 60*time.Second, "every line after the receiver came back", w.complete)
	recovered := time.Since(back)
	hwm, err := procStatus(p.Pid(), "VmHWM")
	require.NoError(t, err)
	w.stopDaemon(p)

	rep := w.report("receiver-down")
	rep.Events = 1
	rep.Add("outage", outage)
	rep.Add("rss_start_mib", mib(base))
	rep.Add("rss_peak_outage_mib", mib(peak))
	rep.Add("rss_growth_mib", mib(peak-base))
	rep.Add("vmhwm_mib", mib(hwm))
	rep.Add("catch_up", recovered.Round(time.Millisecond))
	fmt.Println(rep.Summary())
	require.True(t, rep.OK(), "%s\n%+v", rep.Summary(), rep.PerStream)
	assert.Zero(t, rep.Duplicates, "a graceful close loses nothing the daemon counted as written")
	assert.LessOrEqual(t, peak-base, int64(20<<20), "RSS grew by more than 20 MiB while the receiver was away")
	assert.Contains(t, w.stderr(), "cannot connect to output", "the daemon noticed the outage")
}

func mib(b int64) string { return strconv.FormatFloat(float64(b)/(1<<20), 'f', 1, 64) }

// receiver-reset: the receiver resets its connection (RST) while it holds
// part of a line. Every line that arrives is valid JSON; the lines lost
// are those the kernels held when a reset hit (the torn one included),
// counted, and no more.
func TestReceiverReset(t *testing.T) {
	resets := pick(5, 20)
	const rate = 2000
	w := newWorld(t, worldConfig{streams: specs("r", 10), pad: 200})
	feeder := feed(w.streams, rate)
	defer feeder.Stop()
	p := w.startDaemon()
	for i := range resets {
		target := w.recv.Count() + 200 + rand.IntN(2000)
		waitFor(t, 30*time.Second, fmt.Sprintf("progress before reset %d", i+1), func() bool {
			return w.recv.Count() >= target && w.recv.Open() > 0
		})
		require.True(t, w.recv.ResetMidLine(10*time.Second), "reset %d: no line was ever half received", i+1)
	}
	// The last lines written before the last reset may be lost with it:
	// let every stream write on past it before stopping.
	after := w.recv.Count() + 500
	waitFor(t, 30*time.Second, "progress after the last reset", func() bool { return w.recv.Count() >= after })
	require.NoError(t, feeder.Stop())
	waitFor(t, 60*time.Second, "the last line of every stream", func() bool { w.update(); return w.tally.CaughtUp() })
	w.stopDaemon(p)

	rep := w.report("receiver-reset")
	rep.Events = resets
	gaps, maxGaps := 0, 0
	for _, n := range w.tally.Gaps() {
		gaps += n
		maxGaps = max(maxGaps, n)
	}
	// A reset throws away the torn line and what the kernels held when it
	// hit: the daemon's send queue and the receiver's receive queue,
	// measured at each reset, in the shortest lines the daemon renders.
	const minRenderedLine = 200
	held := w.recv.HeldAtResets()
	bound := resets + int(held)/minRenderedLine
	rep.Add("torn_lines", w.recv.Partial())
	rep.Add("gaps", gaps)
	rep.Add("kernel_bytes_at_resets", held)
	rep.Add("missing_bound", bound)
	fmt.Println(rep.Summary())
	assert.Zero(t, rep.Unparsed, "every line that arrived is valid JSON and one of the streams'")
	assert.Zero(t, rep.KeyCollisions+rep.KeyMismatches)
	assert.LessOrEqual(t, rep.Missing, bound, "more lost than the kernels held when the resets hit")
	assert.LessOrEqual(t, maxGaps, resets, "a stream lost lines in more places than there were resets")
	assert.Equal(t, resets, w.recv.Partial(), "each reset tore a line")
	assert.Positive(t, rep.DeliveredUnique)
}
