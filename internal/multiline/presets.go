package multiline

import (
	"bytes"
	"regexp"
)

// state is where a preset is in the lines it saw.
type state uint8

const (
	anyState state = iota // a rule for every state
	normal                // the last line was an event of its own, or none came
	// go
	goPanic
	// python
	pyTraceback // inside a traceback: indented lines continue it
	pyAfterExc  // the exception line ended it, unless a chained one follows
	pyBlank1    // a blank line after the exception line (held)
	pyChain     // the chain message after it (held)
	pyBlank2    // a blank line after the chain message (held)
	// regex
	reAfter // a line matched: the next lines continue its event
)

// action is what a rule does with the line.
type action uint8

const (
	// start ends the current event (and releases held lines as events
	// of their own), and the line begins a new event.
	start action = iota
	// appendLine adds the line (after the held ones) to the current
	// event; with no event open it begins one.
	appendLine
	// hold keeps the line until a later rule says whether the event goes
	// on (appendLine) or not (start).
	hold
)

// rule: in state in, a line that match accepts (nil: any) is done with
// by do, and the preset goes to next. The first rule that applies wins.
type rule struct {
	in    state
	match func(line []byte) bool
	do    action
	next  state
}

// anyLine matches every line.
var anyLine func([]byte) bool

// trimmedPrefix says whether, after optional spaces and tabs, line begins
// with one of prefixes.
func trimmedPrefix(prefixes ...string) func([]byte) bool {
	return func(line []byte) bool {
		t := bytes.TrimLeft(line, " \t")
		for _, p := range prefixes {
			if bytes.HasPrefix(t, []byte(p)) {
				return true
			}
		}
		return false
	}
}

func prefix(prefixes ...string) func([]byte) bool {
	return func(line []byte) bool {
		for _, p := range prefixes {
			if bytes.HasPrefix(line, []byte(p)) {
				return true
			}
		}
		return false
	}
}

func blank(line []byte) bool { return len(bytes.TrimSpace(line)) == 0 }

func indented(line []byte) bool { return len(line) > 0 && (line[0] == ' ' || line[0] == '\t') }

func either(tests ...func([]byte) bool) func([]byte) bool {
	return func(line []byte) bool {
		for _, t := range tests {
			if t(line) {
				return true
			}
		}
		return false
	}
}

// javaContinues: frames ("\tat com.x.Y.z(Y.java:12)"), elided frames
// ("\t... 3 more"), and the causes and suppressed exceptions of the trace.
var javaContinues = trimmedPrefix("at ", "...", "Caused by:", "Suppressed:")

var javaTable = []rule{
	{anyState, javaContinues, appendLine, normal},
	{anyState, anyLine, start, normal},
}

// dotnetContinues: frames, inner exceptions and the ends of stack traces.
var dotnetContinues = trimmedPrefix("at ", "---> ", "--- End of inner exception stack trace ---",
	"--- End of stack trace from previous location ---")

var dotnetTable = []rule{
	{anyState, dotnetContinues, appendLine, normal},
	{anyState, anyLine, start, normal},
}

// goFunction is a function line of a goroutine dump: main.main(),
// net/http.(*conn).serve(0xc000123456, {0x1, 0x2}), panic({0x4a0b20,
// 0xc000012345}), main.main.func1(...).
var goFunction = regexp.MustCompile(`^[A-Za-z0-9_.\-/()*\[\]]+\(.*\)$`)

var goStarts = prefix("panic: ", "fatal error: ")

var goContinues = either(blank, prefix("goroutine ", "[signal ", "created by ", "\t"),
	func(line []byte) bool { return goFunction.Match(line) })

var goTable = []rule{
	{anyState, goStarts, start, goPanic},
	{goPanic, goContinues, appendLine, goPanic},
	{anyState, anyLine, start, normal},
}

var pyStarts = prefix("Traceback (most recent call last):")

var pyChained = prefix("During handling of the above exception, another exception occurred:",
	"The above exception was the direct cause of the following exception:")

var pythonTable = []rule{
	{pyTraceback, indented, appendLine, pyTraceback},
	{pyTraceback, anyLine, appendLine, pyAfterExc}, // the exception line ends it...
	{pyAfterExc, blank, hold, pyBlank1},            // ...unless a chained traceback follows
	{pyBlank1, pyChained, hold, pyChain},
	{pyChain, blank, hold, pyBlank2},
	{pyBlank2, pyStarts, appendLine, pyTraceback},
	{anyState, pyStarts, start, pyTraceback},
	{anyState, anyLine, start, normal},
}

func regexTable(re *regexp.Regexp) []rule {
	return []rule{
		{anyState, re.Match, start, reAfter},
		{reAfter, anyLine, appendLine, reAfter},
		{anyState, anyLine, start, normal}, // before the first match: events of their own
	}
}

// decide applies the first rule of table that fits the state and line.
func decide(table []rule, s state, line []byte) (action, state) {
	for _, r := range table {
		if (r.in == anyState || r.in == s) && (r.match == nil || r.match(line)) {
			return r.do, r.next
		}
	}
	return start, normal
}
