package multiline

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// combine runs text through the preset and returns the events, each the
// joined lines, with the 0-based line number each starts at.
func combine(t testing.TB, spec, text string) (events []string, starts []int) {
	r, err := Parse(spec)
	require.NoError(t, err)
	c := NewCombiner[int](r, 0, 0)
	emit := func(e Event[int]) {
		events = append(events, string(e.Data))
		starts = append(starts, e.Start)
		assert.Equal(t, strings.Count(string(e.Data), "\n")+1, e.Lines)
	}
	for i, l := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		c.Add(Line[int]{Data: []byte(l), Start: i}, emit)
	}
	c.Flush(emit)
	return events, starts
}

func trace(t *testing.T, name string) string {
	data, err := os.ReadFile("../../testdata/traces/" + name)
	require.NoError(t, err)
	return string(data)
}

func firstLines(events []string) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i], _, _ = strings.Cut(e, "\n")
	}
	return out
}

func TestJavaTraces(t *testing.T) {
	events, starts := combine(t, "java", trace(t, "java.log"))
	assert.Equal(t, []string{
		"INFO starting app",
		"java.io.IOException: cannot load config",
		"INFO still running",
		`Exception in thread "worker-1" java.lang.NullPointerException: Cannot invoke "Object.toString()" because "<local0>" is null`,
		"WARN worker died",
	}, firstLines(events))
	assert.Equal(t, []int{0, 1, 13, 14, 17}, starts)
	assert.Contains(t, events[1], "\tSuppressed: java.lang.IllegalStateException: close failed\n\t\tat Main.lambda$main$0")
	assert.Contains(t, events[1], "\nCaused by: java.lang.NumberFormatException")
	assert.True(t, strings.HasSuffix(events[1], "\t... 2 more"))
}

func TestPythonTracesWithChains(t *testing.T) {
	events, _ := combine(t, "python", trace(t, "python.log"))
	assert.Equal(t, []string{
		"INFO starting",
		"ERROR:root:load failed",
		"Traceback (most recent call last):",
		"INFO still running",
		"Traceback (most recent call last):",
		"INFO going on",
		"Traceback (most recent call last):",
	}, firstLines(events))
	assert.Contains(t, events[2], "ValueError: invalid literal for int() with base 10: 'x1'\n\nThe above exception was the direct cause of the following exception:\n\nTraceback")
	assert.True(t, strings.HasSuffix(events[2], "KeyError: 'config'"), "the chained traceback is one event")
	assert.True(t, strings.HasSuffix(events[4], "ZeroDivisionError: division by zero"))
	assert.Contains(t, events[4], "During handling of the above exception, another exception occurred:")
	assert.True(t, strings.HasSuffix(events[6], "ValueError: bad"))
}

// A blank line after a traceback that no chain follows is not swallowed:
// it is a line of its own, and the traceback ends at its exception line.
func TestPythonBlankLineWithoutChain(t *testing.T) {
	events, starts := combine(t, "python", "Traceback (most recent call last):\n  File \"x\", line 1\nValueError: v\n\nnext line\n")
	assert.Equal(t, []string{"Traceback (most recent call last):\n  File \"x\", line 1\nValueError: v", "", "next line"}, events)
	assert.Equal(t, []int{0, 3, 4}, starts)
}

func TestGoPanicsAndGoroutineDumps(t *testing.T) {
	events, _ := combine(t, "go", trace(t, "go.log"))
	assert.Equal(t, []string{
		"INFO starting",
		"INFO serving 5",
		"panic: runtime error: index out of range [5] with length 0",
		"exit status 2",
		"fatal error: all goroutines are asleep - deadlock!",
		"exit status 2",
	}, firstLines(events))
	assert.Contains(t, events[2], "\nmain.(*conn).serve(0x15888f2af18, 0x5, {0x15888f2af20?, 0x1?, 0x1?})\n\t/app/p.go:11 +0xa5\nmain.main()")
	assert.Contains(t, events[4], "\ncreated by main.main in goroutine 1\n\t/app/d.go:10 +0x8a")
	assert.Contains(t, events[4], "\ngoroutine 19 [chan send]:\nmain.worker(...)")
}

func TestDotnetTraces(t *testing.T) {
	events, _ := combine(t, "dotnet", trace(t, "dotnet.log"))
	assert.Equal(t, []string{
		"info: Orders.Worker[0]",
		"Worker running at: 12/05/2026 10:00:00 +00:00",
		"fail: Orders.Worker[0]",
		"Unhandled exception. System.InvalidOperationException: Could not load the order settings.",
		"File name: '/app/settings.json'",
		"info: Orders.Worker[0]",
		"Retrying in 5 seconds",
		"System.NullReferenceException: Object reference not set to an instance of an object.",
		"info: Orders.Worker[0]",
		"Stopping",
	}, firstLines(events))
	assert.Contains(t, events[3], "\n ---> System.IO.FileNotFoundException")
	assert.Contains(t, events[4], "\n   --- End of inner exception stack trace ---\n")
	assert.True(t, strings.HasSuffix(events[4], "TryExecuteBackgroundServiceAsync(BackgroundService backgroundService)"))
	assert.Equal(t, 3, strings.Count(events[7], "\n")+1)
}

func TestRegexStartsAnEvent(t *testing.T) {
	events, starts := combine(t, `regex:^\d{4}-\d\d-\d\d `, "banner\nmore banner\n2026-12-05 first\n  detail\n2026-12-05 second\nx\n")
	assert.Equal(t, []string{"banner", "more banner", "2026-12-05 first\n  detail", "2026-12-05 second\nx"}, events)
	assert.Equal(t, []int{0, 1, 2, 4}, starts)
}

// Each preset is a table: these are its rules, line by line.
func TestPresetRules(t *testing.T) {
	for _, c := range []struct {
		table []rule
		in    state
		line  string
		do    action
	}{
		{javaTable, normal, "\tat a.B.c(B.java:1)", appendLine},
		{javaTable, normal, "  at a.B.c(B.java:1)", appendLine},
		{javaTable, normal, "\t... 3 more", appendLine},
		{javaTable, normal, "Caused by: x", appendLine},
		{javaTable, normal, "\tSuppressed: y", appendLine},
		{javaTable, normal, "at the end of the day", appendLine},
		{javaTable, normal, "INFO at noon", start},
		{dotnetTable, normal, "   at X.Y()", appendLine},
		{dotnetTable, normal, " ---> System.Exception: z", appendLine},
		{dotnetTable, normal, "   --- End of inner exception stack trace ---", appendLine},
		{dotnetTable, normal, "--- End of stack trace from previous location ---", appendLine},
		{dotnetTable, normal, "System.Exception: z", start},
		{goTable, normal, "panic: boom", start},
		{goTable, normal, "fatal error: boom", start},
		{goTable, goPanic, "", appendLine},
		{goTable, goPanic, "goroutine 1 [running]:", appendLine},
		{goTable, goPanic, "[signal SIGSEGV: segmentation violation]", appendLine},
		{goTable, goPanic, "created by main.main in goroutine 1", appendLine},
		{goTable, goPanic, "\t/app/x.go:3 +0x1d", appendLine},
		{goTable, goPanic, "main.main()", appendLine},
		{goTable, goPanic, "net/http.(*conn).serve(0xc000123456, {0x1, 0x2})", appendLine},
		{goTable, goPanic, "exit status 2", start},
		{goTable, normal, "\tindented but no panic", start},
		{pythonTable, normal, "Traceback (most recent call last):", start},
		{pythonTable, pyTraceback, "  File \"x\", line 1", appendLine},
		{pythonTable, pyTraceback, "ValueError: v", appendLine},
		{pythonTable, pyAfterExc, "", hold},
		{pythonTable, pyBlank1, "During handling of the above exception, another exception occurred:", hold},
		{pythonTable, pyChain, "", hold},
		{pythonTable, pyBlank2, "Traceback (most recent call last):", appendLine},
		{pythonTable, pyBlank1, "something else", start},
		{pythonTable, pyAfterExc, "INFO next", start},
	} {
		do, _ := decide(c.table, c.in, []byte(c.line))
		assert.Equal(t, c.do, do, "%q in state %d", c.line, c.in)
	}
}

func TestParse(t *testing.T) {
	for _, ok := range []string{"java", "python", "go", "dotnet", "JAVA", " go ", `regex:^\[`} {
		r, err := Parse(ok)
		require.NoError(t, err, ok)
		require.NotNil(t, r, ok)
	}
	r, err := Parse("off")
	assert.NoError(t, err)
	assert.Nil(t, r)
	for _, bad := range []string{"ruby", "regex:(", "javascript"} {
		_, err := Parse(bad)
		assert.Error(t, err, bad)
	}
}

// Past a bound, the event goes out truncated and the rest of it is
// dropped up to the next start.
func TestBounds(t *testing.T) {
	r, _ := Parse("java")
	var got []Event[int]
	emit := func(e Event[int]) { e.Data = bytes.Clone(e.Data); got = append(got, e) }
	c := NewCombiner[int](r, 3, 0)
	for i, l := range []string{"E1", "\tat 1", "\tat 2", "\tat 3", "\tat 4", "E2"} {
		c.Add(Line[int]{Data: []byte(l), Start: i}, emit)
	}
	c.Flush(emit)
	require.Len(t, got, 2)
	assert.Equal(t, "E1\n\tat 1\n\tat 2", string(got[0].Data))
	assert.True(t, got[0].Truncated)
	assert.Equal(t, 3, got[0].Lines)
	assert.Equal(t, "E2", string(got[1].Data))
	assert.False(t, got[1].Truncated)

	got = nil
	c = NewCombiner[int](r, 0, 10)
	for i, l := range []string{"E1", "\tat 12345", "\tat 2", "E2"} {
		c.Add(Line[int]{Data: []byte(l), Start: i}, emit)
	}
	c.Flush(emit)
	assert.Equal(t, "E1", string(got[0].Data), "the next line would pass 10 bytes")
	assert.True(t, got[0].Truncated)
	assert.Equal(t, "E2", string(got[1].Data))
}

// Pending is the first line of what is held: where a restart reads again.
func TestPendingIsTheFirstHeldLine(t *testing.T) {
	r, _ := Parse("python")
	c := NewCombiner[int](r, 0, 0)
	emit := func(Event[int]) {}
	_, ok := c.Pending()
	assert.False(t, ok)
	for i, l := range []string{"x", "Traceback (most recent call last):", "  f", "E: e", ""} {
		c.Add(Line[int]{Data: []byte(l), Start: i}, emit)
	}
	p, ok := c.Pending()
	assert.True(t, ok)
	assert.Equal(t, 1, p)
	c.Reset()
	_, ok = c.Pending()
	assert.False(t, ok)
}

// Whatever the lines, every one is in exactly one event, in order, and
// the bytes of the events are the bytes of the lines.
func FuzzCombiner(f *testing.F) {
	for _, name := range []string{"java.log", "python.log", "go.log", "dotnet.log"} {
		data, err := os.ReadFile("../../testdata/traces/" + name)
		if err == nil {
			f.Add(string(data), uint8(len(name)%5))
		}
	}
	f.Add("Traceback (most recent call last):\n  x\nE\n\nThe above exception was the direct cause of the following exception:\n\nnope\n", uint8(1))
	specs := []string{"java", "python", "go", "dotnet", `regex:^[A-Z]`}
	f.Fuzz(func(t *testing.T, text string, which uint8) {
		r, err := Parse(specs[int(which)%len(specs)])
		require.NoError(t, err)
		c := NewCombiner[int](r, 1<<20, 0)
		lines := strings.Split(text, "\n")
		var out []string
		next := 0
		emit := func(e Event[int]) {
			require.Equal(t, next, e.Start, "events come in order, each where the last ended")
			out = append(out, string(e.Data))
			next += e.Lines
		}
		for i, l := range lines {
			c.Add(Line[int]{Data: []byte(l), Start: i}, emit)
		}
		c.Flush(emit)
		require.Equal(t, len(lines), next, "every line in exactly one event")
		require.Equal(t, text, strings.Join(out, "\n"), "the events' bytes are the lines' bytes")
	})
}

// BenchmarkCombinerJava is the per-line cost of the java preset on a
// stack-trace-heavy log.
func BenchmarkCombinerJava(b *testing.B) {
	data, err := os.ReadFile("../../testdata/traces/java.log")
	require.NoError(b, err)
	lines := bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
	r, _ := Parse("java")
	c := NewCombiner[int](r, 0, 0)
	emit := func(Event[int]) {}
	b.ReportAllocs()
	for b.Loop() {
		for i, l := range lines {
			c.Add(Line[int]{Data: l, Start: i}, emit)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(lines)), "ns/line")
}

// A restart reads again from Pending, with a new combiner: the events it
// makes from there are the events the first one made from there, so an
// event is never split by a restart, and one sent again is identical.
func TestARestartAtPendingMakesTheSameEvents(t *testing.T) {
	cases := []struct {
		spec, file string
		maxLines   int
	}{
		{"java", "java.log", 0}, {"java", "java.log", 6},
		{"python", "python.log", 0}, {"python", "python.log", 4},
		{"go", "go.log", 0}, {"go", "go.log", 8},
		{"dotnet", "dotnet.log", 0}, {"dotnet", "dotnet.log", 3},
		{`regex:^\S`, "java.log", 0},
	}
	for _, tc := range cases {
		t.Run(tc.spec+"/"+tc.file+"/"+strings.Repeat("x", tc.maxLines), func(t *testing.T) {
			lines := strings.Split(strings.TrimSuffix(trace(t, tc.file), "\n"), "\n")
			restartsChecked := assertRestartsMakeTheSameEvents(t, tc.spec, tc.maxLines, lines)
			assert.Greater(t, restartsChecked, len(lines)/2)
		})
	}
}

type startedEvent struct {
	start     int
	data      string
	truncated bool
}

// assertRestartsMakeTheSameEvents restarts after every line from where
// Pending says, and returns how many restarts it checked (those past the
// drop bound are not: they may begin a new event, as documented).
func assertRestartsMakeTheSameEvents(t testing.TB, spec string, maxLines int, lines []string) int {
	r, err := Parse(spec)
	require.NoError(t, err)
	run := func(c *Combiner[int], from int, after func(i int)) []startedEvent {
		var out []startedEvent
		emit := func(e Event[int]) { out = append(out, startedEvent{e.Start, string(e.Data), e.Truncated}) }
		for i := from; i < len(lines); i++ {
			c.Add(Line[int]{Data: []byte(lines[i]), Start: i}, emit)
			if after != nil {
				after(i)
			}
		}
		c.Flush(emit)
		return out
	}
	first := NewCombiner[int](r, maxLines, 0)
	resumes := make([]int, 0, len(lines))
	all := run(first, 0, func(i int) {
		if p, ok := first.Pending(); ok {
			resumes = append(resumes, p)
		} else if !first.dropping {
			resumes = append(resumes, i+1)
		}
	})
	for _, from := range resumes {
		var want []startedEvent
		for _, e := range all {
			if e.start >= from {
				want = append(want, e)
			}
		}
		got := run(NewCombiner[int](r, maxLines, 0), from, nil)
		require.Equal(t, want, got, "a restart at line %d", from)
	}
	return len(resumes)
}

func FuzzRestart(f *testing.F) {
	f.Add("E\n\tat a\n\tat b\nF\n", uint8(0), uint8(2))
	f.Add("Traceback (most recent call last):\n  x\nE\n\nThe above exception was the direct cause of the following exception:\n\nTraceback (most recent call last):\n  y\nF\nz\n", uint8(1), uint8(0))
	specs := []string{"java", "python", "go", "dotnet", `regex:^[A-Z]`}
	f.Fuzz(func(t *testing.T, text string, which, maxLines uint8) {
		assertRestartsMakeTheSameEvents(t, specs[int(which)%len(specs)], int(maxLines%8), strings.Split(text, "\n"))
	})
}
