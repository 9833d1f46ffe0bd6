package tailer_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/checkpoint"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/enrich"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/forward"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/tailer"
)

// silentOutput takes batches and never answers: an output that never
// accepted anything (a closed port, a Vector that is down).
type silentOutput struct {
	free      chan *forward.Batch
	submitted chan struct{}
	once      sync.Once
}

func newSilentOutput() *silentOutput {
	o := &silentOutput{free: make(chan *forward.Batch, 4), submitted: make(chan struct{})}
	for range cap(o.free) {
		o.free <- &forward.Batch{Data: make([]byte, 0, 8192)}
	}
	return o
}

func (o *silentOutput) Free() <-chan *forward.Batch { return o.free }
func (o *silentOutput) BatchBytes() int             { return 4096 }
func (o *silentOutput) Release(b *forward.Batch)    { o.free <- b }
func (o *silentOutput) Submit(*forward.Batch)       { o.once.Do(func() { close(o.submitted) }) }

// --once must be able to tell a run that delivered everything from one
// that was stopped while the output still held its lines.
func TestRunOnceSaysWhenStreamsDidNotFinish(t *testing.T) {
	h := newHarness(t)
	h.writeFile("web.stdout.0", strings.Join(numbered("line", 0, 100), "\n")+"\n")
	h.writeFile("web.stderr.0", "")
	store, err := checkpoint.Open(h.ckptPath, nil)
	require.NoError(t, err)
	out := newSilentOutput()
	mgr := tailer.NewManager(tailer.Config{Root: h.root, Output: out, Checkpoint: store})
	ctx, cancel := context.WithCancelCause(t.Context())
	done := make(chan error, 1)
	go func() { done <- mgr.RunOnce(ctx, []enrich.Desired{target("web", "stdout"), target("web", "stderr")}) }()
	select {
	case <-out.submitted:
	case <-time.After(10 * time.Second):
		t.Fatal("nothing was submitted")
	}
	stop := errors.New("SIGTERM")
	cancel(stop)
	var err2 error
	select {
	case err2 = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("RunOnce did not return after its context ended")
	}
	var unfinished *tailer.UnfinishedError
	require.ErrorAs(t, err2, &unfinished)
	assert.Equal(t, 2, unfinished.Of)
	assert.GreaterOrEqual(t, unfinished.Streams, 1, "web.stdout never had its lines confirmed")
	assert.ErrorIs(t, err2, stop)

	// The same files through an output that confirms: nil.
	h2 := newHarness(t)
	h2.writeFile("web.stdout.0", strings.Join(numbered("line", 0, 100), "\n")+"\n")
	store2, err := checkpoint.Open(h2.ckptPath, nil)
	require.NoError(t, err)
	mgr2 := tailer.NewManager(tailer.Config{Root: h2.root, Output: newScriptedOutput(4096, func(int) bool { return false }), Checkpoint: store2})
	require.NoError(t, mgr2.RunOnce(t.Context(), []enrich.Desired{target("web", "stdout")}))
}
