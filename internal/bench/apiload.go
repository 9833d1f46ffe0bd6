package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/fakenomad"
)

// The api-load scenario's sizes: a node's allocations, the reconcile
// interval the figures are given for (the default of
// --reconcile-interval), the one the run uses, and the fleet the servers'
// load is worked out for.
const (
	apiLoadAllocs          = 50
	apiLoadDefault         = 30 * time.Second
	apiLoadInterval        = 3 * time.Second
	apiLoadFleet           = 10_000
	apiLoadMaxPerReconcile = 1.1
)

// apiLoad: what one node's forwarder costs the Nomad API at steady state.
// The forwarder follows the fake API (internal/fakenomad, in this
// process, gzipping when asked as Nomad does) for a node with 50 copies of
// a captured running allocation, their folders and first lines in place;
// nothing changes while it is measured. To see many reconciles in a short
// run it runs with --reconcile-interval 3s, a tenth of the default (less
// for a window under a minute, down to 1s): its
// requests and bytes over the window are scaled to an hour at the default
// 30s (x 3600/window x 3s/30s), which holds because at steady state every
// request is a blocking query that runs out one (jittered) interval. The
// servers' load at 10,000 nodes follows from those figures.
func apiLoad(ctx context.Context, e *env) ([]Row, error) {
	const name = "api-load"
	fx, err := loadFixture(e.cfg.Fixtures)
	if err != nil {
		return nil, err
	}
	nomad, err := fakenomad.New(fakenomad.Options{NodeID: fx.template.NodeID, Node: fx.node, AgentSelf: fx.self},
		fx.allocations(apiLoadAllocs, api.AllocClientStatusRunning)...)
	if err != nil {
		return nil, err
	}
	defer nomad.Close()
	r, err := listen(2 * apiLoadAllocs)
	if err != nil {
		return nil, err
	}
	l := &live{recv: r}
	defer l.close()
	if l.fleet, err = newFleet(e.dir, apiLoadAllocs, fx.task); err != nil {
		return nil, err
	}
	if err := l.fleet.flushAll(e.perFlush()); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(l.fleet.allocDir, 0o755); err != nil {
		return nil, err
	}
	// A window too short for 20 intervals of 3s (a quick run) uses a
	// shorter interval, down to the 1s the watcher holds to.
	window := e.cfg.APILoad
	interval := min(apiLoadInterval, max(time.Second, window/20))
	d, err := startChild(e.cfg.Forwarder, e.forwarderArgs(name, r.url(), "run", "--nomad-addr", nomad.URL(),
		"--alloc-dir", l.fleet.allocDir, "--checkpoint", filepath.Join(e.dir, "checkpoint.msgpack"),
		"--reconcile-interval", interval.String())...)
	if err != nil {
		return nil, err
	}
	l.daemon = d
	e.progress("forwarder running, pid %d, following the fake API with %d allocations", d.pid(), apiLoadAllocs)
	if err := r.waitCount(ctx, l.fleet.written.Load(), time.Minute); err != nil {
		return nil, fmt.Errorf("first lines of every stream: %w; the forwarder's log ends with:\n%s", err, d.output.tail(2000))
	}
	err = waitUntil(ctx, time.Minute, func() bool { return nomad.Waiting() == 1 },
		func() string { return fmt.Sprintf("%d blocking queries parked", nomad.Waiting()) })
	if err != nil {
		return nil, err
	}

	e.progress("steady state: measuring for %s at --reconcile-interval %s", window, interval)
	kinds := []fakenomad.Kind{fakenomad.Allocations, fakenomad.NodeInfo, fakenomad.AgentSelf, fakenomad.Other}
	before := map[fakenomad.Kind]int{}
	for _, k := range kinds {
		before[k] = nomad.Requests(k)
	}
	servedBefore, queriesBefore := nomad.Served(fakenomad.Allocations), len(nomad.Queries())
	start := time.Now()
	if err := sleep(ctx, window); err != nil {
		return nil, err
	}
	elapsed := time.Since(start)
	served := nomad.Served(fakenomad.Allocations)
	requests := 0
	for _, k := range kinds {
		requests += nomad.Requests(k) - before[k]
	}
	listings := served.Requests - servedBefore.Requests
	body, wire := served.Body-servedBefore.Body, served.Wire-servedBefore.Wire
	stale := 0
	queries := nomad.Queries()
	for _, q := range queries[min(queriesBefore, len(queries)):] {
		if q.Stale {
			stale++
		}
	}
	if _, err := l.stopDaemon(); err != nil {
		return nil, err
	}
	if listings == 0 {
		return nil, fmt.Errorf("no listing in %s", elapsed)
	}

	// Per node and hour at the default interval.
	scale := float64(time.Hour) / float64(elapsed) * float64(interval) / float64(apiLoadDefault)
	perHour := float64(requests) * scale
	bodyPerHour, wirePerHour := float64(body)*scale, float64(wire)*scale
	perReconcile := float64(listings) / (float64(elapsed) / float64(interval))
	fleetRate := func(perNodeHour float64) float64 { return perNodeHour * apiLoadFleet / 3600 }
	mibs := func(bytesPerNodeHour float64) string {
		return fmt.Sprintf("%.2f MiB/s", fleetRate(bytesPerNodeHour)/(1<<20))
	}
	label := fmt.Sprintf("%d allocations, steady state, --reconcile-interval %s (run at %s for %s, scaled)",
		apiLoadAllocs, apiLoadDefault, interval, elapsed.Round(time.Second))
	return []Row{
		targetRow(name, label+": requests per node per hour", fmt.Sprintf("≤ %.0f (%.1f per interval)", 3600/apiLoadDefault.Seconds()*apiLoadMaxPerReconcile, apiLoadMaxPerReconcile),
			fmt.Sprintf("%.0f (%.2f listings per interval)", perHour, perReconcile), perReconcile <= apiLoadMaxPerReconcile && requests == listings),
		infoRow(name, "one listing of 50 allocations: JSON / gzipped", fmt.Sprintf("%s / %s", fmtKiB(float64(body)/float64(listings)), fmtKiB(float64(wire)/float64(listings)))),
		infoRow(name, "bytes per node per hour: JSON (≈ what a server encodes) / gzipped (what the agent sends)",
			fmt.Sprintf("%.1f MiB / %.2f MiB", bodyPerHour/(1<<20), wirePerHour/(1<<20))),
		targetRow(name, "listings that allow stale reads (any server may answer)", "all", fmt.Sprintf("%d of %d", stale, len(queries)-min(queriesBefore, len(queries))), stale == len(queries)-min(queriesBefore, len(queries))),
		infoRow(name, fmt.Sprintf("servers' load at %d nodes: requests/s", apiLoadFleet), fmt.Sprintf("%.1f /s", fleetRate(perHour))),
		infoRow(name, fmt.Sprintf("servers' load at %d nodes: JSON / gzipped", apiLoadFleet), mibs(bodyPerHour)+" / "+mibs(wirePerHour)),
	}, nil
}

func fmtKiB(bytes float64) string { return fmt.Sprintf("%.1f KiB", bytes/(1<<10)) }
