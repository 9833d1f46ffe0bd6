package enrich

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func intp(i int) *int { return &i }

type rendered struct {
	Timestamp string         `json:"timestamp"`
	Message   string         `json:"message"`
	Stream    string         `json:"stream"`
	File      string         `json:"file"`
	Offset    int64          `json:"offset"`
	Truncated bool           `json:"truncated"`
	Nomad     map[string]any `json:"nomad"`
}

func TestRenderLineSchema(t *testing.T) {
	r := NewRenderer(Stderr, Meta{
		Namespace: "default", NodeID: "n1", NodeName: "vm", Datacenter: "dc1", JobID: "http", JobName: "http",
		JobType: "service", GroupName: "app", TaskName: "server", AllocID: "a1", AllocName: "http.app[0]",
		AllocIndex: intp(0), Extra: map[string]string{"team": "payments", "empty": ""},
	})
	r.SetFile("/data/alloc/a1/alloc/logs/server.stderr.0")
	ts := AppendTimestamp(nil, time.Date(2026, 11, 25, 14, 0, 0, 123456789, time.FixedZone("x", 3600)))
	line := r.AppendLine(nil, ts, []byte("GET / 200"), 1234, false)
	require.True(t, strings.HasSuffix(string(line), "}\n"))
	var got map[string]any
	require.NoError(t, json.Unmarshal(line, &got))
	assert.Equal(t, map[string]any{
		"timestamp": "2026-11-25T13:00:00.123456789Z",
		"message":   "GET / 200",
		"stream":    "stderr",
		"file":      "/data/alloc/a1/alloc/logs/server.stderr.0",
		"offset":    float64(1234),
		"nomad": map[string]any{
			"namespace": "default", "node_id": "n1", "node_name": "vm", "datacenter": "dc1",
			"job_id": "http", "job_name": "http", "job_type": "service", "group_name": "app",
			"task_name": "server", "alloc_id": "a1", "alloc_name": "http.app[0]", "alloc_index": float64(0),
			"meta": map[string]any{"team": "payments"},
		},
	}, got)
}

func TestRenderLeavesUnknownKeysOut(t *testing.T) {
	r := NewRenderer(Stdout, Meta{AllocID: "a1", TaskName: "t"})
	r.SetFile("f")
	var got map[string]any
	require.NoError(t, json.Unmarshal(r.AppendLine(nil, []byte("ts"), nil, 0, true), &got))
	assert.Equal(t, map[string]any{"alloc_id": "a1", "task_name": "t"}, got["nomad"])
	assert.Equal(t, true, got["truncated"])
	assert.Equal(t, "", got["message"])
}

func TestEscapeMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{
		"plain", `quote " backslash \ slash /`, "tab\tnl\ncr\r", "\x00\x01\x1b[31mred\x1b[0m\x7f",
		"héllo wörld ✓ 😀", "bad \xff\xfe utf8 \xc3", "\u2028\u2029",
	} {
		got := string(AppendEscaped(nil, []byte(s)))
		var back string
		require.NoError(t, json.Unmarshal([]byte(`"`+got+`"`), &back), "escaped %q", got)
		// encoding/json turns each invalid byte into one U+FFFD; so do we.
		assert.Equal(t, fixPerByte(s), back)
	}
}

// fixPerByte replaces each invalid UTF-8 byte with U+FFFD.
func fixPerByte(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

func FuzzRenderIsValidJSON(f *testing.F) {
	f.Add([]byte("hello"), "task.with.dots")
	f.Add([]byte("\xff\x00\"\\"), "t")
	f.Fuzz(func(t *testing.T, msg []byte, task string) {
		r := NewRenderer(Stdout, Meta{TaskName: task, Extra: map[string]string{task: task}})
		r.SetFile(task)
		line := r.AppendLine(nil, AppendTimestamp(nil, time.Unix(0, 0)), msg, 7, false)
		var got rendered
		if err := json.Unmarshal(line, &got); err != nil {
			t.Fatalf("invalid JSON %q: %v", line, err)
		}
		if utf8.Valid(msg) && got.Message != string(msg) {
			t.Fatalf("valid UTF-8 message %q came back as %q", msg, got.Message)
		}
	})
}

func BenchmarkAppendLine(b *testing.B) {
	r := NewRenderer(Stdout, Meta{Namespace: "default", NodeID: "c055d2fa-60f1-812e-3b10-5985f6b956c8", NodeName: "vm",
		Datacenter: "dc1", JobID: "http", JobName: "http", JobType: "service", GroupName: "app", TaskName: "server",
		AllocID: "e333a86a-cefe-d673-f65e-b5a2e1172d99", AllocName: "http.app[0]", AllocIndex: intp(0)})
	r.SetFile("/opt/nomad/data/alloc/e333a86a-cefe-d673-f65e-b5a2e1172d99/alloc/logs/server.stdout.0")
	ts := AppendTimestamp(nil, time.Now())
	msg := []byte(`2026-11-25T14:00:00Z INFO request id=4711 method=GET path="/api/v1/items" status=200 took=1.2ms`)
	buf := make([]byte, 0, 4096)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		buf = r.AppendLine(buf[:0], ts, msg, 123456, false)
	}
}
