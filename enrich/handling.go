package enrich

import (
	"fmt"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/multiline"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/taskstream"
)

// The meta keys of per-task handling: set on the task, its group or its
// job (the nearest wins, as for OptOutKey); the CLI flags give the
// defaults.
const (
	MultilineKey = "log_forwarder_multiline" // java, python, go, dotnet, regex:<RE2>, off
	FormatKey    = "log_forwarder_format"    // json, text
	RateLimitKey = "log_forwarder_rate_limit"
	LevelKey     = "log_forwarder_level" // detect, off
)

// Handling is how the lines of a task are handled before they are sent.
// The zero Handling sends each line as it is.
type Handling struct {
	// Multiline joins lines into events (nil: off).
	Multiline *multiline.Rules
	// JSON: a line that is a JSON object is sent under "json" too.
	JSON bool
	// DetectLevel: the level is taken from the line (its first word, or a
	// JSON object's level key) into "level".
	DetectLevel bool
	// RateLimit is the most lines a second the stream sends (0: no limit);
	// the rest are dropped, counted and said so.
	RateLimit int
}

// Plain says every line goes as it is.
func (h Handling) Plain() bool {
	return h.Multiline == nil && !h.JSON && !h.DetectLevel && h.RateLimit == 0
}

// Equal says h and o handle lines the same way.
func (h Handling) Equal(o Handling) bool {
	return h.Multiline.Name() == o.Multiline.Name() && h.JSON == o.JSON &&
		h.DetectLevel == o.DetectLevel && h.RateLimit == o.RateLimit
}

// HandlingValues are the four settings in the form of the meta values.
type HandlingValues struct {
	Multiline, Format, RateLimit, Level string
}

// ParseHandling reads the defaults (the CLI flags): every value must
// parse.
func ParseHandling(v HandlingValues) (Handling, error) {
	var h Handling
	var err error
	if h.Multiline, err = multiline.Parse(v.Multiline); err != nil {
		return h, fmt.Errorf("--multiline: %w", err)
	}
	if h.JSON, err = parseFormat(v.Format); err != nil {
		return h, fmt.Errorf("--format: %w", err)
	}
	if h.RateLimit, err = parseRateLimit(v.RateLimit); err != nil {
		return h, fmt.Errorf("--rate-limit: %w", err)
	}
	if h.DetectLevel, err = parseLevel(v.Level); err != nil {
		return h, fmt.Errorf("--level: %w", err)
	}
	return h, nil
}

// handlingOf resolves a task's handling from its meta levels (task, group,
// job): a value that does not parse leaves that key at its default, and
// says so in problems (a bad meta value never stops the stream).
func handlingOf(levels []map[string]string, defaults Handling) (h Handling, problems []string) {
	h = defaults
	bad := func(key, value string, err error) {
		problems = append(problems, fmt.Sprintf("meta %s = %q: %v; using the default", key, value, err))
	}
	if v, ok := nearest(levels, MultilineKey); ok {
		if r, err := multiline.Parse(v); err != nil {
			bad(MultilineKey, v, err)
		} else {
			h.Multiline = r
		}
	}
	if v, ok := nearest(levels, FormatKey); ok {
		if j, err := parseFormat(v); err != nil {
			bad(FormatKey, v, err)
		} else {
			h.JSON = j
		}
	}
	if v, ok := nearest(levels, RateLimitKey); ok {
		if n, err := parseRateLimit(v); err != nil {
			bad(RateLimitKey, v, err)
		} else {
			h.RateLimit = n
		}
	}
	if v, ok := nearest(levels, LevelKey); ok {
		if d, err := parseLevel(v); err != nil {
			bad(LevelKey, v, err)
		} else {
			h.DetectLevel = d
		}
	}
	return h, problems
}

func parseFormat(v string) (json bool, err error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "json":
		return true, nil
	case "text", "":
		return false, nil
	}
	return false, fmt.Errorf("want json or text")
}

// parseRateLimit reads "<N>/s", "0" or "off".
func parseRateLimit(v string) (int, error) {
	v = strings.ToLower(strings.TrimSpace(v))
	switch v {
	case "", "0", "off":
		return 0, nil
	}
	n, err := strconv.Atoi(strings.TrimSuffix(v, "/s"))
	if err != nil || !strings.HasSuffix(v, "/s") || n < 0 {
		return 0, fmt.Errorf("want <N>/s (lines a second), 0 or off")
	}
	return n, nil
}

func parseLevel(v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "detect":
		return true, nil
	case "off", "":
		return false, nil
	}
	return false, fmt.Errorf("want detect or off")
}

// problemLog logs the meta values of a task that did not parse, once per
// task while it is listed. It belongs to the goroutine of the discovery
// that holds it.
type problemLog struct {
	said map[taskstream.ID]bool // keyed by the task's events ID: one per task
}

func (p *problemLog) note(log *zap.Logger, targets []Desired) {
	for _, d := range targets {
		if len(d.HandlingProblems) == 0 {
			continue
		}
		k := taskstream.EventsOf(d.Target.AllocID, d.Target.Task)
		if p.said[k] {
			continue
		}
		if p.said == nil {
			p.said = make(map[taskstream.ID]bool)
		}
		p.said[k] = true
		for _, msg := range d.HandlingProblems {
			log.Warn("a log_forwarder_* meta value of this task cannot be used: "+msg,
				zap.String("alloc_id", d.Target.AllocID), zap.String("task", d.Target.Task))
		}
	}
}

// forget drops what was said of allocations no longer listed, so that one
// listed again is warned about again.
func (p *problemLog) forget(listed map[string]bool) {
	for k := range p.said {
		if !listed[k.AllocID] {
			delete(p.said, k)
		}
	}
}
