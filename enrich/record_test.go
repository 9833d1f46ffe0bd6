package enrich

import (
	"encoding/json"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func record(t *testing.T, msg string, opts RecordOpts) map[string]any {
	t.Helper()
	r := NewRenderer(Stdout, Meta{TaskName: "web"})
	r.SetFile("/alloc/x/alloc/logs/web.stdout.0")
	line := r.AppendRecord(nil, AppendTimestamp(nil, time.Unix(0, 0)), []byte(msg), 9, opts)
	var got map[string]any
	require.NoError(t, json.Unmarshal(line, &got), "%s", line)
	if utf8.ValidString(msg) {
		assert.Equal(t, msg, got["message"], "the raw line is kept")
	}
	return got
}

func TestJSONLinesGetTheirObjectAndLevel(t *testing.T) {
	got := record(t, `{"level":"WARN","msg":"disk at 91%","n":[1,{"a":"}"}]}`, RecordOpts{JSON: true})
	assert.Equal(t, map[string]any{"level": "WARN", "msg": "disk at 91%", "n": []any{1.0, map[string]any{"a": "}"}}}, got["json"])
	assert.Equal(t, "warn", got["level"], "a JSON line's level key gives level whenever the format is json")

	for msg, level := range map[string]any{
		`{"lvl":"Info"}`:                           "info",
		`{"severity":"ERROR","x":1}`:               "error",
		`{"log":{"level":"debug"},"m":"x"}`:        "debug",
		`{"log.level":"trace"}`:                    "trace",
		`{"@l":"Fatal"}`:                           "fatal",
		`{"@l":"fatal","level":"info"}`:            "info", // level comes first
		`{"severity":"x","lvl":"y"}`:               "y",
		`{"level":"w\u0041RN"}`:                    "warn",
		`{"level":7}`:                              nil, // not a string
		`{"msg":"no level"}`:                       nil,
		`{"log":{"file":"a"},"severity":"notice"}`: "notice",
	} {
		got := record(t, msg, RecordOpts{JSON: true})
		assert.Equal(t, level, got["level"], msg)
		assert.NotNil(t, got["json"], msg)
	}
	for _, msg := range []string{`not json`, `["an","array"]`, `{"broken":`, `"a string"`, "{\"a\":\"\xff\"}", `{} trailing`} {
		got := record(t, msg, RecordOpts{JSON: true})
		assert.NotContains(t, got, "json", "%q passes through as text", msg)
	}
	assert.NotContains(t, record(t, `{"level":"x"}`, RecordOpts{}), "json", "text format: no json key")
}

func TestTextLevelsAreDetected(t *testing.T) {
	for msg, level := range map[string]any{
		"ERROR disk full":       "error",
		"[WARN] slow":           "warn",
		"warning: retrying":     "warning",
		"Critical: down":        "critical",
		"INFOS are not a level": nil,
		"2026-12-05 ERROR late": nil, // the first word only
		"":                      nil,
	} {
		assert.Equal(t, level, record(t, msg, RecordOpts{DetectLevel: true})["level"], "%q", msg)
	}
	assert.NotContains(t, record(t, "ERROR x", RecordOpts{}), "level", "detection is off by default")
}

func TestMultilineRecordsSayTheirLines(t *testing.T) {
	got := record(t, "panic: x\n\ngoroutine 1 [running]:", RecordOpts{Lines: 3, Truncated: true})
	assert.Equal(t, 3.0, got["lines"])
	assert.Equal(t, true, got["truncated"])
	assert.NotContains(t, record(t, "one line", RecordOpts{Lines: 1}), "lines")
}

func TestThrottleRecord(t *testing.T) {
	r := NewRenderer(Stderr, Meta{TaskName: "web"})
	r.SetFile("/alloc/x/alloc/logs/web.stderr.3")
	line := r.AppendThrottle(nil, AppendTimestamp(nil, time.Unix(0, 0)), 1234, 100, 77)
	var got map[string]any
	require.NoError(t, json.Unmarshal(line, &got), "%s", line)
	assert.Equal(t, "nomad-log-forwarder: dropped 1234 lines over the limit of 100 lines/s", got["message"])
	assert.Equal(t, 1234.0, got["throttled"])
	assert.Equal(t, "stderr", got["stream"])
	assert.Equal(t, "/alloc/x/alloc/logs/web.stderr.3", got["file"])
	assert.Equal(t, 77.0, got["offset"])
	assert.NotNil(t, got["nomad"])
}

func FuzzRecordIsValidJSON(f *testing.F) {
	f.Add([]byte(`{"level":"warn","log":{"level":"x"}}`), true, true)
	f.Add([]byte("[ERROR] \xff"), false, true)
	f.Fuzz(func(t *testing.T, msg []byte, asJSON, detect bool) {
		r := NewRenderer(Stdout, Meta{TaskName: "t"})
		r.SetFile("f")
		line := r.AppendRecord(nil, AppendTimestamp(nil, time.Unix(0, 0)), msg, 7, RecordOpts{JSON: asJSON, DetectLevel: detect, Lines: 2})
		var got map[string]any
		if err := json.Unmarshal(line, &got); err != nil {
			t.Fatalf("invalid JSON %q: %v", line, err)
		}
		if utf8.Valid(msg) && got["message"] != string(msg) {
			t.Fatalf("message %q came back as %q", msg, got["message"])
		}
	})
}

func BenchmarkAppendRecordJSON(b *testing.B) {
	r := NewRenderer(Stdout, Meta{Namespace: "default", JobName: "http", TaskName: "server", AllocID: "e333a86a-cefe-d673-f65e-b5a2e1172d99"})
	r.SetFile("/opt/nomad/data/alloc/e333a86a-cefe-d673-f65e-b5a2e1172d99/alloc/logs/server.stdout.0")
	ts := AppendTimestamp(nil, time.Now())
	msg := []byte(`{"time":"2026-11-25T14:00:00Z","level":"info","msg":"request","id":4711,"method":"GET","path":"/api/v1/items","status":200}`)
	buf := make([]byte, 0, 4096)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		buf = r.AppendRecord(buf[:0], ts, msg, 123456, RecordOpts{JSON: true, DetectLevel: true})
	}
}

// validJSON agrees with encoding/json.Valid (and refuses invalid UTF-8,
// which a line embedded as JSON must not carry).
func FuzzValidJSON(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":[1,2.5e-3,true,null,"x\u00e9"]}`, `{"a":}`, `[`, `-0.1`, `01`, `"\x"`, "\"\t\"", `{"a":"\ud800"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		want := json.Valid(b) && utf8.Valid(b)
		if got := validJSON(b); got != want {
			t.Fatalf("validJSON(%q) = %v, json.Valid says %v", b, got, want)
		}
	})
}
