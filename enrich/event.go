package enrich

import (
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/nomad/api"
)

// TaskEvent is one of a task's events (TaskStates[task].Events), the way
// it is sent: one record in the task's output (see AppendEvent).
type TaskEvent struct {
	// Type is Nomad's: Received, Task Setup, Started, Terminated,
	// Restarting, Not Restarting, Killing, Killed, Driver Failure, ...
	Type string
	// Time is when Nomad recorded the event, in unix nanoseconds.
	Time int64
	// Seq numbers the events of a task that share one Time, in Nomad's
	// order: 1 for the first, 2 for the next. (Time, Seq) is the mark a
	// checkpoint keeps of the last event confirmed.
	Seq int
	// Message is Nomad's DisplayMessage; when that is empty, its Message;
	// when that is empty too, the type and details.
	Message  string
	ExitCode int
	Signal   int
	// Restarts is the task's restart count when the event happened: the
	// listing's count less the Restarting events after this one (Nomad
	// counts a restart when it records a Restarting event).
	Restarts uint64
	// OOMKilled: Details say oom_killed "true" (the kernel killed the task
	// for memory).
	OOMKilled bool
	// Details is Nomad's map, as given. Shared with the listing; do not
	// change it.
	Details map[string]string
}

// eventsOf returns the events of a task state ordered by time; events of
// the same nanosecond keep Nomad's order.
func eventsOf(state *api.TaskState) []TaskEvent {
	out := make([]TaskEvent, 0, len(state.Events))
	for _, e := range state.Events {
		if e == nil {
			continue
		}
		ev := TaskEvent{
			Type: e.Type, Time: e.Time, Message: e.DisplayMessage, ExitCode: e.ExitCode, Signal: e.Signal,
			Details: e.Details,
		}
		if ev.Message == "" {
			ev.Message = e.Message
		}
		if ev.Message == "" {
			ev.Message = describeEvent(e.Type, e.Details)
		}
		// The typed fields are deprecated in Nomad's API in favour of
		// Details; take Details when the field is empty.
		if ev.ExitCode == 0 {
			ev.ExitCode = detailInt(e.Details, "exit_code")
		}
		if ev.Signal == 0 {
			ev.Signal = detailInt(e.Details, "signal")
		}
		ev.OOMKilled, _ = strconv.ParseBool(e.Details["oom_killed"])
		out = append(out, ev)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time < out[j].Time })
	restarts := state.Restarts
	for i := len(out) - 1; i >= 0; i-- {
		out[i].Restarts = restarts
		if out[i].Type == api.TaskRestarting && restarts > 0 {
			restarts--
		}
	}
	for i := range out {
		out[i].Seq = 1
		if i > 0 && out[i].Time == out[i-1].Time {
			out[i].Seq = out[i-1].Seq + 1
		}
	}
	return out
}

func detailInt(details map[string]string, key string) int {
	n, _ := strconv.Atoi(details[key])
	return n
}

// describeEvent builds a message for an event Nomad gave none: its type,
// then its details as key=value in key order.
func describeEvent(typ string, details map[string]string) string {
	if len(details) == 0 {
		return typ
	}
	keys := make([]string, 0, len(details))
	for k := range details {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(typ)
	for i, k := range keys {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString(", ")
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(details[k])
	}
	return b.String()
}

// AppendEvent appends the record of one task event, with the metadata of
// the Renderer's task, to dst:
//
//	{"timestamp":"…","message":"…","stream":"event","event":{"type":"Terminated",
//	 "exit_code":3,"signal":0,"restarts":1,"oom_killed":true,"details":{…}},"nomad":{…}}
//
// The timestamp is the event's Time; oom_killed is there only when true.
// A record has no file and no offset: alloc_id, task_name, event.type and
// the timestamp identify it. Any Renderer of the task will do.
func (r *Renderer) AppendEvent(dst []byte, ev TaskEvent) []byte {
	dst = append(dst, `{"timestamp":"`...)
	dst = AppendTimestamp(dst, time.Unix(0, ev.Time))
	dst = append(dst, `","message":`...)
	dst = appendString(dst, ev.Message)
	dst = append(dst, `,"stream":"event","event":{`...)
	o := object{b: dst}
	o.key("type")
	o.b = appendString(o.b, ev.Type)
	o.int("exit_code", int64(ev.ExitCode))
	o.int("signal", int64(ev.Signal))
	o.key("restarts")
	o.b = strconv.AppendUint(o.b, ev.Restarts, 10)
	o.flag("oom_killed", ev.OOMKilled)
	o.strings("details", ev.Details, false)
	dst = append(o.b, '}')
	return append(dst, r.nomadPart...)
}
