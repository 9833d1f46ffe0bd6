package tailer_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/checkpoint"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/enrich"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/forward"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/safefs"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/taskstream"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/tailer"
)

const testAlloc = "11111111-2222-3333-4444-555555555555"

// heldFiles is the harness's --max-held-files: small, so that tests can
// fill it.
const heldFiles = 16

// received is one line as the receiver saw it.
type received struct {
	Message   string `json:"message"`
	Stream    string `json:"stream"`
	File      string `json:"file"`
	Offset    int64  `json:"offset"`
	Truncated bool   `json:"truncated"`
	// Per-task handling.
	Lines     int             `json:"lines"`
	Level     string          `json:"level"`
	Throttled int             `json:"throttled"`
	JSON      json.RawMessage `json:"json"`
	Nomad     struct {
		AllocID  string `json:"alloc_id"`
		TaskName string `json:"task_name"`
	} `json:"nomad"`
}

// memOutput is a forward.Output that keeps what was written and can be
// told to fail writes.
type memOutput struct {
	mu       sync.Mutex
	data     bytes.Buffer
	failNext int // fail this many writes (after writing half of them)
	writes   int
	changed  chan struct{}
	// gate, when set, holds every write until it is closed: a peer
	// that stopped reading.
	gate chan struct{}
}

func newMemOutput() *memOutput { return &memOutput{changed: make(chan struct{}, 1)} }

func (o *memOutput) String() string { return "memory" }

func (o *memOutput) Dial(context.Context) (io.WriteCloser, error) { return memConn{o}, nil }

type memConn struct{ o *memOutput }

func (c memConn) Close() error { return nil }

func (c memConn) Write(p []byte) (int, error) {
	o := c.o
	o.mu.Lock()
	o.writes++
	if gate := o.gate; gate != nil {
		o.mu.Unlock()
		<-gate
		o.mu.Lock()
	}
	defer o.mu.Unlock()
	if o.failNext > 0 {
		o.failNext--
		// A connection that breaks mid-write: the peer got a torn line.
		half := len(p) / 2
		o.data.Write(p[:half])
		o.data.WriteString("\n")
		return half, errors.New("connection reset by peer")
	}
	o.data.Write(p)
	select {
	case o.changed <- struct{}{}:
	default:
	}
	return len(p), nil
}

// open lets the writes held at gate through, and the next ones too; a
// second call does nothing.
func (o *memOutput) open(gate chan struct{}) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.gate == gate {
		o.gate = nil
		close(gate)
	}
}

// raw is every complete line written so far that is valid JSON.
func (o *memOutput) raw(t *testing.T) [][]byte {
	o.mu.Lock()
	data := append([]byte(nil), o.data.Bytes()...)
	o.mu.Unlock()
	var out [][]byte
	for _, l := range bytes.Split(data, []byte{'\n'}) {
		if json.Valid(l) {
			out = append(out, l)
		}
	}
	return out
}

// lines decodes every complete, valid line written so far; torn lines
// from failed writes are skipped.
func (o *memOutput) lines(t *testing.T) []received {
	o.mu.Lock()
	data := append([]byte(nil), o.data.Bytes()...)
	o.mu.Unlock()
	var out []received
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		var r received
		if json.Unmarshal(sc.Bytes(), &r) == nil {
			out = append(out, r)
		}
	}
	require.NoError(t, sc.Err())
	return out
}

func messages(rs []received) []string {
	out := make([]string, 0, len(rs))
	for _, r := range rs {
		out = append(out, r.Message)
	}
	return out
}

// harness runs a Manager over a temp alloc dir with an in-memory output.
type harness struct {
	t          *testing.T
	allocDir   string
	ckptPath   string
	root       *safefs.Root
	store      *checkpoint.Store
	out        *memOutput
	metrics    *tailer.Metrics
	logs       *observer.ObservedLogs
	maxLine    int
	drainDelay time.Duration
	readFrom   string
	poll       time.Duration
	// maxHeld is --max-held-files (default heldFiles).
	maxHeld int64
	// batchBytes is the output's batch size (default 4 KiB: many batches).
	batchBytes int
	// multilineTimeout is --multiline-timeout (default 1 minute: tests
	// that want it say so).
	multilineTimeout time.Duration
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{t: t, allocDir: t.TempDir(), out: newMemOutput(), maxLine: 102400, poll: time.Second, maxHeld: heldFiles, batchBytes: 4 << 10, multilineTimeout: time.Minute}
	h.ckptPath = filepath.Join(t.TempDir(), "checkpoint.msgpack")
	var err error
	h.root, err = safefs.OpenRoot(h.allocDir)
	require.NoError(t, err)
	t.Cleanup(func() { h.root.Close() })
	return h
}

// checkpointAt saves a checkpoint that has web.stdout at index, offset:
// what a daemon stopped there left.
func (h *harness) checkpointAt(index, offset int64) {
	h.t.Helper()
	store, err := checkpoint.Open(h.ckptPath, nil)
	require.NoError(h.t, err)
	store.Commit(checkpoint.Entry{AllocID: testAlloc, Task: "web", Stream: "stdout", FileIndex: index, Offset: offset})
	require.NoError(h.t, store.Save())
}

func (h *harness) logDir() string {
	dir := filepath.Join(h.allocDir, testAlloc, "alloc", "logs")
	require.NoError(h.t, os.MkdirAll(dir, 0o777))
	return dir
}

func (h *harness) writeFile(name, content string) string {
	p := filepath.Join(h.logDir(), name)
	require.NoError(h.t, os.WriteFile(p, []byte(content), 0o644))
	return p
}

func (h *harness) appendFile(name, content string) {
	f, err := os.OpenFile(filepath.Join(h.logDir(), name), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	require.NoError(h.t, err)
	_, err = f.WriteString(content)
	require.NoError(h.t, err)
	require.NoError(h.t, f.Close())
}

func target(task, stream string) enrich.Desired {
	return enrich.Desired{
		Target: taskstream.ID{AllocID: testAlloc, Task: task, Stream: stream},
		Meta:   enrich.Meta{AllocID: testAlloc, TaskName: task},
	}
}

// pipeline is one running forwarder: writer, watcher and manager, all
// stopped by stop().
type pipeline struct {
	h       *harness
	ctx     context.Context
	cancel  context.CancelFunc
	writer  *forward.Writer
	output  *tailer.OutputRun
	mgr     *tailer.Manager
	updates chan []enrich.Desired
	wg      sync.WaitGroup
	mgrDone chan struct{}
	// stopWatcher ends the watcher alone, as a failure of inotify would,
	// and waits until it is gone.
	stopWatcher func()
}

func (h *harness) start() *pipeline {
	h.t.Helper()
	store, err := checkpoint.Open(h.ckptPath, nil)
	require.NoError(h.t, err)
	h.store = store
	core, logs := observer.New(zap.DebugLevel)
	h.logs = logs
	log := zap.New(core)
	h.metrics = tailer.NewMetrics(nil)
	ctx, cancel := context.WithCancel(h.t.Context())
	p := &pipeline{h: h, ctx: ctx, cancel: cancel, updates: make(chan []enrich.Desired), mgrDone: make(chan struct{})}
	p.writer = forward.New(forward.Config{Output: h.out, Log: log, BatchBytes: h.batchBytes, Buffers: 8, MaxBackoff: 20 * time.Millisecond})
	watcher, err := tailer.NewWatcher(log, 0)
	require.NoError(h.t, err)
	p.output = tailer.StartOutput(p.writer, nil)
	watcherCtx, stopWatcher := context.WithCancel(ctx)
	watcherDone := make(chan struct{})
	p.stopWatcher = func() { stopWatcher(); <-watcherDone }
	p.wg.Go(func() { watcher.Run(watcherCtx); close(watcherDone) })
	p.mgr = tailer.NewManager(tailer.Config{
		Root: h.root, Output: p.writer, Checkpoint: store, Watcher: watcher, MaxLineBytes: h.maxLine, ReadFrom: h.readFrom,
		DrainDelay: h.drainDelay, Log: log, Metrics: h.metrics, PollInterval: h.poll, MultilineTimeout: h.multilineTimeout,
		Budget: tailer.NewBudget(h.maxHeld, 0, h.metrics.HeldFiles, h.metrics.HeldBytes),
	})
	return p
}

// runOnce runs the manager in --once mode over targets, then shuts down.
func (h *harness) runOnce(targets ...enrich.Desired) {
	h.t.Helper()
	p := h.start()
	done := make(chan error, 1)
	go func() {
		done <- p.mgr.RunOnce(p.ctx, targets)
		close(p.mgrDone)
	}()
	select {
	case err := <-done:
		require.NoError(h.t, err)
	case <-time.After(20 * time.Second):
		h.t.Fatal("RunOnce did not finish")
	}
	p.stop()
}

// daemon runs the manager in daemon mode with the given targets.
func (h *harness) daemon(targets ...enrich.Desired) *pipeline {
	p := h.start()
	go func() {
		p.mgr.Run(p.ctx, p.updates)
		close(p.mgrDone)
	}()
	p.updates <- targets
	return p
}

// stop shuts down as the daemon does: streams first, then the writer
// writes what is queued, then the checkpoint is saved.
func (p *pipeline) stop() {
	p.cancel()
	<-p.mgrDone
	require.NoError(p.h.t, p.output.Shutdown(10*time.Second, p.h.store))
	p.wg.Wait()
}

// count is how many lines were written so far, torn ones included.
func (o *memOutput) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return bytes.Count(o.data.Bytes(), []byte{'\n'})
}

// waitCount waits until the output holds at least n lines, without
// decoding them (for many lines), and returns how many it holds.
func (h *harness) waitCount(n int) int {
	h.t.Helper()
	require.Eventually(h.t, func() bool { return h.out.count() >= n }, 60*time.Second, 5*time.Millisecond,
		"waiting for %d lines", n)
	return h.out.count()
}

// waitLines waits until the output holds at least n lines.
func (h *harness) waitLines(n int) []received {
	h.t.Helper()
	var got []received
	require.Eventually(h.t, func() bool {
		got = h.out.lines(h.t)
		return len(got) >= n
	}, 20*time.Second, 2*time.Millisecond, "waiting for %d lines", n)
	return got
}

func numbered(prefix string, from, to int) []string {
	out := make([]string, 0, to-from)
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("%s %06d", prefix, i))
	}
	return out
}
