// Package taskstream names one task stream, the files
// <alloc-dir>/<AllocID>/alloc/logs/<Task>.<Stream>.<N>. enrich finds
// streams by this name, tailer follows them, and checkpoint keys their
// positions by it: one type, so the three can never drift apart.
package taskstream

// ID identifies one task stream.
type ID struct {
	AllocID string
	Task    string
	Stream  string
}

func (id ID) String() string { return id.AllocID + "/" + id.Task + "." + id.Stream }
