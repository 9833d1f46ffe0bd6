// Package multiline joins the lines of one stream into events: a stack
// trace becomes one record. It is pure (no I/O, no clock, no goroutine):
// the caller feeds framed lines one at a time and is handed whole events;
// the caller says when time ran out (Flush).
//
// A preset is a table of rules (see presets.go), each one a state, a test
// of the line and what to do: start an event, append to the current one,
// hold the line until it is known whether the event goes on (Python's
// chained tracebacks), or end the event with this line. Read first:
// OpenTelemetry Collector's stanza recombine operator (is_first_entry /
// is_last_entry) and Vector's reduce transform; neither can look ahead,
// which a chained Python traceback needs.
package multiline

import (
	"fmt"
	"regexp"
	"strings"
)

// Defaults of the bounds of an event.
const (
	DefaultMaxLines = 500
)

// Rules is a parsed preset: what starts, continues and ends an event.
// A Rules is immutable and shared by every stream that uses it.
type Rules struct {
	name  string
	table []rule
	// re is the start pattern of a regex: preset.
	re *regexp.Regexp
}

// Name is how the rules were asked for (java, python, go, dotnet,
// regex:<RE2>).
func (r *Rules) Name() string {
	if r == nil {
		return "off"
	}
	return r.name
}

// Parse reads a log_forwarder_multiline value: java, python, go, dotnet,
// regex:<RE2> or off (nil rules, no error).
func Parse(spec string) (*Rules, error) {
	spec = strings.TrimSpace(spec)
	if re, ok := strings.CutPrefix(spec, "regex:"); ok {
		c, err := regexp.Compile(re)
		if err != nil {
			return nil, fmt.Errorf("multiline regex %q: %w", re, err)
		}
		r := &Rules{name: "regex:" + re, re: c}
		r.table = regexTable(c)
		return r, nil
	}
	switch strings.ToLower(spec) {
	case "", "off", "false", "none":
		return nil, nil
	case "java":
		return &Rules{name: "java", table: javaTable}, nil
	case "python":
		return &Rules{name: "python", table: pythonTable}, nil
	case "go":
		return &Rules{name: "go", table: goTable}, nil
	case "dotnet":
		return &Rules{name: "dotnet", table: dotnetTable}, nil
	}
	return nil, fmt.Errorf("multiline %q: want java, python, go, dotnet, regex:<RE2> or off", spec)
}
