package enrich

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fullMeta sets every key of the nomad object.
func fullMeta() Meta {
	return Meta{
		Namespace: "default", Region: "eu-west", NodeID: "n1", NodeName: "vm", NodePool: "gpu", NodeClass: "large",
		Datacenter: "dc1", JobID: "burst/dispatch-1795621200-5f3a9c1e", JobName: "burst/dispatch-1795621200-5f3a9c1e",
		JobType: "batch", ParentJobID: "burst", Dispatched: true, GroupName: "b", TaskName: "proxy",
		TaskLifecycle: LifecyclePrestart, TaskSidecar: true, AllocID: "a1", AllocName: "burst/dispatch-1795621200-5f3a9c1e.b[0]",
		AllocIndex: intp(0), Restarts: 2, Extra: map[string]string{"team": "payments"},
		NodeMeta: map[string]string{"rack": "r12", "zone": ""},
	}
}

func TestRenderNewNomadKeys(t *testing.T) {
	r := NewRenderer(Stdout, fullMeta())
	r.SetFile("f")
	var got rendered
	require.NoError(t, json.Unmarshal(r.AppendLine(nil, []byte("ts"), []byte("m"), 0, false), &got))
	assert.Equal(t, map[string]any{
		"namespace": "default", "region": "eu-west", "node_id": "n1", "node_name": "vm", "node_pool": "gpu",
		"node_class": "large", "datacenter": "dc1", "job_id": "burst/dispatch-1795621200-5f3a9c1e",
		"job_name": "burst/dispatch-1795621200-5f3a9c1e", "job_type": "batch", "parent_job_id": "burst",
		"dispatched": true, "group_name": "b", "task_name": "proxy", "task_lifecycle": "prestart",
		"task_sidecar": true, "alloc_id": "a1", "alloc_name": "burst/dispatch-1795621200-5f3a9c1e.b[0]",
		"alloc_index": float64(0), "restarts": float64(2), "meta": map[string]any{"team": "payments"},
		"node_meta": map[string]any{"rack": "r12"},
	}, got.Nomad)

	// A sidecar flag without a lifecycle hook is not rendered (Nomad
	// requires a hook in a lifecycle block).
	r = NewRenderer(Stdout, Meta{TaskName: "t", TaskSidecar: true, PeriodicChild: true, NodeMeta: map[string]string{"zone": ""}})
	r.SetFile("f")
	var bare rendered
	require.NoError(t, json.Unmarshal(r.AppendLine(nil, []byte("ts"), nil, 0, false), &bare))
	assert.Equal(t, map[string]any{"task_name": "t", "periodic_child": true}, bare.Nomad)
}

func TestSetMetaChangesTheNomadPartOnly(t *testing.T) {
	m := fullMeta()
	r := NewRenderer(Stderr, m)
	r.SetFile("/x/server.stderr.3")
	before := string(r.AppendLine(nil, []byte("ts"), []byte("m"), 9, false))
	m2 := m
	m2.Restarts = 3
	assert.False(t, m.Equal(m2))
	assert.True(t, m.Equal(fullMeta()), "equal metadata in other maps")
	r.SetMeta(m2)
	after := string(r.AppendLine(nil, []byte("ts"), []byte("m"), 9, false))
	assert.Equal(t, strings.Replace(before, `"restarts":2`, `"restarts":3`, 1), after)
	truncated := string(r.AppendLine(nil, []byte("ts"), []byte("m"), 9, true))
	assert.Contains(t, truncated, `"truncated":true,"nomad":{`)
	assert.Contains(t, truncated, `"restarts":3`)
}

// The failed task of allocation-failed.json, as captured from Nomad 2.0.5.
func capturedCrash() *api.TaskState {
	return &api.TaskState{State: "dead", Failed: true, Events: []*api.TaskEvent{
		{Type: "Received", Time: 1795566377860060035, DisplayMessage: "Task received by client", Details: map[string]string{}},
		{Type: "Task Setup", Time: 1795566377862062452, Message: "Building Task Directory", DisplayMessage: "Building Task Directory",
			Details: map[string]string{"message": "Building Task Directory"}},
		{Type: "Started", Time: 1795566377936459088, DisplayMessage: "Task started by client", Details: map[string]string{}},
		{Type: "Terminated", Time: 1795566377937628212, DisplayMessage: "Exit Code: 3", ExitCode: 3,
			Details: map[string]string{"signal": "0", "oom_killed": "false", "exit_code": "3"}},
		{Type: "Not Restarting", Time: 1795566377940387007, DisplayMessage: "Policy allows no restarts", FailsTask: true,
			RestartReason: "Policy allows no restarts", Details: map[string]string{"restart_reason": "Policy allows no restarts", "fails_task": "true"}},
	}}
}

func TestEventRecordSchema(t *testing.T) {
	evs := eventsOf(capturedCrash())
	require.Len(t, evs, 5)
	r := NewRenderer(Stdout, Meta{Namespace: "default", JobID: "failing", TaskName: "crash", AllocID: "b224a5bb", Restarts: 1})
	rec := r.AppendEvent(nil, evs[3])
	require.True(t, strings.HasSuffix(string(rec), "}\n"))
	require.Equal(t, 1, strings.Count(string(rec), "\n"))
	// The order of the schema, byte for byte up to the details.
	assert.True(t, strings.HasPrefix(string(rec), `{"timestamp":"2026-11-25T00:26:17.937628212Z","message":"Exit Code: 3","stream":"event",`+
		`"event":{"type":"Terminated","exit_code":3,"signal":0,"restarts":0,"details":{`), "%s", rec)
	var got map[string]any
	require.NoError(t, json.Unmarshal(rec, &got), "%s", rec)
	assert.Equal(t, map[string]any{
		"timestamp": "2026-11-25T00:26:17.937628212Z",
		"message":   "Exit Code: 3",
		"stream":    "event",
		"event": map[string]any{
			"type": "Terminated", "exit_code": float64(3), "signal": float64(0), "restarts": float64(0),
			"details": map[string]any{"signal": "0", "oom_killed": "false", "exit_code": "3"},
		},
		"nomad": map[string]any{"namespace": "default", "job_id": "failing", "task_name": "crash", "alloc_id": "b224a5bb", "restarts": float64(1)},
	}, got, "no file, no offset, no oom_killed when Nomad says false")

	// Empty details are an empty object.
	var received map[string]any
	require.NoError(t, json.Unmarshal(r.AppendEvent(nil, evs[0]), &received))
	assert.Equal(t, map[string]any{}, received["event"].(map[string]any)["details"])
	assert.Equal(t, "Task received by client", received["message"])
}

func TestOOMKilledIsTyped(t *testing.T) {
	evs := eventsOf(&api.TaskState{Events: []*api.TaskEvent{{
		Type: "Terminated", Time: 1795621104100000000, DisplayMessage: "Exit Code: 137, Signal: 9", ExitCode: 137, Signal: 9,
		Details: map[string]string{"exit_code": "137", "signal": "9", "oom_killed": "true", "quote": `a"b\c`},
	}}})
	require.Len(t, evs, 1)
	var got struct {
		Event struct {
			Type      string            `json:"type"`
			ExitCode  int               `json:"exit_code"`
			Signal    int               `json:"signal"`
			OOMKilled *bool             `json:"oom_killed"`
			Details   map[string]string `json:"details"`
		} `json:"event"`
	}
	rec := NewRenderer(Stdout, Meta{TaskName: "app"}).AppendEvent(nil, evs[0])
	require.NoError(t, json.Unmarshal(rec, &got), "%s", rec)
	require.NotNil(t, got.Event.OOMKilled)
	assert.True(t, *got.Event.OOMKilled)
	assert.Equal(t, 137, got.Event.ExitCode)
	assert.Equal(t, 9, got.Event.Signal)
	assert.Equal(t, "true", got.Event.Details["oom_killed"], "Details as Nomad gives them")
	assert.Equal(t, `a"b\c`, got.Event.Details["quote"])
}

func TestEventMessageFallsBack(t *testing.T) {
	evs := eventsOf(&api.TaskState{Events: []*api.TaskEvent{
		{Type: "Driver Failure", Time: 3, Details: map[string]string{"driver_error": "exec not found", "fails_task": "true"}},
		{Type: "Killing", Time: 2, Message: "raw message"},
		{Type: "Killed", Time: 1},
	}})
	require.Len(t, evs, 3)
	assert.Equal(t, "Killed", evs[0].Message, "the type when nothing else")
	assert.Equal(t, "raw message", evs[1].Message, "Message when DisplayMessage is empty")
	assert.Equal(t, "Driver Failure: driver_error=exec not found, fails_task=true", evs[2].Message)
}

func TestExitCodeAndSignalFromDetails(t *testing.T) {
	// The typed fields are deprecated in Nomad's API; Details carry them.
	evs := eventsOf(&api.TaskState{Events: []*api.TaskEvent{
		{Type: "Terminated", Time: 1, Details: map[string]string{"exit_code": "130", "signal": "2"}},
	}})
	assert.Equal(t, 130, evs[0].ExitCode)
	assert.Equal(t, 2, evs[0].Signal)
}

func TestEventsOfTheSameNanosecondKeepNomadsOrder(t *testing.T) {
	state := &api.TaskState{Events: []*api.TaskEvent{
		{Type: "Killing", Time: 20},
		{Type: "Terminated", Time: 30},
		{Type: "Killed", Time: 30},
		{Type: "Received", Time: 10},
		{Type: "Sibling Task Failed", Time: 30},
	}}
	evs := eventsOf(state)
	var got []string
	var seqs []int
	for _, ev := range evs {
		got = append(got, ev.Type)
		seqs = append(seqs, ev.Seq)
	}
	assert.Equal(t, []string{"Received", "Killing", "Terminated", "Killed", "Sibling Task Failed"}, got)
	assert.Equal(t, []int{1, 1, 1, 2, 3}, seqs)
	info := &TaskInfo{Events: evs}
	after := info.EventsAfter(30, 1)
	require.Len(t, after, 2, "a batch that ended between two events of one nanosecond")
	assert.Equal(t, "Killed", after[0].Type)
	assert.Empty(t, info.EventsAfter(30, 3))
	assert.Len(t, info.EventsAfter(0, 0), 5)
	assert.Nil(t, (&TaskInfo{}).EventsAfter(0, 0))
}

func TestRestartsPerEvent(t *testing.T) {
	// Nomad keeps the last 10 events: the first restarts fell out of the
	// list, the count did not.
	state := &api.TaskState{Restarts: 4, Events: []*api.TaskEvent{
		{Type: "Terminated", Time: 1},
		{Type: "Restarting", Time: 2},
		{Type: "Started", Time: 3},
		{Type: "Terminated", Time: 4},
		{Type: "Restarting", Time: 5},
		{Type: "Started", Time: 6},
	}}
	var got []uint64
	for _, ev := range eventsOf(state) {
		got = append(got, ev.Restarts)
	}
	assert.Equal(t, []uint64{2, 3, 3, 3, 4, 4}, got)
}

func TestLogConfig(t *testing.T) {
	yes, no, ten, one := true, false, 10, 1
	assert.Equal(t, LogConfig{MaxFiles: 10, MaxFileSizeMB: 1}, logConfigOf(&api.Task{LogConfig: &api.LogConfig{MaxFiles: &ten, MaxFileSizeMB: &one, Disabled: &no}}))
	assert.Equal(t, int64(10<<20), LogConfig{MaxFiles: 10, MaxFileSizeMB: 1}.RetentionBytes())
	assert.True(t, logConfigOf(&api.Task{LogConfig: &api.LogConfig{Disabled: &yes}}).Disabled)
	assert.True(t, logConfigOf(&api.Task{LogConfig: &api.LogConfig{Enabled: &no}}).Disabled, "jobs from before Nomad 1.5.4")
	assert.False(t, logConfigOf(&api.Task{LogConfig: &api.LogConfig{Enabled: &no, Disabled: &no}}).Disabled, "Disabled wins")
	assert.Equal(t, LogConfig{}, logConfigOf(nil))
	assert.Zero(t, LogConfig{MaxFiles: 10, MaxFileSizeMB: 10, Disabled: true}.RetentionBytes())
	assert.Zero(t, LogConfig{}.RetentionBytes(), "unknown")
}

func TestAppendLineStillAllocatesNothing(t *testing.T) {
	r := NewRenderer(Stdout, fullMeta())
	r.SetFile("/opt/nomad/data/alloc/a1/alloc/logs/proxy.stdout.0")
	ts := AppendTimestamp(nil, time.Now())
	buf := make([]byte, 0, 4096)
	allocs := testing.AllocsPerRun(100, func() {
		buf = r.AppendLine(buf[:0], ts, []byte("GET / 200"), 12, false)
	})
	assert.Zero(t, allocs)
}

func FuzzEventIsValidJSON(f *testing.F) {
	f.Add("Terminated", "Exit Code: 3", "oom_killed", "true", int64(1795566377937628212))
	f.Add("\xff\"", "", "\x00", "\\", int64(-1))
	f.Fuzz(func(t *testing.T, typ, msg, key, value string, at int64) {
		evs := eventsOf(&api.TaskState{Restarts: 1, Events: []*api.TaskEvent{
			{Type: typ, Time: at, DisplayMessage: msg, Details: map[string]string{key: value}},
		}})
		rec := NewRenderer(Stdout, Meta{TaskName: typ, NodeMeta: map[string]string{key: value}}).AppendEvent(nil, evs[0])
		var got struct {
			Stream string `json:"stream"`
			Event  struct {
				Type     string            `json:"type"`
				Restarts uint64            `json:"restarts"`
				Details  map[string]string `json:"details"`
			} `json:"event"`
		}
		if err := json.Unmarshal(rec, &got); err != nil {
			t.Fatalf("invalid JSON %q: %v", rec, err)
		}
		if got.Stream != "event" || len(got.Event.Details) != 1 {
			t.Fatalf("record %q", rec)
		}
	})
}

// BenchmarkAppendLineAllKeys is BenchmarkAppendLine with every nomad key
// set: the keys are rendered once, so a line costs only their bytes.
func BenchmarkAppendLineAllKeys(b *testing.B) {
	r := NewRenderer(Stdout, fullMeta())
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
