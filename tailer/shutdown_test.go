package tailer

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/forward"
)

// orderedOutput records when it was told to close and when it finished
// writing; hold keeps it from finishing until closed.
type orderedOutput struct {
	mu     sync.Mutex
	events []string
	hold   chan struct{}
	closed chan struct{}
	err    error
}

func (o *orderedOutput) note(s string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.events = append(o.events, s)
}

func (o *orderedOutput) Free() <-chan *forward.Batch { return nil }
func (o *orderedOutput) Submit(*forward.Batch)       {}
func (o *orderedOutput) Release(*forward.Batch)      {}
func (o *orderedOutput) BatchBytes() int             { return 1 }
func (o *orderedOutput) Close()                      { o.note("close"); close(o.closed) }

func (o *orderedOutput) Run(ctx context.Context) error {
	<-o.closed
	select {
	case <-o.hold:
		o.note("drained")
	case <-ctx.Done():
		o.note("cut short")
	}
	return o.err
}

type saver struct{ o *orderedOutput }

func (s saver) Save() error { s.o.note("save"); return nil }

func TestShutdownDrainsTheOutputThenSaves(t *testing.T) {
	o := &orderedOutput{hold: make(chan struct{}), closed: make(chan struct{})}
	close(o.hold)
	r := StartOutput(o, nil)
	require.NoError(t, r.Shutdown(10*time.Second, saver{o}))
	assert.Equal(t, []string{"close", "drained", "save"}, o.events)
}

func TestShutdownCutsASlowOutputShortAndStillSaves(t *testing.T) {
	o := &orderedOutput{hold: make(chan struct{}), closed: make(chan struct{})}
	r := StartOutput(o, nil)
	err := r.Shutdown(20*time.Millisecond, saver{o})
	assert.ErrorIs(t, err, ErrOutputTimedOut)
	assert.Equal(t, []string{"close", "cut short", "save"}, o.events)
}

func TestAnOutputThatCanNeverWriteStopsEverything(t *testing.T) {
	o := &orderedOutput{hold: make(chan struct{}), closed: make(chan struct{}), err: errors.New("stdout is gone")}
	close(o.hold)
	failed := make(chan error, 1)
	r := StartOutput(o, func(err error) { failed <- err })
	o.Close()
	select {
	case err := <-failed:
		assert.EqualError(t, err, "stdout is gone")
	case <-time.After(10 * time.Second):
		t.Fatal("onFail was not called")
	}
	o.closed = make(chan struct{}) // Shutdown closes it again
	err := r.Shutdown(time.Second, saver{o})
	assert.EqualError(t, err, "stdout is gone")
}
