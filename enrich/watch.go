package enrich

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"slices"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/nomad/api"
	"go.uber.org/zap"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/backoff"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/safefs"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/taskstream"
)

// WatcherConfig sets up a Watcher.
type WatcherConfig struct {
	Client *Client
	// NodeID is this node (--node-id); empty means asking the agent
	// (GET /v1/agent/self, stats.client.node_id, needs agent:read).
	NodeID string
	// Root is the alloc dir. A terminal allocation is tailed only while
	// its folder exists, so that allocations collected long ago do not
	// come back as targets.
	Root    *safefs.Root
	Options Options
	// Region is the API client's region (NOMAD_REGION, ClientInfo.Region),
	// rendered as nomad.region when the agent's own is not known: it is
	// asked for (GET /v1/agent/self) only without NodeID.
	Region string
	// ReconcileInterval is the longest a listing may be old (default
	// 30s): a removal wakes no blocking query, so each one waits at most
	// this long, less or more by up to 20% drawn anew each time, and its
	// answer, whether woken or timed out, is a full listing.
	ReconcileInterval time.Duration
	// MaxWait caps one blocking query (default 5m, Nomad's own cap).
	MaxWait time.Duration
	// RequestGrace is how long a request may take beyond its wait before
	// it counts as timed out (default 30s).
	RequestGrace time.Duration
	// MinBackoff and MaxBackoff bound the wait after a failed request
	// (defaults 500ms and 30s); it doubles with each failure in a row.
	MinBackoff, MaxBackoff time.Duration
	// MinInterval spaces the starts of two requests (default 100ms), so
	// that a burst of changes is fetched in a few lists, not one per change.
	MinInterval time.Duration
	Log         *zap.Logger
	Metrics     *Metrics
}

func (c *WatcherConfig) setDefaults() {
	if c.ReconcileInterval <= 0 {
		c.ReconcileInterval = 30 * time.Second
	}
	if c.MaxWait <= 0 {
		c.MaxWait = 5 * time.Minute
	}
	if c.RequestGrace <= 0 {
		c.RequestGrace = 30 * time.Second
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = 500 * time.Millisecond
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = max(30*time.Second, c.MinBackoff)
	}
	if c.MinInterval <= 0 {
		c.MinInterval = 100 * time.Millisecond
	}
	if c.Log == nil {
		c.Log = zap.NewNop()
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(nil)
	}
}

// minBlockingWait is the shortest wait of a blocking query. The api
// package sends waits in whole milliseconds and Nomad reads "0ms" as its
// default of 300s; and a reconcile due in a moment must not turn the
// blocking query into a stream of plain lists. So the reconcile may come
// up to this much late (a --reconcile-interval under 1s acts as about 1s).
const minBlockingWait = time.Second

// reconcileJitter is how far each reconcile interval is drawn from
// ReconcileInterval, either way: a fleet restarted at once (an agent
// upgrade, a job update) does not keep relisting in step.
const reconcileJitter = 0.2

// jittered draws an interval within reconcileJitter of d.
func jittered(d time.Duration) time.Duration {
	return d + time.Duration((rand.Float64()*2-1)*reconcileJitter*float64(d))
}

// Watcher follows the allocations of this node through the Nomad HTTP API
// and sends the targets they make. Run owns all of its state; LastSync is
// safe to call from any goroutine.
type Watcher struct {
	cfg      WatcherConfig
	lastSync atomic.Int64 // unix nanoseconds; 0 = never

	// Owned by the goroutine in Run (or Snapshot).
	node     Node
	haveNode bool
	refused  map[string]bool
	// logsDisabled holds the tasks of listed allocations whose logs are
	// disabled, warned about once each.
	logsDisabled  map[taskstream.ID]bool
	failures      int
	retry         backoff.Backoff // doubles from MinBackoff to MaxBackoff over failures in a row
	noIndexLogged bool
	noLeader      bool // the last listing came from a server that knew no leader
	// notBefore is the earliest start of the next request.
	notBefore time.Time
	// problems logs each task's unusable meta values once.
	problems problemLog
}

// NewWatcher makes a Watcher.
func NewWatcher(cfg WatcherConfig) *Watcher {
	cfg.setDefaults()
	return &Watcher{cfg: cfg, refused: make(map[string]bool), logsDisabled: make(map[taskstream.ID]bool), retry: backoff.Backoff{Min: cfg.MinBackoff, Max: cfg.MaxBackoff}}
}

// LastSync is when the allocations were last listed successfully (the
// zero time before the first listing).
func (w *Watcher) LastSync() time.Time {
	ns := w.lastSync.Load()
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// Run sends a snapshot of every wanted target on out after each
// successful listing, until ctx ends. It lists without blocking at the
// start, after every API error and whenever the index went backwards;
// otherwise it waits on a blocking query for at most one (jittered)
// reconcile interval, and takes its answer, woken by a change or timed
// out, as the full listing it is: in steady state a node makes one
// request per interval. It backs off after errors. While the API fails
// it sends nothing, so that streams already running keep running.
func (w *Watcher) Run(ctx context.Context, out chan<- []Desired) {
	var index uint64
	for ctx.Err() == nil {
		if !w.pace(ctx) || w.ensureNode(ctx) != nil {
			continue
		}
		start := time.Now()
		q := &api.QueryOptions{AllowStale: true}
		blocking := index > 0
		if blocking {
			q.WaitIndex = index
			q.WaitTime = min(w.cfg.MaxWait, max(jittered(w.cfg.ReconcileInterval), minBlockingWait))
		}
		targets, got, err := w.list(ctx, q)
		if err != nil {
			// Logged, counted, backed off. After an outage (often a
			// leader election) the index held may mean nothing: list
			// without blocking first.
			index = 0
			continue
		}
		switch {
		case blocking && got < index:
			// Server GC, a leader with an older state or a restore: the
			// body is current, but the index is not one to wait on.
			w.cfg.Log.Debug("Nomad's allocation index went backwards; listing again",
				zap.Uint64("sent_index", index), zap.Uint64("index", got))
			index = 0
		case blocking && got == index && time.Since(start) < q.WaitTime/2:
			// Nomad answers a blocking query early only with a higher
			// index; something between us does not block. Do not spin.
			w.notBefore = time.Now().Add(w.cfg.MinBackoff)
			index = got
		default:
			index = got
		}
		select {
		case out <- targets:
		case <-ctx.Done():
			return
		}
	}
}

// Snapshot lists the allocations once, without blocking, trying up to
// attempts times with backoff, and returns the targets (for --once). A
// refusal (401, 403) or another 4xx ends it at once: retrying cannot help.
func (w *Watcher) Snapshot(ctx context.Context, attempts int) ([]Desired, error) {
	var lastErr error
	for range max(attempts, 1) {
		if !w.pace(ctx) {
			break
		}
		err := w.ensureNode(ctx)
		var targets []Desired
		if err == nil {
			targets, _, err = w.list(ctx, &api.QueryOptions{AllowStale: true})
		}
		if err == nil {
			return targets, nil
		}
		lastErr = err
		if kind, _ := classify(err); kind == ErrKindDenied || kind == ErrKindStatus {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("listing this node's allocations failed %d times: %w", max(attempts, 1), lastErr)
}

// pace waits until the next request may start; false means ctx ended.
func (w *Watcher) pace(ctx context.Context) bool {
	return backoff.Sleep(ctx, time.Until(w.notBefore))
}

// ensureNode learns this node's ID (unless given) and its name and
// datacenter, once. An error is logged, counted and backed off already.
func (w *Watcher) ensureNode(ctx context.Context) error {
	if w.haveNode {
		return nil
	}
	w.notBefore = time.Now().Add(w.cfg.MinInterval)
	id, region := w.cfg.NodeID, w.cfg.Region
	if id == "" {
		var self api.AgentSelf
		reqCtx, cancel := context.WithTimeout(ctx, w.cfg.RequestGrace)
		_, err := w.cfg.Client.API().Raw().Query("/v1/agent/self", &self, (&api.QueryOptions{}).WithContext(reqCtx))
		cancel()
		if err != nil {
			w.failed(ctx, "GET /v1/agent/self (to learn this node's ID; --node-id avoids it)", err)
			return fmt.Errorf("ask the agent for this node's ID: %w", err)
		}
		id = self.Stats["client"]["node_id"]
		if r, ok := self.Config["Region"].(string); ok && r != "" {
			region = r
		}
		if id == "" {
			err := errors.New("the agent reports no stats.client.node_id: it runs no client; " +
				"point NOMAD_ADDR at this node's client agent, or set --node-id")
			w.failed(ctx, "GET /v1/agent/self", err)
			return err
		}
	}
	if err := ValidNodeID(id); err != nil {
		w.failed(ctx, "resolve this node", err)
		return err
	}
	reqCtx, cancel := context.WithTimeout(ctx, w.cfg.RequestGrace)
	// Stale: any server may answer; a node's name and datacenter hardly
	// ever change.
	n, _, err := w.cfg.Client.API().Nodes().Info(id, (&api.QueryOptions{AllowStale: true}).WithContext(reqCtx))
	cancel()
	if err != nil {
		w.failed(ctx, "GET /v1/node/"+id, err)
		return fmt.Errorf("look up node %s: %w", id, err)
	}
	w.node = Node{ID: id, Name: n.Name, Datacenter: n.Datacenter, Region: region, Pool: n.NodePool, Class: n.NodeClass, Meta: n.Meta}
	w.haveNode = true
	w.cfg.Log.Info("watching this node's allocations",
		zap.String("node_id", id), zap.String("node_name", n.Name), zap.String("datacenter", n.Datacenter),
		zap.String("region", region), zap.String("node_pool", n.NodePool), zap.String("node_class", n.NodeClass),
		zap.Duration("reconcile_interval", w.cfg.ReconcileInterval))
	for _, k := range w.cfg.Options.NodeMetaKeys {
		if _, ok := n.Meta[k]; !ok {
			w.cfg.Log.Warn("this node has no such meta key; lines carry no nomad.node_meta."+k, zap.String("node_meta_key", k))
		}
	}
	return nil
}

// ValidNodeID accepts what Nomad node IDs look like (UUIDs): the ID goes
// into request paths, so nothing that could change the path or query.
func ValidNodeID(id string) error {
	if id == "" || len(id) > 128 {
		return fmt.Errorf("node ID %q: want a UUID", id)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-') {
			return fmt.Errorf("node ID %q: want a UUID (letters, digits and '-')", id)
		}
	}
	return nil
}

// list fetches the node's allocations and turns them into targets as
// they are decoded. On error it logs, counts and sets the backoff; on
// success it records the sync.
func (w *Watcher) list(ctx context.Context, q *api.QueryOptions) ([]Desired, uint64, error) {
	w.notBefore = time.Now().Add(w.cfg.MinInterval)
	timeout := w.cfg.RequestGrace
	if q.WaitTime > 0 {
		// Nomad adds up to wait/16 of jitter.
		timeout += q.WaitTime + q.WaitTime/16
	}
	reqCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	l := w.newListing()
	meta, err := w.cfg.Client.Allocations(w.node.ID, q.WithContext(reqCtx), l.add)
	if err != nil {
		w.failed(ctx, describeList(w.node.ID, q), err)
		return nil, 0, err
	}
	if w.failures > 0 {
		w.cfg.Log.Info("Nomad API answers again", zap.Int("failed_requests", w.failures))
		w.failures = 0
		w.retry.Reset()
	}
	if meta.LastIndex == 0 {
		// Not what Nomad does (its index starts at 1); a proxy may have
		// dropped the header. The list is good, but there is no index
		// to block on: poll instead.
		if !w.noIndexLogged {
			w.noIndexLogged = true
			w.cfg.Log.Warn("the allocations response carries no X-Nomad-Index header, so blocking queries cannot work; polling every second instead",
				zap.String("request", describeList(w.node.ID, q)))
		}
		w.notBefore = time.Now().Add(minBlockingWait)
	} else {
		w.checkLeader(meta)
	}
	now := time.Now()
	w.lastSync.Store(now.UnixNano())
	w.cfg.Metrics.LastSync.Set(float64(now.UnixNano()) / 1e9)
	w.cfg.Metrics.Allocations.Set(float64(l.count))
	w.cfg.Metrics.LastContact.Set(meta.LastContact.Seconds())
	return l.finish(), meta.LastIndex, nil
}

// checkLeader logs when listings start and stop coming from a server
// that knows no leader: with AllowStale such a server still answers, from
// a state that stops moving on until a leader is elected.
func (w *Watcher) checkLeader(meta *api.QueryMeta) {
	switch {
	case !meta.KnownLeader && !w.noLeader:
		w.noLeader = true
		w.cfg.Log.Warn("the Nomad server that answered knows no leader: listings may be stale until one is elected (changes are seen late, nothing already tailed stops)",
			zap.Duration("last_contact", meta.LastContact))
	case meta.KnownLeader && w.noLeader:
		w.noLeader = false
		w.cfg.Log.Info("the Nomad servers have a leader again")
	}
}

func describeList(nodeID string, q *api.QueryOptions) string {
	s := "GET /v1/node/" + nodeID + "/allocations"
	if q.WaitIndex > 0 {
		s += "?index=" + strconv.FormatUint(q.WaitIndex, 10) + "&wait=" + q.WaitTime.Round(time.Millisecond).String()
	}
	return s
}

// failed logs and counts a failed request and sets the backoff. Errors
// caused by ctx ending are not failures.
func (w *Watcher) failed(ctx context.Context, request string, err error) {
	if ctx.Err() != nil {
		return
	}
	w.failures++
	kind, status := classify(err)
	w.cfg.Metrics.APIErrors.WithLabelValues(kind).Inc()
	backoff := w.retry.Next()
	w.notBefore = time.Now().Add(backoff)
	fields := []zap.Field{
		zap.String("request", request), zap.String("kind", kind),
		zap.String("error", truncate(err.Error(), 512)),
		zap.Int("failures_in_a_row", w.failures), zap.Duration("retry_in", backoff.Round(time.Millisecond)),
	}
	if status != 0 {
		fields = append(fields, zap.Int("status", status))
	}
	msg := "Nomad API request failed; streams already known keep running"
	if kind == ErrKindDenied {
		msg += " (the token needs node:read and read-job; agent:read without --node-id)"
	}
	w.cfg.Log.Warn(msg, fields...)
}

// classify sorts an API error into a metric kind, with the HTTP status
// when there was one.
func classify(err error) (kind string, status int) {
	var ure api.UnexpectedResponseError
	if errors.As(err, &ure) && ure.HasStatusCode() {
		status = ure.StatusCode()
		switch {
		case status == 401 || status == 403:
			return ErrKindDenied, status
		case status >= 500:
			return ErrKindServer, status
		default:
			return ErrKindStatus, status
		}
	}
	if errors.Is(err, ErrRedirectRefused) {
		// A 3xx the client may not follow: as unexpected as a 404, and
		// retrying will not change it.
		return ErrKindStatus, 0
	}
	var netErr net.Error
	var syntaxErr *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	var urlErr *url.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr) && netErr.Timeout():
		return ErrKindTimeout, 0
	case errors.Is(err, ErrResponseTooLarge), errors.Is(err, ErrAllocationTooLarge), errors.As(err, &syntaxErr), errors.As(err, &typeErr),
		errors.Is(err, io.ErrUnexpectedEOF) && !errors.As(err, &urlErr):
		return ErrKindInvalid, 0
	case errors.As(err, &urlErr), errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return ErrKindUnreachable, 0
	}
	return ErrKindInvalid, 0
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// listing turns the allocations of one listing into targets as they are
// decoded, so that no allocation outlives its turn.
type listing struct {
	w      *Watcher
	count  int
	listed map[string]bool
	groups []allocTargets
}

// allocTargets are one allocation's targets, with the index Nomad's own
// client sorts a listing by.
type allocTargets struct {
	createIndex uint64
	targets     []Desired
}

func (w *Watcher) newListing() *listing {
	return &listing{w: w, listed: make(map[string]bool)}
}

func (l *listing) add(a *api.Allocation) error {
	l.count++
	w := l.w
	l.listed[a.ID] = true
	targets, err := FromAllocation(a, w.node, w.cfg.Options)
	if err != nil && !w.refused[a.ID] {
		w.refused[a.ID] = true
		w.cfg.Metrics.Refused.Inc()
		w.cfg.Log.Warn("refusing an allocation (or some of its tasks): its ID is not a UUID, or a name would lead out of the alloc dir",
			zap.String("namespace", a.Namespace), zap.String("job_id", a.JobID), zap.Error(err))
	}
	if len(targets) == 0 {
		return nil
	}
	if IsTerminal(a.ClientStatus) && !w.cfg.Root.Exists(a.ID) {
		// Collected already, or never placed here: nothing to read.
		return nil
	}
	w.warnLogsDisabled(a, targets)
	w.problems.note(w.cfg.Log, targets)
	l.groups = append(l.groups, allocTargets{createIndex: a.CreateIndex, targets: targets})
	return nil
}

// finish returns the targets, in the order of the allocations' creation,
// and forgets the refusals of allocations no longer listed.
func (l *listing) finish() []Desired {
	slices.SortStableFunc(l.groups, func(a, b allocTargets) int { return cmp.Compare(a.createIndex, b.createIndex) })
	var out []Desired
	for _, g := range l.groups {
		out = append(out, g.targets...)
	}
	for id := range l.w.refused {
		if !l.listed[id] {
			delete(l.w.refused, id)
		}
	}
	l.w.problems.forget(l.listed)
	for k := range l.w.logsDisabled {
		if !l.listed[k.AllocID] {
			delete(l.w.logsDisabled, k)
		}
	}
	return out
}

// warnLogsDisabled logs once per task of a whose logs block says disabled:
// Nomad writes no files for it, so none of its lines can ever be forwarded.
func (w *Watcher) warnLogsDisabled(a *api.Allocation, targets []Desired) {
	for _, d := range targets {
		if d.Task == nil || !d.Task.LogConfig.Disabled {
			continue
		}
		k := taskstream.EventsOf(a.ID, d.Target.Task)
		if w.logsDisabled[k] {
			continue
		}
		w.logsDisabled[k] = true
		w.cfg.Log.Warn("this task's logs are disabled (logs { disabled = true }): Nomad keeps no log files for it, so none of its lines can be forwarded",
			zap.String("namespace", a.Namespace), zap.String("job_id", a.JobID), zap.String("alloc_id", a.ID),
			zap.String("task", d.Target.Task))
	}
}
