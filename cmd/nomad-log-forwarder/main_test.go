package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/checkpoint"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/taskstream"
)

// cli runs the command line in-process and returns its exit code, stdout
// and stderr.
func cli(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := dispatch(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

const (
	allocA = "977ac344-4ea7-a153-a4b6-95ed026410d6"
	allocB = "e333a86a-8a4b-4d28-6ef4-6a1e0d0a8fb5"
)

// writeCheckpoint saves entries into a new checkpoint and returns its path.
func writeCheckpoint(t *testing.T, entries ...checkpoint.Entry) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "checkpoint.msgpack")
	s, err := checkpoint.Open(path, nil)
	require.NoError(t, err)
	for _, e := range entries {
		s.Commit(e)
	}
	require.NoError(t, s.Save())
	return path
}

func ckEntry(alloc, task, stream string, index, offset int64) checkpoint.Entry {
	return checkpoint.Entry{AllocID: alloc, Task: task, Stream: stream, FileIndex: index, Offset: offset}
}

func TestHelpOfEachCommandExitsZero(t *testing.T) {
	for _, args := range [][]string{{"offsets", "--help"}, {"help", "offsets"}, {"offsets", "-h"}, {"offsets", "list", "--help"}, {"offsets", "forget", "--help"}} {
		code, out, errOut := cli(args...)
		assert.Equal(t, 0, code, "%v", args)
		assert.Contains(t, out, "nomad-log-forwarder offsets list", "%v", args)
		assert.Contains(t, out, "--ignore-missing", "%v", args)
		assert.Contains(t, out, "--alloc-dir", "%v", args)
		assert.Empty(t, errOut, "%v", args)
	}
	for _, args := range [][]string{{"run", "--help"}, {"help", "run"}, {"run", "-h"}} {
		code, out, errOut := cli(args...)
		assert.Equal(t, 0, code, "%v", args)
		// One paragraph of what run does, then three examples, then the
		// usage line and the flags.
		assert.True(t, strings.HasPrefix(out, "nomad-log-forwarder run follows"), "%v: %s", args, out)
		head, flags, ok := strings.Cut(out, "\nFlags:\n")
		require.True(t, ok, "%v", args)
		paragraphs := strings.Split(strings.TrimSpace(head), "\n\n")
		require.GreaterOrEqual(t, len(paragraphs), 3, "%v", args)
		assert.NotContains(t, paragraphs[0], "\n  ", "the description is one paragraph")
		assert.True(t, strings.HasPrefix(paragraphs[1], "Examples:"), "%v", args)
		assert.Equal(t, "Usage: nomad-log-forwarder run [flags]", paragraphs[len(paragraphs)-1])
		assert.Equal(t, 3, strings.Count(head, "\n  # "), "three examples, each with its comment")
		assert.Equal(t, 3, strings.Count(head, "nomad-log-forwarder run --"), "three example command lines")
		assert.Contains(t, flags, "--output")
		assert.Empty(t, errOut, "%v", args)
	}
	code, out, _ := cli("help")
	assert.Equal(t, 0, code)
	assert.Contains(t, out, "Exit codes")
	code, _, errOut := cli("help", "nope")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, `unknown command "nope"`)
}

func TestBadOutputIsAUsageErrorBeforeAnythingStarts(t *testing.T) {
	for spec, want := range map[string]string{
		"127.0.0.1:9000":        "did you mean tcp://127.0.0.1:9000?",
		"tcp://127.0.0.1:0":     "outside 1-65535",
		"tcp://127.0.0.1:65536": "outside 1-65535",
		"tcp://127.0.0.1:9/x":   "no path",
		"http://127.0.0.1:0/":   "outside 1-65535",
		"https://[::1]:99999/":  "outside 1-65535",
	} {
		dir := t.TempDir()
		ckpt := filepath.Join(dir, "new", "checkpoint.msgpack")
		code, _, errOut := cli("run", "--offline", "--once", "--alloc-dir", dir, "--checkpoint", ckpt, "--metrics-addr", "", "--output", spec)
		assert.Equal(t, 2, code, spec)
		assert.Contains(t, errOut, want, spec)
		_, err := os.Stat(filepath.Dir(ckpt))
		assert.ErrorIs(t, err, os.ErrNotExist, "%s: nothing started, no checkpoint folder", spec)
	}
}

// A typo in --checkpoint must not look like an empty checkpoint, nor
// leave a folder behind.
func TestOffsetsOnAMissingCheckpoint(t *testing.T) {
	base := t.TempDir()
	path := filepath.Join(base, "typo", "checkpoint.msgpack")
	for _, args := range [][]string{
		{"offsets", "list", "--checkpoint", path},
		{"offsets", "list", "--json", "--checkpoint", path},
		{"offsets", "forget", "--checkpoint", path, allocA},
		{"offsets", "forget", "--ignore-missing", "--checkpoint", path, allocA},
	} {
		code, out, errOut := cli(args...)
		assert.Equal(t, 1, code, "%v", args)
		assert.Empty(t, out, "%v", args)
		assert.Equal(t, "nomad-log-forwarder "+args[0]+" "+args[1]+": no checkpoint at "+path+"\n", errOut, "%v", args)
	}
	entries, err := os.ReadDir(base)
	require.NoError(t, err)
	assert.Empty(t, entries, "nothing was created")
}

func TestForgetRefusesUnknownAllocIDs(t *testing.T) {
	path := writeCheckpoint(t, ckEntry(allocA, "web", "stdout", 0, 10), ckEntry(allocA, "web", "stderr", 0, 0), ckEntry(allocB, "api", "stdout", 1, 5))
	before, err := os.ReadFile(path)
	require.NoError(t, err)

	code, out, errOut := cli("offsets", "forget", "--checkpoint", path, allocA, "0000dead-0000-0000-0000-000000000000")
	assert.Equal(t, 1, code)
	assert.Empty(t, out)
	assert.Contains(t, errOut, `"0000dead-0000-0000-0000-000000000000"`)
	assert.Contains(t, errOut, "not in checkpoint "+path)
	assert.NotContains(t, errOut, allocA, "only the missing ID is named")
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, before, after, "nothing was removed")

	// A short ID gets the full one suggested.
	code, _, errOut = cli("offsets", "forget", "--checkpoint", path, allocB[:8])
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "did you mean "+allocB+"?")

	code, out, errOut = cli("offsets", "forget", "--ignore-missing", "--checkpoint", path, allocA, "0000dead-0000-0000-0000-000000000000")
	assert.Equal(t, 0, code, errOut)
	assert.Equal(t, "removed 2 entries\n", out)
	entries, err := checkpoint.Read(path)
	require.NoError(t, err)
	require.Len(t, entries, 1)
	assert.Equal(t, allocB, entries[0].AllocID)

	code, _, errOut = cli("offsets", "forget", "--checkpoint", path)
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "name at least one ALLOC_ID")
}

// A lag that could not be measured is "-" and null, never 0, with one
// warning that names the folder.
func TestListShowsUnknownLag(t *testing.T) {
	allocDir := t.TempDir()
	logs := filepath.Join(allocDir, allocA, "alloc", "logs")
	require.NoError(t, os.MkdirAll(logs, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(logs, "web.stdout.0"), []byte("0123456789"), 0o644))
	path := writeCheckpoint(t,
		ckEntry(allocA, "web", "stdout", 0, 4),
		ckEntry(allocB, "api", "stdout", 0, 0), // its folder is gone
		ckEntry(allocB, "api", "stderr", 0, 0),
	)

	code, out, errOut := cli("offsets", "list", "--checkpoint", path, "--alloc-dir", allocDir, "--json")
	require.Equal(t, 0, code, errOut)
	var rows []map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &rows))
	require.Len(t, rows, 3)
	assert.Equal(t, float64(6), rows[0]["lag_bytes"])
	assert.Contains(t, rows[1], "lag_bytes")
	assert.Nil(t, rows[1]["lag_bytes"], "unknown is null")
	assert.Nil(t, rows[2]["lag_bytes"])
	assert.Equal(t, 1, strings.Count(errOut, "\n"), "one warning: %s", errOut)
	assert.Contains(t, errOut, "unknown for 2 of 3 streams")
	assert.Contains(t, errOut, filepath.Join(allocDir, allocB, "alloc", "logs"))

	code, out, errOut = cli("offsets", "list", "--checkpoint", path, "--alloc-dir", allocDir)
	require.Equal(t, 0, code, errOut)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 4)
	assert.Equal(t, "6", strings.Fields(lines[1])[5])
	assert.Equal(t, "-", strings.Fields(lines[2])[5])
	assert.Equal(t, "-", strings.Fields(lines[3])[5])
	assert.Equal(t, 1, strings.Count(errOut, "\n"))

	// A wrong --alloc-dir: every lag unknown, one warning naming it.
	missing := filepath.Join(t.TempDir(), "not-the-alloc-dir")
	code, out, errOut = cli("offsets", "list", "--checkpoint", path, "--alloc-dir", missing)
	require.Equal(t, 0, code, errOut)
	for _, l := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
		assert.Equal(t, "-", strings.Fields(l)[5], "LAG_BYTES unknown: %s", l)
	}
	assert.Equal(t, 1, strings.Count(errOut, "\n"), errOut)
	assert.Contains(t, errOut, missing)
	assert.Contains(t, errOut, "every stream")
}

// Task names come from the API or from names a task gave its files: the
// table must not pass a terminal escape sequence or a newline through.
func TestListEscapesControlCharacters(t *testing.T) {
	allocDir := t.TempDir()
	evil := "web\x1b[2J\x1b[1;1H\nforged-row\t9999"
	path := writeCheckpoint(t,
		ckEntry(allocA, evil, "stdout", 0, 0),
		ckEntry(allocA, "has space", "stdout", 0, 0),
		ckEntry(allocA, "bidi\u202eexe.txt", "stdout", 0, 0),
		ckEntry(allocA, "web", "stdout", 0, 0),
	)
	code, out, errOut := cli("offsets", "list", "--checkpoint", path, "--alloc-dir", allocDir)
	require.Equal(t, 0, code)
	assert.Contains(t, errOut, "warning: LAG_BYTES is unknown", "the folder does not exist")
	assert.NotContains(t, errOut, "\u202e", "the warning names a task too")
	assert.NotContains(t, out, "\x1b")
	assert.NotContains(t, out, "\u202e")
	assert.NotContains(t, out, "\t")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	assert.Len(t, lines, 5, "a header and four rows, none forged:\n%s", out)
	assert.Contains(t, out, `"web\x1b[2J\x1b[1;1H\nforged-row\t9999"`)
	assert.Contains(t, out, `"has space"`)
	assert.Contains(t, out, `"bidi\u202eexe.txt"`)
	assert.Contains(t, out, "\n"+allocA+"  web  ", "plain names are printed as they are")

	// --json already escapes: the name comes back intact.
	code, out, _ = cli("offsets", "list", "--checkpoint", path, "--alloc-dir", allocDir, "--json")
	require.Equal(t, 0, code)
	assert.NotContains(t, out, "\x1b")
	var rows []map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &rows))
	var tasks []string
	for _, r := range rows {
		tasks = append(tasks, r["task"].(string))
	}
	assert.Contains(t, tasks, evil)
}

func TestVersionIsStamped(t *testing.T) {
	old := version
	t.Cleanup(func() { version = old })
	version = "1.2.3"
	code, out, _ := cli("version")
	assert.Equal(t, 0, code)
	assert.True(t, strings.HasPrefix(out, "nomad-log-forwarder 1.2.3 (go1."), out)
}

// A task's events have a row of their own, with the time of the last event
// the output confirmed, and no files or lag.
func TestListShowsTheLastEventTimePerTask(t *testing.T) {
	allocDir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(allocDir, allocA, "alloc", "logs"), 0o755))
	events := ckEntry(allocA, "web", taskstream.Events, 0, 0)
	events.EventTime = time.Date(2026, 12, 5, 10, 0, 0, 1, time.UTC).UnixNano()
	path := writeCheckpoint(t, ckEntry(allocA, "web", "stdout", 0, 0), events)

	code, out, errOut := cli("offsets", "list", "--checkpoint", path, "--alloc-dir", allocDir, "--json")
	require.Equal(t, 0, code, errOut)
	var rows []map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &rows))
	require.Len(t, rows, 2)
	assert.Equal(t, "event", rows[0]["stream"])
	assert.Equal(t, "2026-12-05T10:00:00.000000001Z", rows[0]["last_event_time"])
	assert.Nil(t, rows[0]["lag_bytes"])
	assert.NotContains(t, rows[1], "last_event_time")
	assert.Empty(t, errOut, "no lag is missing: events have none")

	code, out, _ = cli("offsets", "list", "--checkpoint", path, "--alloc-dir", allocDir)
	require.Equal(t, 0, code)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	assert.Contains(t, lines[0], "LAST_EVENT")
	assert.Equal(t, []string{allocA, "web", "event", "-", "-", "-", "2026-12-05T10:00:00.000000001Z", "false"}, strings.Fields(lines[1])[:8])
}

// Issue 16, item 3: secrets stay out of argv: headers come from a file of
// 'Name: value' lines and from NLF_HTTP_HEADERS too, merged with
// --http-header; a bad line names its source and line, never a value.
func TestHTTPHeadersFromAFileAndTheEnvironment(t *testing.T) {
	file := filepath.Join(t.TempDir(), "headers")
	require.NoError(t, os.WriteFile(file, []byte("# Vector's token\nAuthorization: Bearer from-the-file\n"), 0o600))
	t.Setenv("NLF_HTTP_HEADERS", "X-Tenant: from-env\nX-Other: too")
	f, err := parseRunFlags([]string{"--output", "http://127.0.0.1:8687/", "--http-header-file", file, "--http-header", "X-Argv: a"}, io.Discard, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, "Bearer from-the-file", f.header.Get("Authorization"))
	assert.Equal(t, "from-env", f.header.Get("X-Tenant"))
	assert.Equal(t, "too", f.header.Get("X-Other"))
	assert.Equal(t, "a", f.header.Get("X-Argv"))

	require.NoError(t, os.WriteFile(file, []byte("Authorization: ok\nno-colon-secret-value\n"), 0o600))
	_, err = parseRunFlags([]string{"--output", "http://127.0.0.1:8687/", "--http-header-file", file}, io.Discard, io.Discard)
	require.Error(t, err)
	assert.Contains(t, err.Error(), file+" line 2")
	assert.NotContains(t, err.Error(), "secret-value")

	t.Setenv("NLF_HTTP_HEADERS", "")
	code, _, errOut := cli("run", "--output", "tcp://127.0.0.1:9000", "--http-header", "A: b")
	assert.Equal(t, 2, code, "headers need the HTTP output: a usage error")
	assert.Contains(t, errOut, "need an http:// or https:// --output")
}

// A bad default for per-task handling is a usage error (exit 2) naming the
// flag, before anything starts.
func TestBadHandlingFlagsAreUsageErrors(t *testing.T) {
	for _, tc := range []struct{ flag, value, want string }{
		{"--multiline", "cobol", "--multiline"},
		{"--multiline", "regex:(", "--multiline"},
		{"--format", "yaml", "--format"},
		{"--rate-limit", "100", "--rate-limit"},
		{"--rate-limit", "-5/s", "--rate-limit"},
		{"--level", "loud", "--level"},
		{"--multiline-max-lines", "0", "--multiline-max-lines"},
		{"--multiline-max-bytes", "-1", "--multiline-max-bytes"},
		{"--multiline-timeout", "0s", "--multiline-timeout"},
	} {
		dir := t.TempDir()
		ckpt := filepath.Join(dir, "new", "checkpoint.msgpack")
		code, _, errOut := cli("run", "--offline", "--once", "--alloc-dir", dir, "--checkpoint", ckpt, "--metrics-addr", "", tc.flag, tc.value)
		assert.Equal(t, 2, code, "%s %s", tc.flag, tc.value)
		assert.Contains(t, errOut, tc.want, "%s %s", tc.flag, tc.value)
		_, err := os.Stat(filepath.Dir(ckpt))
		assert.ErrorIs(t, err, os.ErrNotExist, "nothing started")
	}
	f, err := parseRunFlags([]string{"--multiline", "python", "--format", "json", "--rate-limit", "50/s", "--level", "detect", "--max-line-bytes", "4096"}, io.Discard, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, "python", f.handling.Multiline.Name())
	assert.True(t, f.handling.JSON)
	assert.True(t, f.handling.DetectLevel)
	assert.Equal(t, 50, f.handling.RateLimit)
	assert.Equal(t, 4096, f.multilineMaxBytes, "--multiline-max-bytes defaults to --max-line-bytes")
}
