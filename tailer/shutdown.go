package tailer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// RunnableOutput is an output with its lifetime: what the daemon starts
// and stops (a forward writer).
type RunnableOutput interface {
	Output
	Run(ctx context.Context) error
	Close()
}

// Saver saves the checkpoint (a *checkpoint.Store).
type Saver interface {
	Save() error
}

// ErrOutputTimedOut: the output did not take the last lines within the
// shutdown budget; they are not committed and will be sent again.
var ErrOutputTimedOut = errors.New("output did not take the last lines in time; they will be sent again after a restart")

// OutputRun is an output's goroutine, started by StartOutput. It owns the
// order in which a pipeline stops (see Shutdown), for the daemon and its
// tests alike.
type OutputRun struct {
	out    RunnableOutput
	cancel context.CancelFunc
	done   chan error
	wg     sync.WaitGroup
}

// StartOutput runs out in a goroutine of its own. Its context is not the
// streams': the output outlives them, to write what they handed it before
// they stopped. onFail, if not nil, is called when the output stops with
// an error (it can never write again): the daemon then stops everything.
func StartOutput(out RunnableOutput, onFail func(error)) *OutputRun {
	ctx, cancel := context.WithCancel(context.Background())
	r := &OutputRun{out: out, cancel: cancel, done: make(chan error, 1)}
	r.wg.Go(func() {
		err := out.Run(ctx)
		if err != nil && onFail != nil {
			onFail(err)
		}
		r.done <- err
	})
	return r
}

// Shutdown stops a pipeline whose streams have stopped reading, in this
// order: the output writes what it holds (for at most budget; past it,
// what it still holds is failed, not committed, and sent again after a
// restart: ErrOutputTimedOut), then the checkpoint is saved with every
// position the output confirmed. It returns the output's own error, the
// timeout, or the save's error, and waits for the output's goroutine.
func (r *OutputRun) Shutdown(budget time.Duration, cp Saver) error {
	r.out.Close()
	var outErr error
	t := time.NewTimer(budget)
	defer t.Stop()
	select {
	case outErr = <-r.done:
	case <-t.C:
		r.cancel()
		if err := <-r.done; err != nil {
			outErr = err
		} else {
			outErr = ErrOutputTimedOut
		}
	}
	r.cancel()
	r.wg.Wait()
	if err := cp.Save(); err != nil {
		return errors.Join(outErr, fmt.Errorf("save the checkpoint at shutdown: %w", err))
	}
	return outErr
}
