package tailer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/checkpoint"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/enrich"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/forward"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/tailer"
)

// scriptedOutput answers every batch at once, inside Submit, failing the
// ones fail picks: a stream then finds the failure the next time it asks
// for a buffer, in the middle of framing what it had read.
type scriptedOutput struct {
	free       chan *forward.Batch
	batchBytes int
	fail       func(n int) bool
	// dropPerBatch lines of each written batch are reported dropped, as
	// the HTTP output reports poison lines it skipped.
	dropPerBatch int

	mu        sync.Mutex
	submitted int
	failed    int
	data      bytes.Buffer
}

func newScriptedOutput(batchBytes int, fail func(n int) bool) *scriptedOutput {
	o := &scriptedOutput{free: make(chan *forward.Batch, 8), batchBytes: batchBytes, fail: fail}
	for range cap(o.free) {
		o.free <- &forward.Batch{Data: make([]byte, 0, 2*batchBytes)}
	}
	return o
}

func (o *scriptedOutput) Free() <-chan *forward.Batch { return o.free }
func (o *scriptedOutput) BatchBytes() int             { return o.batchBytes }
func (o *scriptedOutput) Release(b *forward.Batch)    { o.put(b) }

func (o *scriptedOutput) put(b *forward.Batch) {
	*b = forward.Batch{Data: b.Data[:0]}
	o.free <- b
}

func (o *scriptedOutput) Submit(b *forward.Batch) {
	o.mu.Lock()
	n := o.submitted
	o.submitted++
	failed := b.Epoch != b.Source.Epoch() || o.fail(n)
	if failed {
		o.failed++
	} else {
		o.data.Write(b.Data)
	}
	o.mu.Unlock()
	if failed {
		b.Source.Failed(b)
	} else {
		b.Dropped = min(o.dropPerBatch, b.Lines)
		b.Source.Written(b)
	}
	o.put(b)
}

func (o *scriptedOutput) messages(t *testing.T) []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []string
	for _, l := range strings.Split(strings.TrimSuffix(o.data.String(), "\n"), "\n") {
		var r received
		require.NoError(t, json.Unmarshal([]byte(l), &r), "line %q", l)
		out = append(out, r.Message)
	}
	return out
}

// A failure the stream learns of while it frames a read must send it back
// to its last commit before it frames another byte: the bytes at hand were
// read from after that commit.
func TestFailureFoundMidReadRewindsBeforeFramingMore(t *testing.T) {
	h := newHarness(t)
	want := numbered("line", 0, 5000) // about 60 KiB: one read
	h.writeFile("web.stdout.0", strings.Join(want, "\n")+"\n")
	// Batches of a few lines; every 7th fails.
	out := newScriptedOutput(512, func(n int) bool { return n%7 == 3 })
	store, err := checkpoint.Open(h.ckptPath, nil)
	require.NoError(t, err)
	mgr := tailer.NewManager(tailer.Config{Root: h.root, Output: out, Checkpoint: store})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	require.NoError(t, mgr.RunOnce(ctx, []enrich.Desired{target("web", "stdout")}))
	assert.Positive(t, out.failed)
	assertAtLeastOnceInOrder(t, want, out.messages(t))
}

// A failure learnt while framing file N+1 can send the stream back into
// file N: the bytes of N+1 already read must not make it skip the rest of
// N. Each run fails one batch near the rotation.
func TestRewindIntoThePreviousFileLosesNothing(t *testing.T) {
	want := numbered("line", 0, 3300)
	for k := 1490; k < 1510; k++ {
		h := newHarness(t)
		h.writeFile("web.stdout.0", strings.Join(want[:2999], "\n")+"\n")
		h.writeFile("web.stdout.1", strings.Join(want[2999:3200], "\n")+"\n")
		h.writeFile("web.stdout.2", strings.Join(want[3200:], "\n")+"\n")
		out := newScriptedOutput(512, func(n int) bool { return n == k })
		store, err := checkpoint.Open(h.ckptPath, nil)
		require.NoError(t, err)
		mgr := tailer.NewManager(tailer.Config{Root: h.root, Output: out, Checkpoint: store})
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		require.NoError(t, mgr.RunOnce(ctx, []enrich.Desired{target("web", "stdout")}))
		cancel()
		got := map[string]bool{}
		for _, m := range out.messages(t) {
			got[m] = true
		}
		for _, w := range want {
			require.True(t, got[w], "failing batch %d: line %q never arrived", k, w)
		}
	}
}

// Lines an output dropped (poison lines the HTTP output skipped) are not
// counted as forwarded.
func TestDroppedLinesAreNotCountedAsForwarded(t *testing.T) {
	h := newHarness(t)
	h.writeFile("web.stdout.0", strings.Join(numbered("line", 0, 1000), "\n")+"\n")
	out := newScriptedOutput(4096, func(int) bool { return false })
	out.dropPerBatch = 1
	store, err := checkpoint.Open(h.ckptPath, nil)
	require.NoError(t, err)
	metrics := tailer.NewMetrics(nil)
	mgr := tailer.NewManager(tailer.Config{Root: h.root, Output: out, Checkpoint: store, Metrics: metrics})
	require.NoError(t, mgr.RunOnce(t.Context(), []enrich.Desired{target("web", "stdout")}))
	out.mu.Lock()
	batches := out.submitted
	out.mu.Unlock()
	require.Greater(t, batches, 1)
	assert.Equal(t, float64(1000-batches), testutil.ToFloat64(metrics.LinesForwarded.WithLabelValues("", "")))
}
