package tailer_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/enrich"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/multiline"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/taskstream"
)

func handled(task, stream string, h enrich.Handling) enrich.Desired {
	d := target(task, stream)
	d.Handling = h
	return d
}

func rules(t *testing.T, spec string) *multiline.Rules {
	r, err := multiline.Parse(spec)
	require.NoError(t, err)
	return r
}

// A stack trace whose lines span two files is one event, reported where
// its first line is.
func TestAMultilineEventAcrossFilesIsOneEvent(t *testing.T) {
	h := newHarness(t)
	p0 := h.writeFile("web.stdout.0", "starting\nException in thread \"main\" java.lang.IllegalStateException: boom\n\tat a.B.c(B.java:1)\n")
	h.writeFile("web.stdout.1", "\tat a.B.main(B.java:9)\nCaused by: java.io.IOException: disk\n\t... 3 more\nnext line\n")
	h.runOnce(handled("web", "stdout", enrich.Handling{Multiline: rules(t, "java")}))
	got := h.out.lines(t)
	require.Len(t, got, 3)
	assert.Equal(t, "starting", got[0].Message)
	assert.Equal(t, 0, got[0].Lines, "one line: no lines key")
	assert.Equal(t, strings.Join([]string{
		`Exception in thread "main" java.lang.IllegalStateException: boom`, "\tat a.B.c(B.java:1)",
		"\tat a.B.main(B.java:9)", "Caused by: java.io.IOException: disk", "\t... 3 more"}, "\n"), got[1].Message)
	assert.Equal(t, 5, got[1].Lines)
	assert.Equal(t, p0, got[1].File)
	assert.Equal(t, int64(len("starting\n")), got[1].Offset)
	assert.Equal(t, "next line", got[2].Message)
}

// The commit of a stream in the middle of an event is the event's first
// line: a restart sends the event whole, once, from there.
func TestARestartSendsAnUnfinishedEventWhole(t *testing.T) {
	h := newHarness(t)
	java := enrich.Handling{Multiline: rules(t, "java")}
	h.writeFile("web.stdout.0", "first\nE1 boom\n\tat a\n")
	p := h.daemon(handled("web", "stdout", java))
	got := h.waitLines(1)
	assert.Equal(t, []string{"first"}, messages(got))
	id := taskstream.ID{AllocID: testAlloc, Task: "web", Stream: "stdout"}
	require.Eventually(t, func() bool {
		e, ok := h.store.Get(id)
		return ok && e.Offset == int64(len("first\n"))
	}, 10*time.Second, time.Millisecond, "the commit stops at the event's first line")
	p.stop()
	e, ok := h.store.Get(id)
	require.True(t, ok)
	assert.Equal(t, int64(len("first\n")), e.Offset, "after the shutdown too")

	h.appendFile("web.stdout.0", "\tat b\nE2\n")
	h.runOnce(handled("web", "stdout", java))
	got = h.out.lines(t)
	assert.Equal(t, []string{"first", "E1 boom\n\tat a\n\tat b", "E2"}, messages(got))
	assert.Equal(t, int64(len("first\n")), got[1].Offset)
}

// With no new line for --multiline-timeout, the event goes out.
func TestTheMultilineTimeoutFlushesAnEvent(t *testing.T) {
	h := newHarness(t)
	h.multilineTimeout = 50 * time.Millisecond
	h.writeFile("web.stdout.0", "E1 boom\n\tat a\n")
	p := h.daemon(handled("web", "stdout", enrich.Handling{Multiline: rules(t, "java")}))
	defer p.stop()
	got := h.waitLines(1)
	assert.Equal(t, "E1 boom\n\tat a", got[0].Message)
	assert.Equal(t, 2, got[0].Lines)
}

// Lines over the rate limit are dropped, and records say how many from
// where: delivered + throttled = written, exactly, and the metric agrees.
func TestTheRateLimitAccountsForEveryLine(t *testing.T) {
	h := newHarness(t)
	want := numbered("line", 0, 5000)
	h.writeFile("web.stdout.0", strings.Join(want[:3000], "\n")+"\n")
	h.writeFile("web.stdout.1", strings.Join(want[3000:], "\n")+"\n")
	h.runOnce(handled("web", "stdout", enrich.Handling{RateLimit: 100}))
	got := h.out.lines(t)
	delivered, throttled, records := 0, 0, 0
	next := 0 // every line delivered or reported, in order
	for _, r := range got {
		if r.Throttled > 0 {
			records++
			throttled += r.Throttled
			assert.Equal(t, fmt.Sprintf("nomad-log-forwarder: dropped %d lines over the limit of 100 lines/s", r.Throttled), r.Message)
			assert.Equal(t, int64(len(want[0])+1)*int64(next%3000), r.Offset, "the record is at the first line dropped")
			next += r.Throttled
			continue
		}
		require.Equal(t, want[next], r.Message)
		delivered++
		next++
	}
	assert.Equal(t, len(want), delivered+throttled)
	assert.GreaterOrEqual(t, delivered, 100, "a burst of one second's worth")
	assert.Positive(t, records)
	assert.Equal(t, float64(throttled), testutil.ToFloat64(h.metrics.LinesThrottled.WithLabelValues("", "")))
}

// JSON lines carry their object and its level; text lines their level
// when the task asks for detection; anything else passes as text.
func TestJSONAndLevels(t *testing.T) {
	h := newHarness(t)
	h.writeFile("web.stdout.0", `{"level":"WARN","msg":"disk","n":1}`+"\n"+`{"broken":`+"\n"+"[ERROR] boom\n"+`["not","an","object"]`+"\n\xff\xfe bad utf-8\n")
	h.runOnce(handled("web", "stdout", enrich.Handling{JSON: true, DetectLevel: true}))
	raw := h.out.raw(t)
	require.Len(t, raw, 5, "every line is valid JSON out")
	got := h.out.lines(t)
	assert.JSONEq(t, `{"level":"WARN","msg":"disk","n":1}`, string(got[0].JSON))
	assert.Equal(t, `{"level":"WARN","msg":"disk","n":1}`, got[0].Message, "the raw line is kept")
	assert.Equal(t, "warn", got[0].Level)
	assert.Nil(t, got[1].JSON)
	assert.Equal(t, `{"broken":`, got[1].Message)
	assert.Equal(t, "error", got[2].Level)
	assert.Nil(t, got[3].JSON, "an array is not an object")
	assert.Nil(t, got[4].JSON)
}

// A change of the meta (an in-place job update) changes the handling of
// the running stream.
func TestAHandlingChangeTakesEffectOnARunningStream(t *testing.T) {
	h := newHarness(t)
	h.writeFile("web.stdout.0", `{"level":"info"}`+"\n")
	p := h.daemon(target("web", "stdout"))
	defer p.stop()
	got := h.waitLines(1)
	assert.Nil(t, got[0].JSON)
	p.updates <- []enrich.Desired{handled("web", "stdout", enrich.Handling{JSON: true})}
	// The manager takes a snapshot only once it applied the one before:
	// after this send, the stream holds the new handling, which it takes
	// before it reads again.
	p.updates <- []enrich.Desired{handled("web", "stdout", enrich.Handling{JSON: true})}
	h.appendFile("web.stdout.0", `{"level":"error"}`+"\n")
	got = h.waitLines(2)
	assert.JSONEq(t, `{"level":"error"}`, string(got[1].JSON))
	assert.Equal(t, "error", got[1].Level)
}

// Failed writes make the stream read again from the commit: events are
// resent whole, never split.
func TestOutputFailuresResendWholeEvents(t *testing.T) {
	h := newHarness(t)
	var want []string
	var text strings.Builder
	for i := range 400 {
		ev := fmt.Sprintf("E%04d boom\n\tat a.B.c(B.java:%d)\n\tat a.B.main(B.java:1)", i, i)
		want = append(want, ev)
		text.WriteString(ev + "\n")
	}
	data := text.String()
	half := strings.Index(data[len(data)/2:], "\tat") + len(data)/2 + 2 // inside an event
	h.writeFile("web.stdout.0", data[:half])
	h.writeFile("web.stdout.1", data[half:])
	h.out.failNext = 3
	h.runOnce(handled("web", "stdout", enrich.Handling{Multiline: rules(t, "java")}))
	got := messages(h.out.lines(t))
	assertAtLeastOnceInOrder(t, want, got)
	assert.Greater(t, len(got), len(want), "a failed write is resent")
}
