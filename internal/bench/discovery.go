package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/fakenomad"
)

// discoveryTarget is the discovery scenario's target.
const discoveryTarget = 3 * time.Second

// discovery: the forwarder follows a fake Nomad API (internal/fakenomad,
// in this process) that lists no allocation for its node, then Allocs new
// allocations (copies of a captured one) appear in one change. Measured:
// from that change (the Put, the fake API's encoding included) until the
// first line of every stream of every new allocation arrived. Two orders,
// each with a forwarder of its own:
//   - on disk first: the folders exist and logmon wrote a first flush to
//     both streams of each before the API lists them running, as when the
//     forwarder learns of them from the client's status update;
//   - listed first: the API lists them pending, and only then are their
//     folders created and the first lines written, as when the forwarder
//     sees the placement before the client started the tasks (their
//     streams wait for the folder).
func discovery(ctx context.Context, e *env) ([]Row, error) {
	fx, err := loadFixture(e.cfg.Fixtures)
	if err != nil {
		return nil, err
	}
	var rows []Row
	for _, listedFirst := range []bool{false, true} {
		got, err := e.discoverOnce(ctx, fx, listedFirst)
		if err != nil {
			return rows, err
		}
		rows = append(rows, got...)
	}
	return rows, nil
}

func (e *env) discoverOnce(ctx context.Context, fx *fixture, listedFirst bool) ([]Row, error) {
	const name = "discovery"
	order, dir := "on disk first", filepath.Join(e.dir, "on-disk-first")
	if listedFirst {
		order, dir = "listed first", filepath.Join(e.dir, "listed-first")
	}
	nomad, err := fakenomad.New(fakenomad.Options{NodeID: fx.template.NodeID, Node: fx.node, AgentSelf: fx.self})
	if err != nil {
		return nil, err
	}
	defer nomad.Close()
	r, err := listen(2 * e.cfg.Allocs)
	if err != nil {
		return nil, err
	}
	l := &live{recv: r}
	defer l.close()
	if !listedFirst {
		e.progress("%s: creating %d allocations x 2 streams, not listed by the API yet", order, e.cfg.Allocs)
		if l.fleet, err = newFleet(dir, e.cfg.Allocs, fx.task); err != nil {
			return nil, err
		}
	}
	allocDir := filepath.Join(dir, "alloc")
	if err := os.MkdirAll(allocDir, 0o755); err != nil {
		return nil, err
	}
	d, err := startChild(e.cfg.Forwarder, e.forwarderArgs(name, r.url(), "run", "--nomad-addr", nomad.URL(),
		"--alloc-dir", allocDir, "--checkpoint", filepath.Join(dir, "checkpoint.msgpack"))...)
	if err != nil {
		return nil, err
	}
	l.daemon = d
	e.progress("%s: forwarder running, pid %d; waiting for its blocking query", order, d.pid())
	err = waitUntil(ctx, time.Minute, func() bool { return nomad.Waiting() == 1 },
		func() string {
			return fmt.Sprintf("%d blocking queries parked, %d requests; the forwarder's log ends with:\n%s",
				nomad.Waiting(), nomad.Requests(fakenomad.Allocations), d.output.tail(2000))
		})
	if err != nil {
		return nil, err
	}
	if err := sleep(ctx, e.cfg.Settle); err != nil { // let start-up work pass
		return nil, err
	}

	status := api.AllocClientStatusRunning
	if listedFirst {
		status = api.AllocClientStatusPending
	} else if err := l.fleet.flushAll(e.perFlush()); err != nil {
		return nil, err
	}
	allocs := fx.allocations(e.cfg.Allocs, status)
	r.markResume()
	e.progress("%s: listing %d allocations in one change", order, len(allocs))
	start := time.Now()
	nomad.Put(allocs...)
	if listedFirst {
		if l.fleet, err = newFleet(dir, e.cfg.Allocs, fx.task); err != nil {
			return nil, err
		}
		if err := l.fleet.flushAll(e.perFlush()); err != nil {
			return nil, err
		}
	}
	all := len(l.fleet.streams)
	err = waitUntil(ctx, time.Minute, func() bool { n, _ := r.resumed(); return n == all },
		func() string { n, _ := r.resumed(); return fmt.Sprintf("%d of %d streams delivered a line", n, all) })
	if err != nil {
		return nil, err
	}
	_, last := r.resumed()
	took := last.Sub(start)
	written := l.fleet.written.Load()
	if err := r.waitCount(ctx, written, 30*time.Second); err != nil {
		return nil, fmt.Errorf("delivering the first lines: %w", err)
	}
	rss, err := l.stopDaemon()
	if err != nil {
		return nil, err
	}
	dups, gaps := r.faults()
	metric := fmt.Sprintf("%d allocations (%d streams) appear in one API change, folders and first lines written before it: first line of every stream delivered",
		len(allocs), all)
	if listedFirst {
		metric = "the same, listed pending first, then folders created and first lines written"
	}
	delivered := deliveryRow(name, r, written, dups, gaps)
	delivered.Metric = order + ": " + delivered.Metric
	return []Row{
		targetRow(name, metric, "< 3 s", fmtDuration(took), took < discoveryTarget),
		infoRow(name, order+": peak RSS", fmtMiB(rss)),
		delivered,
	}, nil
}

// fixture is what the discovery scenario copies from a captured API
// folder (testdata/nomad-2.0.5/api).
type fixture struct {
	// template is the first running allocation with one task in
	// node-allocations.json; task is the name of that task.
	template   *api.Allocation
	task       string
	node, self []byte // bodies of GET /v1/node/<id> and GET /v1/agent/self
}

// allocations makes n copies of the template with the given status, each
// with its own ID (benchAllocID) and name.
func (fx *fixture) allocations(n int, status string) []*api.Allocation {
	t := fx.template
	allocs := make([]*api.Allocation, n)
	for i := range allocs {
		a := *t
		a.ID, a.Name = benchAllocID(i), fmt.Sprintf("%s.%s[%d]", t.JobID, t.TaskGroup, i)
		a.ClientStatus = status
		// No task events: the receivers count log lines (event records
		// have their own tests), and a copy has no history of its own.
		a.TaskStates = map[string]*api.TaskState{fx.task: {State: "running"}}
		if status == api.AllocClientStatusPending {
			a.TaskStates = map[string]*api.TaskState{fx.task: {State: "pending"}}
		}
		allocs[i] = &a
	}
	return allocs
}

// loadFixture reads a captured API folder.
func loadFixture(dir string) (*fixture, error) {
	if dir == "" {
		return nil, errors.New("no fixture folder (nlf-bench -fixtures)")
	}
	allocs, err := fakenomad.LoadAllocations(filepath.Join(dir, "node-allocations.json"))
	if err != nil {
		return nil, fmt.Errorf("fixture allocations: %w", err)
	}
	fx := &fixture{}
	for _, a := range allocs {
		if a.ClientStatus == api.AllocClientStatusRunning && len(a.TaskStates) == 1 {
			fx.template = a
			for task := range a.TaskStates {
				fx.task = task
			}
			break
		}
	}
	if fx.template == nil {
		return nil, fmt.Errorf("%s/node-allocations.json: no running allocation with one task", dir)
	}
	if fx.node, err = os.ReadFile(filepath.Join(dir, "node.json")); err != nil {
		return nil, fmt.Errorf("fixture node: %w", err)
	}
	if fx.self, err = os.ReadFile(filepath.Join(dir, "agent-self.json")); err != nil {
		return nil, fmt.Errorf("fixture agent: %w", err)
	}
	return fx, nil
}
