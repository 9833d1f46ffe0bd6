package tailer

import "fmt"

// UnfinishedError is RunOnce's answer when some streams stopped before
// the output confirmed everything they read: what they did not commit is
// read again by the next run.
type UnfinishedError struct {
	Streams, Of int
	Err         error // why they stopped: the context's cause
}

func (e *UnfinishedError) Error() string {
	return fmt.Sprintf("%d of %d streams stopped before the output confirmed all their lines: %v", e.Streams, e.Of, e.Err)
}

func (e *UnfinishedError) Unwrap() error { return e.Err }
