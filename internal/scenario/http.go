package scenario

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/e2e"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/fakevector"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/logmon"
)

// HTTPConfig sets up the HTTP output scenarios. Zero values take the
// defaults.
type HTTPConfig struct {
	// Events is how many faults are injected (default 20).
	Events int
	// Streams are the task streams written (default DefaultStreams).
	Streams []StreamSpec
	// BatchBytes and Inflight are the daemon's --batch-bytes (default 64
	// KiB, so that a run makes many requests) and --inflight (default 2).
	BatchBytes, Inflight int
	// CheckpointInterval is the daemon's --checkpoint-interval (50ms).
	CheckpointInterval time.Duration
	// ReceiverDelay holds each answer of the fake receiver, like sinks
	// confirming (default 2ms), so that faults find requests on the way.
	ReceiverDelay time.Duration
	// Wait bounds each wait for progress (default 20s).
	Wait time.Duration
	// NodeID is passed as --node-id.
	NodeID string
	// NomadAddr, when set, is the (fake) Nomad API the daemon discovers
	// the streams' allocations through; otherwise it runs --offline.
	NomadAddr string
}

// HTTPLogmon is how the HTTP scenarios' logmon rotates.
var HTTPLogmon = logmon.Options{MaxFiles: 4, FileSize: 64 << 10, ScanLimit: 8 << 10}

func (c *HTTPConfig) setDefaults() {
	if c.Events <= 0 {
		c.Events = 20
	}
	if c.Streams == nil {
		c.Streams = DefaultStreams
	}
	if c.BatchBytes <= 0 {
		c.BatchBytes = 64 << 10
	}
	if c.Inflight <= 0 {
		c.Inflight = 2
	}
	if c.CheckpointInterval <= 0 {
		c.CheckpointInterval = 50 * time.Millisecond
	}
	if c.ReceiverDelay == 0 {
		c.ReceiverDelay = 2 * time.Millisecond
	}
	if c.Wait <= 0 {
		c.Wait = 20 * time.Second
	}
	if c.NodeID == "" {
		c.NodeID = "f0f0f0f0-1111-2222-3333-444444444444"
	}
}

// Rig is the setting of a scenario: an alloc dir written by the logmon
// imitation, a fake http_server source, and the daemon's arguments.
type Rig struct {
	T        testing.TB
	Cfg      HTTPConfig
	AllocDir string
	Ckpt     string
	Receiver *fakevector.Server
	Streams  []*Stream
	Args     []string
	start    time.Time
}

// NewRig sets up a scenario; everything is cleaned up with t.
func NewRig(t testing.TB, cfg HTTPConfig) *Rig {
	t.Helper()
	cfg.setDefaults()
	r := &Rig{T: t, Cfg: cfg, AllocDir: t.TempDir(), start: time.Now()}
	r.Ckpt = filepath.Join(t.TempDir(), "checkpoint.msgpack")
	var err error
	if r.Receiver, err = fakevector.Start(fakevector.Options{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Receiver.Close)
	r.Receiver.SetDelay(cfg.ReceiverDelay)
	if r.Streams, err = NewStreams(r.AllocDir, cfg.Streams, HTTPLogmon); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, s := range r.Streams {
			s.Close()
		}
	})
	r.Args = []string{"run", "--offline"}
	if cfg.NomadAddr != "" {
		r.Args = []string{"run", "--nomad-addr", cfg.NomadAddr}
	}
	r.Args = append(r.Args, "--alloc-dir", r.AllocDir, "--checkpoint", r.Ckpt,
		"--output", r.Receiver.URL(), "--node-id", cfg.NodeID, "--metrics-addr", "",
		"--batch-bytes", strconv.Itoa(cfg.BatchBytes), "--inflight", strconv.Itoa(cfg.Inflight), "--flush-interval", "10ms",
		"--checkpoint-interval", cfg.CheckpointInterval.String(), "--reconcile-interval", "1s")
	return r
}

// Start runs the daemon.
func (r *Rig) Start() *e2e.Process { return e2e.Start(r.T, r.Args...) }

// waitFor waits for cond, failing the test after Cfg.Wait.
func (r *Rig) waitFor(what string, cond func() bool) {
	r.T.Helper()
	if !e2e.Eventually(context.Background(), r.Cfg.Wait, cond) {
		r.T.Fatalf("scenario: gave up waiting for %s", what)
	}
}

// randomTarget is an acceptance count a little ahead of now: faults land
// after a random amount of progress.
func (r *Rig) randomTarget() int { return r.Receiver.Count() + 50 + rand.IntN(400) }

// Finish stops the writers, waits until the receiver has every line (or
// Cfg.Wait passes), stops the daemon with SIGTERM and reports.
func (r *Rig) Finish(name string, p *e2e.Process, feeder *Feeder, events int) Report {
	r.T.Helper()
	if feeder != nil {
		if err := feeder.Stop(); err != nil {
			r.T.Fatal(err)
		}
	}
	// A timeout here is reported as missing lines.
	tally := NewTally(r.Streams)
	seen := 0
	e2e.Eventually(context.Background(), r.Cfg.Wait, func() bool {
		lines := r.Receiver.Lines()
		tally.Add(lines[seen:])
		seen = len(lines)
		return tally.Complete()
	})
	if err := p.Signal(syscall.SIGTERM); err != nil {
		r.T.Fatal(err)
	}
	if code, err := p.Wait(10 * time.Second); err != nil || code != 0 {
		r.T.Errorf("daemon did not stop cleanly after SIGTERM: code %d, %v", code, err)
	}
	tally.Add(r.Receiver.Lines()[seen:])
	rep := tally.Report(name)
	rep.Events = events
	rep.Duration = time.Since(r.start)
	return rep
}

// HTTPKill kills the daemon with SIGKILL at Events random moments, each
// after some lines were accepted, the checkpoint was saved since the
// start and a request is on its way, while the streams keep writing; the
// daemon is restarted each time.
func HTTPKill(t testing.TB, cfg HTTPConfig) Report {
	t.Helper()
	r := NewRig(t, cfg)
	feeder := Feed(r.Streams, 5*time.Millisecond, 3)
	var p *e2e.Process
	for range r.Cfg.Events {
		p = r.Start()
		target, saved := r.randomTarget(), modTime(r.Ckpt)
		r.waitFor("progress before a kill", func() bool {
			return r.Receiver.Count() >= target && modTime(r.Ckpt) != saved && r.Receiver.InFlight() > 0
		})
		p.Kill()
	}
	p = r.Start()
	return r.Finish("http-kill", p, feeder, r.Cfg.Events)
}

// retryMessage is what the daemon logs for each resend.
const retryMessage = "HTTP request not confirmed; retrying"

// HTTPReceiverCrash "crashes" the receiver at Events random moments, each
// with a request on its way: every request it had not answered is
// dropped, nothing listens until the daemon has noticed, then it comes
// back on the same address. The streams keep writing throughout.
func HTTPReceiverCrash(t testing.TB, cfg HTTPConfig) Report {
	t.Helper()
	r := NewRig(t, cfg)
	feeder := Feed(r.Streams, 5*time.Millisecond, 3)
	p := r.Start()
	for range r.Cfg.Events {
		target := r.randomTarget()
		r.waitFor("progress before a receiver crash", func() bool {
			return r.Receiver.Count() >= target && r.Receiver.InFlight() > 0
		})
		retries := strings.Count(p.Stderr(), retryMessage)
		r.Receiver.Crash()
		r.waitFor("the daemon to notice the crash", func() bool { return strings.Count(p.Stderr(), retryMessage) > retries })
		if err := r.Receiver.Restart(); err != nil {
			t.Fatal(err)
		}
	}
	return r.Finish("http-receiver-crash", p, feeder, r.Cfg.Events)
}

// PoisonMarker is what the poison lines carry and the receiver refuses.
const PoisonMarker = "POISON-LINE"

// PoisonLines writes lines of which one in every 150 carries a marker the
// receiver refuses (400 for the whole request, as Vector answers a body
// with a line it cannot decode), until Events poison lines were written
// and more lines after them were accepted: every other line must arrive,
// the poison lines never, and the daemon must go on. Events in the report
// is how many poison lines were written.
func PoisonLines(t testing.TB, cfg HTTPConfig) Report {
	t.Helper()
	r := NewRig(t, cfg)
	r.Receiver.SetPoison([]byte(PoisonMarker))
	const every = 150
	for i, s := range r.Streams {
		offset := 37 * (i + 1) % every
		s.SetPoison(PoisonMarker, func(seq int) bool { return seq%every == offset })
	}
	poisonWritten := func() int {
		n := 0
		for _, s := range r.Streams {
			n += s.Poisoned()
		}
		return n
	}
	feeder := Feed(r.Streams, 5*time.Millisecond, 5)
	p := r.Start()
	r.waitFor("poison lines to be written", func() bool { return poisonWritten() >= r.Cfg.Events })
	target := r.randomTarget()
	r.waitFor("progress past the poison lines", func() bool { return r.Receiver.Count() >= target })
	rep := r.Finish("poison-line", p, feeder, 0)
	rep.Events = rep.Written - rep.Expected
	rep.PoisonLogged = countPoisonLogs(p.Stderr())
	return rep
}

// poisonLogMessage is what the daemon logs for a skipped line.
const poisonLogMessage = "receiver refused a line on its own; skipping it"

// countPoisonLogs counts the daemon's (JSON) log entries about skipped
// lines that say which file and offset the line came from.
func countPoisonLogs(stderr string) int {
	n := 0
	for _, l := range strings.Split(stderr, "\n") {
		var e struct {
			Msg    string `json:"msg"`
			File   string `json:"file"`
			Offset *int64 `json:"offset"`
		}
		if json.Unmarshal([]byte(l), &e) == nil && e.Msg == poisonLogMessage && e.File != "" && e.Offset != nil && *e.Offset >= 0 {
			n++
		}
	}
	return n
}

func modTime(path string) time.Time {
	st, err := os.Stat(path)
	if err != nil {
		return time.Time{}
	}
	return st.ModTime()
}
