package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"

	"github.com/hashicorp/nomad/api"
)

// lineGen makes log lines of about 100 bytes (31 to 151, 104 on average
// with the newline) that look like what services print: logfmt, JSON
// (quotes to escape), stack traces (tabs), Windows paths (backslashes),
// non-ASCII text. 40% of them need JSON escapes. It is deterministic for
// a seed.
type lineGen struct {
	rng                    *rand.Rand
	words, levels, methods []string
}

func newLineGen(seed uint64) *lineGen {
	return &lineGen{
		rng:     rand.New(rand.NewPCG(seed, 0x6e6c66)),
		words:   strings.Fields("request handled cache miss upstream timeout retry user session order payment queue worker flush commit ok db shard replica lease"),
		levels:  strings.Fields("info info info debug warn error"),
		methods: strings.Fields("GET GET POST PUT DELETE"),
	}
}

func (g *lineGen) pick(from []string) string { return from[g.rng.IntN(len(from))] }

// appendLine appends one line, newline included.
func (g *lineGen) appendLine(dst []byte) []byte {
	want := len(dst) + 30 + g.rng.IntN(121)
	return append(g.appendBody(dst, want), '\n')
}

// appendBody appends a line body (no newline) of about want-len(dst) bytes.
func (g *lineGen) appendBody(dst []byte, want int) []byte {
	r := g.rng
	switch k := r.IntN(10); {
	case k < 5:
		dst = fmt.Appendf(dst, "2026-11-25T14:%02d:%02d.%03dZ level=%s msg=%s %s /api/v1/items/%d status=%d",
			r.IntN(60), r.IntN(60), r.IntN(1000), g.pick(g.levels), g.pick(g.words),
			g.pick(g.methods), r.IntN(100000), 200+r.IntN(4)*100)
	case k < 7:
		dst = fmt.Appendf(dst, `{"level":"%s","ts":1764079200.%06d,"msg":"%s %s","id":%d,"caller":"svc/handler.go:%d"}`,
			g.pick(g.levels), r.IntN(1000000), g.pick(g.words),
			g.pick(g.words), r.IntN(1<<20), r.IntN(400))
	case k < 8:
		dst = fmt.Appendf(dst, "\tat com.example.%s.Service.handle(Service.java:%d)", g.pick(g.words), r.IntN(900))
	case k < 9:
		dst = fmt.Appendf(dst, `WARN could not open C:\data\%s\%d.log: "access denied"`, g.pick(g.words), r.IntN(1000))
	default:
		dst = fmt.Appendf(dst, "INFO Übertragung für Kunde %d abgeschlossen: %d Einträge, Größe %d KiB ✓", r.IntN(10000), r.IntN(500), r.IntN(9000))
	}
	for len(dst) < want {
		dst = append(dst, ' ')
		dst = append(dst, g.pick(g.words)...)
	}
	return dst
}

// writeLines writes n generated lines to path and returns its size.
func writeLines(path string, n int, seed uint64) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, fmt.Errorf("create log file: %w", err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	g := newLineGen(seed)
	var size int64
	buf := make([]byte, 0, 256)
	for range n {
		buf = g.appendLine(buf[:0])
		size += int64(len(buf))
		w.Write(buf)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return 0, fmt.Errorf("write log file: %w", err)
	}
	return size, f.Close()
}

// A mark opens every line of a live stream: "#" stream sequence writetime,
// fixed width, so that the receiver can read it cheaply from the JSON.
const (
	markStream = 5
	markSeq    = 10
	markTime   = 19
	markLen    = 1 + markStream + 1 + markSeq + 1 + markTime + 1
)

func appendMark(dst []byte, stream int, seq int64, written int64) []byte {
	dst = append(dst, '#')
	dst = appendPadded(dst, int64(stream), markStream)
	dst = append(dst, ' ')
	dst = appendPadded(dst, seq, markSeq)
	dst = append(dst, ' ')
	dst = appendPadded(dst, written, markTime)
	return append(dst, ' ')
}

func appendPadded(dst []byte, v int64, width int) []byte {
	var digits [20]byte
	s := strconv.AppendInt(digits[:0], v, 10)
	for range width - len(s) {
		dst = append(dst, '0')
	}
	return append(dst, s...)
}

// parseMark reads a mark at the start of b.
func parseMark(b []byte) (stream int, seq, written int64, ok bool) {
	if len(b) < markLen || b[0] != '#' {
		return 0, 0, 0, false
	}
	b = b[1:]
	s, ok1 := parseDigits(b[:markStream])
	b = b[markStream+1:]
	seq, ok2 := parseDigits(b[:markSeq])
	b = b[markSeq+1:]
	written, ok3 := parseDigits(b[:markTime])
	return int(s), seq, written, ok1 && ok2 && ok3
}

func parseDigits(b []byte) (int64, bool) {
	var v int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	return v, true
}

// benchAllocID is the ID of the i-th allocation of a scenario.
func benchAllocID(i int) string {
	return fmt.Sprintf("b3c4a11c-0000-4000-8000-%012d", i)
}

const (
	benchNodeID   = "c055d2fa-60f1-812e-3b10-5985f6b956c8"
	benchNodeName = "bench-node"
	benchTask     = "app"
	allocsPerJob  = 10
)

// writeAllocations saves a `GET /v1/node/<id>/allocations` response for
// n running allocations (jobs of ten allocations, one task "app" each), so
// that --offline --allocs-file gives every line its full nomad object.
func writeAllocations(path string, n int) error {
	allocs := make([]*api.Allocation, 0, n)
	var job *api.Job
	for i := range n {
		if i%allocsPerJob == 0 {
			job = benchJob(fmt.Sprintf("svc-%03d", i/allocsPerJob))
		}
		allocs = append(allocs, &api.Allocation{
			ID:                 benchAllocID(i),
			Namespace:          "default",
			EvalID:             fmt.Sprintf("e0a1b2c3-0000-4000-8000-%012d", i),
			Name:               fmt.Sprintf("%s.web[%d]", *job.ID, i%allocsPerJob),
			NodeID:             benchNodeID,
			NodeName:           benchNodeName,
			JobID:              *job.ID,
			Job:                job,
			TaskGroup:          "web",
			DesiredStatus:      api.AllocDesiredStatusRun,
			ClientStatus:       api.AllocClientStatusRunning,
			TaskStates:         map[string]*api.TaskState{benchTask: {State: "running"}},
			CreateIndex:        uint64(1000 + i),
			ModifyIndex:        uint64(1000 + i),
			AllocModifyIndex:   uint64(1000 + i),
			CreateTime:         1764079200000000000,
			ModifyTime:         1764079200000000000,
			DeploymentID:       "d0000000-0000-4000-8000-000000000000",
			AllocatedResources: &api.AllocatedResources{},
		})
	}
	data, err := json.Marshal(allocs)
	if err != nil {
		return fmt.Errorf("encode allocations: %w", err)
	}
	return os.WriteFile(path, data, 0o644)
}

func benchJob(id string) *api.Job {
	return &api.Job{
		ID: &id, Name: &id, Namespace: new("default"), Type: new("service"), Region: new("global"),
		Datacenters: []string{"dc1"},
		Meta:        map[string]string{"team": "bench"},
		TaskGroups: []*api.TaskGroup{{
			Name:  new("web"),
			Count: new(allocsPerJob),
			Tasks: []*api.Task{{
				Name:      benchTask,
				Driver:    "docker",
				Config:    map[string]any{"image": "registry.example/" + id + ":1.0", "ports": []string{"http"}},
				Meta:      map[string]string{"lang": "go"},
				LogConfig: &api.LogConfig{MaxFiles: new(10), MaxFileSizeMB: new(10)},
				Resources: &api.Resources{CPU: new(100), MemoryMB: new(128)},
			}},
		}},
	}
}
