package chaos_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/hashicorp/nomad/api"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/e2e"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/fakenomad"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/logmon"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/recv"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/scenario"
)

var fullFlag = flag.Bool("chaos.full", false, "run every scenario at the size the issue names (make chaos); NLF_CHAOS=full does the same")

// full says whether the suite runs at full size rather than in the short
// form that `make test` runs within the CI budget.
func full() bool { return *fullFlag || os.Getenv("NLF_CHAOS") == "full" }

// pick chooses the short or the full form of a parameter.
func pick[T any](short, long T) T {
	if full() {
		return long
	}
	return short
}

func TestMain(m *testing.M) {
	// The daemon inherits the environment: a developer's Nomad settings
	// must not send it elsewhere than the fake API.
	for _, k := range []string{"NOMAD_ADDR", "NOMAD_UNIX_ADDR", "NOMAD_SECRETS_DIR", "NOMAD_TOKEN", "NOMAD_ALLOC_ID",
		"NOMAD_CACERT", "NOMAD_CAPATH", "NOMAD_CLIENT_CERT", "NOMAD_CLIENT_KEY", "NOMAD_REGION", "NOMAD_HTTP_AUTH",
		"NOMAD_SKIP_VERIFY", "NOMAD_TLS_SERVER_NAME"} {
		os.Unsetenv(k)
	}
	os.Exit(e2e.Main(m))
}

const (
	fixtures = "../testdata/nomad-2.0.5"
	// templateAlloc is the fixture allocation the suite's allocations are
	// copied from (chatty.web[1], running, one task).
	templateAlloc = "e333a86a-cefe-d673-f65e-b5a2e1172d99"
)

// world is a node: an alloc dir written by the logmon imitation, the fake
// Nomad API listing the streams' allocations, a receiver that records
// every line, the daemon's checkpoint and metrics address, and a Tally of
// what arrived.
type world struct {
	t        *testing.T
	dir      string // holds the alloc dir and whatever lies outside it
	allocDir string
	ckpt     string
	metrics  string
	api      *fakenomad.Server
	template *api.Allocation
	recv     *recv.Receiver
	logmon   logmon.Options
	pad      int
	streams  []*scenario.Stream
	tally    *scenario.Tally
	consumed int
	// flags are the daemon's flags after the world's own; a flag given
	// twice takes its last value.
	flags []string
	// procs are the daemon's runs in this world, for their logs.
	procs []*e2e.Process
	start time.Time
}

type worldConfig struct {
	streams []scenario.StreamSpec
	logmon  logmon.Options
	// pad is the most padding bytes per line (default 60).
	pad int
	api fakenomad.Options
}

func newWorld(t *testing.T, cfg worldConfig) *world {
	t.Helper()
	// The previous scenario's garbage (hundreds of thousands of received
	// lines) is collected now, not during this one: on two cores the
	// test process's collector took the processor the daemon's watcher
	// needed under burst-fast, and logmon purged a file before it was
	// opened.
	runtime.GC()
	w := &world{t: t, dir: t.TempDir(), logmon: cfg.logmon, pad: cfg.pad, start: time.Now()}
	w.allocDir = filepath.Join(w.dir, "alloc")
	require.NoError(t, os.Mkdir(w.allocDir, 0o755))
	w.ckpt = filepath.Join(t.TempDir(), "checkpoint.msgpack")
	w.metrics = freeAddr(t)
	w.api, w.template = newAPI(t, cfg.api)
	var err error
	w.recv, err = recv.Listen("")
	require.NoError(t, err)
	t.Cleanup(w.recv.Stop)
	w.tally = scenario.NewTally(nil)
	w.addStreams(cfg.streams...)
	return w
}

// newAPI starts a fake Nomad API for the fixture's node, with no
// allocations, and returns the allocation to copy new ones from.
func newAPI(t *testing.T, o fakenomad.Options) (*fakenomad.Server, *api.Allocation) {
	t.Helper()
	srv, err := fakenomad.FromFixtures(filepath.Join(fixtures, "api"), "node-allocations.json", o)
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	template := srv.Allocation(templateAlloc)
	require.NotNil(t, template)
	srv.Remove(srv.IDs()...)
	return srv, template
}

// allocation is a running allocation like the template, with another ID
// and the given tasks, whose logs block says what the logmon imitation
// does.
func allocation(template *api.Allocation, id string, index int, lm logmon.Options, tasks ...string) *api.Allocation {
	raw, err := json.Marshal(template)
	if err != nil {
		panic(err)
	}
	var a api.Allocation
	if err := json.Unmarshal(raw, &a); err != nil {
		panic(err)
	}
	a.ID, a.Name, a.ClientStatus = id, fmt.Sprintf("chatty.web[%d]", index), api.AllocClientStatusRunning
	var group *api.TaskGroup
	for _, g := range a.Job.TaskGroups {
		if g.Name != nil && *g.Name == a.TaskGroup {
			group = g
		}
	}
	proto, state := group.Tasks[0], a.TaskStates["server"]
	group.Tasks = nil
	a.TaskStates = map[string]*api.TaskState{}
	maxFiles, sizeMB := lm.MaxFiles, int((lm.FileSize+(1<<20)-1)>>20)
	if maxFiles <= 0 {
		maxFiles = 10
	}
	for _, name := range tasks {
		task := *proto
		task.Name = name
		task.LogConfig = &api.LogConfig{MaxFiles: &maxFiles, MaxFileSizeMB: &sizeMB, Disabled: new(bool)}
		group.Tasks = append(group.Tasks, &task)
		s := *state
		a.TaskStates[name] = &s
	}
	return &a
}

// allocations makes one running allocation per alloc ID of specs, with the
// tasks the specs name.
func allocations(template *api.Allocation, lm logmon.Options, specs []scenario.StreamSpec) []*api.Allocation {
	var order []string
	tasks := map[string][]string{}
	for _, s := range specs {
		if _, ok := tasks[s.AllocID]; !ok {
			order = append(order, s.AllocID)
		}
		if !containsString(tasks[s.AllocID], s.Task) {
			tasks[s.AllocID] = append(tasks[s.AllocID], s.Task)
		}
	}
	out := make([]*api.Allocation, 0, len(order))
	for i, id := range order {
		out = append(out, allocation(template, id, i, lm, tasks[id]...))
	}
	return out
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// addStreams creates streams, lists their allocations in the API and adds
// them to the tally.
func (w *world) addStreams(specs ...scenario.StreamSpec) []*scenario.Stream {
	w.t.Helper()
	if len(specs) == 0 {
		return nil
	}
	streams, err := scenario.NewStreams(w.allocDir, specs, w.logmon)
	require.NoError(w.t, err)
	for _, s := range streams {
		if w.pad > 0 {
			s.SetPad(w.pad)
		}
		w.t.Cleanup(func() { s.Close() })
	}
	w.streams = append(w.streams, streams...)
	w.tally.AddStreams(streams...)
	w.api.Put(allocations(w.template, w.logmon, specs)...)
	return streams
}

// specs names n streams: n/2 allocations, each with both streams of task
// "app"; the lines carry "<prefix><alloc number>.<stream>", and the alloc
// IDs differ between prefixes.
func specs(prefix string, n int) []scenario.StreamSpec {
	var out []scenario.StreamSpec
	for i := range (n + 1) / 2 {
		id := fmt.Sprintf("%08x-0000-4000-8000-%012d", crc32.ChecksumIEEE([]byte(prefix)), i)
		for _, stream := range []string{"stdout", "stderr"}[:min(2, n-2*i)] {
			out = append(out, scenario.StreamSpec{AllocID: id, Task: "app", Stream: stream, Name: fmt.Sprintf("%s%03d.%s", prefix, i, stream)})
		}
	}
	return out
}

func (w *world) args(extra ...string) []string {
	args := []string{"run", "--nomad-addr", w.api.URL(), "--alloc-dir", w.allocDir, "--checkpoint", w.ckpt,
		"--output", w.recv.URL(), "--metrics-addr", w.metrics, "--checkpoint-interval", "100ms",
		"--drain-delay", "300ms", "--reconcile-interval", "1s"}
	args = append(args, w.flags...)
	return append(args, extra...)
}

// startDaemon runs the daemon.
func (w *world) startDaemon(extra ...string) *e2e.Process {
	w.t.Helper()
	p := e2e.Start(w.t, w.args(extra...)...)
	w.procs = append(w.procs, p)
	return p
}

// stopDaemon sends SIGTERM and expects a clean exit within the daemon's
// shutdown budget.
func (w *world) stopDaemon(p *e2e.Process) {
	w.t.Helper()
	require.NoError(w.t, p.Signal(syscall.SIGTERM))
	code, err := p.Wait(10 * time.Second)
	require.NoError(w.t, err, "the daemon did not stop after SIGTERM")
	require.Equal(w.t, 0, code, "exit code after SIGTERM")
}

// stderr is what every daemon run of this world logged.
func (w *world) stderr() string {
	var b strings.Builder
	for _, p := range w.procs {
		b.WriteString(p.Stderr())
	}
	return b.String()
}

// update adds what the receiver accepted since the last update to the tally.
func (w *world) update() {
	lines := w.recv.LinesFrom(w.consumed)
	w.tally.Add(lines)
	w.consumed += len(lines)
}

// complete says whether every line written so far has arrived.
func (w *world) complete() bool {
	w.update()
	return w.tally.Complete()
}

// report is the tally's report, with the world's duration.
func (w *world) report(name string) scenario.Report {
	w.update()
	r := w.tally.Report(name)
	r.Duration = time.Since(w.start)
	return r
}

// waitFor waits for cond, failing the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !e2e.Eventually(context.Background(), timeout, cond) {
		t.Fatalf("gave up after %s waiting for %s", timeout, what)
	}
}

// metric scrapes the daemon's /metrics and sums the samples of name.
func (w *world) metric(name string) float64 {
	w.t.Helper()
	v, err := scrape(w.metrics, name)
	require.NoError(w.t, err)
	return v
}

func scrape(addr, name string) (float64, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	var sum float64
	found := false
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || !(strings.HasPrefix(rest, " ") || strings.HasPrefix(rest, "{")) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("metric line %q: %w", line, err)
		}
		sum += v
		found = true
	}
	if !found {
		return 0, fmt.Errorf("no metric %s at %s", name, addr)
	}
	return sum, nil
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

func modTime(path string) time.Time {
	st, err := os.Stat(path)
	if err != nil {
		return time.Time{}
	}
	return st.ModTime()
}

// countLogs counts the daemon's JSON log entries whose msg starts with prefix.
func countLogs(stderr, prefix string) int {
	n := 0
	for _, l := range strings.Split(stderr, "\n") {
		var e struct {
			Msg string `json:"msg"`
		}
		if json.Unmarshal([]byte(l), &e) == nil && strings.HasPrefix(e.Msg, prefix) {
			n++
		}
	}
	return n
}

// sumLogField sums a numeric field of the daemon's JSON log entries whose
// msg starts with prefix.
func sumLogField(stderr, prefix, field string) int {
	n := 0
	for _, l := range strings.Split(stderr, "\n") {
		var e map[string]any
		if json.Unmarshal([]byte(l), &e) != nil {
			continue
		}
		if msg, _ := e["msg"].(string); strings.HasPrefix(msg, prefix) {
			v, _ := e[field].(float64)
			n += int(v)
		}
	}
	return n
}

// procStatus reads a field of /proc/<pid>/status in bytes (VmRSS, VmHWM).
func procStatus(pid int, field string) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(l, field+":"); ok {
			f := strings.Fields(rest)
			kb, err := strconv.ParseInt(f[0], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// resetPeakRSS makes VmHWM start again from the current RSS (clear_refs
// 5, Linux 4.0), so that a peak can be measured for one phase of a run.
func resetPeakRSS(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// openFiles lists the paths of the files a process holds open.
func openFiles(pid int) []string {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, _ := os.ReadDir(dir)
	var out []string
	for _, e := range entries {
		if target, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil {
			out = append(out, target)
		}
	}
	return out
}

// inotifyEvent is one event of an inotifyWatch.
type inotifyEvent struct {
	Path string // the watched path, joined with the name the event carries
	Mask uint32
}

// inotifyWatch records inotify events on some paths, so that a test can
// see a file being opened or created by another process.
type inotifyWatch struct {
	f      *os.File
	wg     sync.WaitGroup
	events chan inotifyEvent
	mu     sync.Mutex
	paths  map[int]string
}

// watchPaths starts watching each path for the events in mask. Events
// arrive on w.events (buffered; events beyond its room are dropped and
// counted as IN_Q_OVERFLOW).
func watchPaths(t *testing.T, mask uint32, paths ...string) *inotifyWatch {
	t.Helper()
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	require.NoError(t, err)
	w := &inotifyWatch{f: os.NewFile(uintptr(fd), "inotify"), events: make(chan inotifyEvent, 4096), paths: map[int]string{}}
	for _, p := range paths {
		wd, err := unix.InotifyAddWatch(fd, p, mask|unix.IN_DONT_FOLLOW)
		require.NoError(t, err, "watch %s", p)
		w.paths[wd] = p
	}
	w.wg.Go(w.read)
	t.Cleanup(w.close)
	return w
}

func (w *inotifyWatch) read() {
	defer close(w.events)
	buf := make([]byte, 64<<10)
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			return
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := ""
			if ev.Len > 0 {
				raw := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
				name = string(bytes.TrimRight(raw, "\x00"))
			}
			off += unix.SizeofInotifyEvent + int(ev.Len)
			w.mu.Lock()
			path := w.paths[int(ev.Wd)]
			w.mu.Unlock()
			if name != "" {
				path = filepath.Join(path, name)
			}
			select {
			case w.events <- inotifyEvent{Path: path, Mask: ev.Mask}:
			default:
			}
		}
	}
}

// close stops watching; events stays readable until drained.
func (w *inotifyWatch) close() {
	w.f.Close()
	w.wg.Wait()
}

// drain returns the events received so far.
func (w *inotifyWatch) drain() []inotifyEvent {
	var out []inotifyEvent
	for {
		select {
		case ev, ok := <-w.events:
			if !ok {
				return out
			}
			out = append(out, ev)
		default:
			return out
		}
	}
}
