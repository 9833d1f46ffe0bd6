package enrich

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
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
	Client *api.Client
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
	// ReconcileInterval is how often the list is fetched without blocking
	// (default 30s): a removal wakes no blocking query, a reconcile sees it.
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
	// notBefore is the earliest start of the next request.
	notBefore time.Time
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
// successful listing, until ctx ends. It waits on blocking queries, lists
// without blocking every ReconcileInterval and whenever the index went
// backwards, and backs off after errors. While the API fails it sends
// nothing, so that streams already running keep running.
func (w *Watcher) Run(ctx context.Context, out chan<- []Desired) {
	var index uint64
	nextReconcile := time.Now()
	for ctx.Err() == nil {
		if !w.pace(ctx) || w.ensureNode(ctx) != nil {
			continue
		}
		now := time.Now()
		q := &api.QueryOptions{}
		blocking := index > 0 && now.Before(nextReconcile)
		if blocking {
			q.WaitIndex = index
			q.WaitTime = min(w.cfg.MaxWait, max(nextReconcile.Sub(now), minBlockingWait))
		}
		allocs, got, err := w.list(ctx, q)
		if err != nil {
			// Logged, counted, backed off. After an outage (often a
			// leader election) the index held may mean nothing: list
			// without blocking first.
			index = 0
			continue
		}
		if !blocking {
			nextReconcile = now.Add(w.cfg.ReconcileInterval)
		}
		switch {
		case blocking && got < index:
			// Server GC, a leader with an older state or a restore: the
			// body is current, but the index is not one to wait on.
			w.cfg.Log.Debug("Nomad's allocation index went backwards; listing again",
				zap.Uint64("sent_index", index), zap.Uint64("index", got))
			index = 0
		case blocking && got == index && time.Since(now) < q.WaitTime/2:
			// Nomad answers a blocking query early only with a higher
			// index; something between us does not block. Do not spin.
			w.notBefore = time.Now().Add(w.cfg.MinBackoff)
			index = got
		default:
			index = got
		}
		select {
		case out <- w.desired(allocs):
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
		var allocs []*api.Allocation
		if err == nil {
			allocs, _, err = w.list(ctx, &api.QueryOptions{})
		}
		if err == nil {
			return w.desired(allocs), nil
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
		_, err := w.cfg.Client.Raw().Query("/v1/agent/self", &self, (&api.QueryOptions{}).WithContext(reqCtx))
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
	n, _, err := w.cfg.Client.Nodes().Info(id, (&api.QueryOptions{}).WithContext(reqCtx))
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

// list fetches the node's allocations. On error it logs, counts and sets
// the backoff; on success it records the sync.
func (w *Watcher) list(ctx context.Context, q *api.QueryOptions) ([]*api.Allocation, uint64, error) {
	w.notBefore = time.Now().Add(w.cfg.MinInterval)
	timeout := w.cfg.RequestGrace
	if q.WaitTime > 0 {
		// Nomad adds up to wait/16 of jitter.
		timeout += q.WaitTime + q.WaitTime/16
	}
	reqCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	allocs, meta, err := w.cfg.Client.Nodes().Allocations(w.node.ID, q.WithContext(reqCtx))
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
	}
	now := time.Now()
	w.lastSync.Store(now.UnixNano())
	w.cfg.Metrics.LastSync.Set(float64(now.UnixNano()) / 1e9)
	w.cfg.Metrics.Allocations.Set(float64(len(allocs)))
	return allocs, meta.LastIndex, nil
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
	var netErr net.Error
	var syntaxErr *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	var urlErr *url.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr) && netErr.Timeout():
		return ErrKindTimeout, 0
	case errors.Is(err, ErrResponseTooLarge), errors.As(err, &syntaxErr), errors.As(err, &typeErr),
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

// desired turns a listing into the targets to tail.
func (w *Watcher) desired(allocs []*api.Allocation) []Desired {
	listed := make(map[string]bool, len(allocs))
	var out []Desired
	for _, a := range allocs {
		if a == nil {
			continue
		}
		listed[a.ID] = true
		targets, err := FromAllocation(a, w.node, w.cfg.Options)
		if err != nil && !w.refused[a.ID] {
			w.refused[a.ID] = true
			w.cfg.Metrics.Refused.Inc()
			w.cfg.Log.Warn("refusing an allocation (or some of its tasks) whose names would lead out of the alloc dir",
				zap.String("namespace", a.Namespace), zap.String("job_id", a.JobID), zap.Error(err))
		}
		if len(targets) == 0 {
			continue
		}
		if IsTerminal(a.ClientStatus) && !w.cfg.Root.Exists(a.ID) {
			// Collected already, or never placed here: nothing to read.
			continue
		}
		w.warnLogsDisabled(a, targets)
		out = append(out, targets...)
	}
	for id := range w.refused {
		if !listed[id] {
			delete(w.refused, id)
		}
	}
	for k := range w.logsDisabled {
		if !listed[k.AllocID] {
			delete(w.logsDisabled, k)
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
