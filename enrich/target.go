package enrich

import (
	"fmt"
	"strings"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/taskstream"
)

// Stream names as they appear in logmon's file names.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

// Streams lists both streams of a task, in the order they are started.
var Streams = [2]string{Stdout, Stderr}

// Meta is what an output line says about where it came from. Empty strings
// and a nil AllocIndex are left out of the output, never sent empty.
type Meta struct {
	Namespace  string
	NodeID     string
	NodeName   string
	Datacenter string
	JobID      string
	JobName    string
	JobType    string
	GroupName  string
	TaskName   string
	AllocID    string
	AllocName  string
	AllocIndex *int
	// Extra holds the values of the --meta keys, rendered as nomad.meta.KEY.
	Extra map[string]string
}

// Desired is one target that discovery wants tailed, with its metadata and
// whether its allocation has stopped for good (the drain rule starts then).
type Desired struct {
	Target   taskstream.ID
	Meta     Meta
	Terminal bool
}

// ValidPathComponent reports why s cannot be used as one component of a
// path below the alloc dir, or nil if it can. Alloc IDs and task names come
// from the API or from directory names; neither may leave the alloc dir.
func ValidPathComponent(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("empty path component")
	case s == "." || s == "..":
		return fmt.Errorf("path component %q is a directory reference", s)
	case strings.ContainsAny(s, "/\x00"):
		return fmt.Errorf("path component %q contains '/' or NUL", s)
	}
	return nil
}

// ValidAllocID reports why id is not a Nomad allocation ID, or nil if it
// is one. Nomad makes every alloc ID a UUID in its canonical form: 36
// lowercase hex digits and dashes, 8-4-4-4-12. Anything else (a
// 5,000-character name, a path) is not an allocation of this node, and
// must not become a folder looked up, a stream or a checkpoint entry.
func ValidAllocID(id string) error {
	if len(id) != 36 {
		return fmt.Errorf("alloc ID %q: want a UUID (36 characters, 8-4-4-4-12 lowercase hex), got %d characters", truncate(id, 64), len(id))
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return fmt.Errorf("alloc ID %q: want a UUID (8-4-4-4-12 lowercase hex)", id)
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return fmt.Errorf("alloc ID %q: want a UUID (8-4-4-4-12 lowercase hex)", id)
			}
		}
	}
	return nil
}
