// Package fakenomad imitates the part of a Nomad agent's HTTP API that the
// forwarder uses, for tests, the fault suite and the benchmarks:
// GET /v1/agent/self, GET /v1/node/<id> and GET /v1/node/<id>/allocations,
// served from allocations a test adds, changes and removes while the
// forwarder watches.
//
// Blocking queries behave as a real Nomad 2.0.5 agent was observed to
// behave (testdata/nomad-2.0.5-extra/blocking-*.headers.json):
//   - X-Nomad-Index is the highest ModifyIndex of the node's allocations,
//     or the allocation table's index when the node has none;
//   - ?index=N&wait=D blocks until that index is above N or D has passed,
//     then answers with the current list, whatever its index;
//   - a change (Put, Update) wakes waiters; a removal does not, unless it
//     leaves the node empty (the table index is then above theirs);
//   - wait needs a unit ("wait=5" answers 400 Invalid wait time), and is
//     capped at 300s like Nomad's; an unknown node ID answers 200 [];
//   - bodies are chunked, and gzipped when the request accepts gzip;
//   - every answer carries X-Nomad-Index, X-Nomad-KnownLeader and
//     X-Nomad-LastContact. After LoseLeader (an election under way, a
//     partition), a request without `stale` answers 500 No cluster leader,
//     as Nomad's do, while a stale one is answered (by a follower) with
//     X-Nomad-KnownLeader false and the time since the leader was lost as
//     X-Nomad-LastContact, until ElectLeader.
//
// A test can also make the API misbehave for a while (SetFault): status
// 500 or 403, a body that is not JSON, a truncated body, a closed
// connection, a request that hangs, an endless string, a huge listing or
// a huge error body.
//
// Responses are encoded (and gzipped) once per change, so serving
// hundreds of allocations to many requests stays cheap; the bytes served
// are counted (Served). A Server is safe for concurrent use.
package fakenomad

import (
	"bytes"
	"compress/gzip"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/nomad/api"
)

// Fault is a way for the API to misbehave.
type Fault int

const (
	// NoFault answers normally.
	NoFault Fault = iota
	// Status500 answers 500 with a text body, as a server without a leader does.
	Status500
	// Status403 answers 403 "Permission denied", as for a token lacking rights.
	Status403
	// Garbage answers 200 with Nomad's headers and a body that is not JSON.
	Garbage
	// Truncated answers 200 and closes the connection halfway through the body.
	Truncated
	// CloseConnection closes the connection without answering.
	CloseConnection
	// Hang holds the request until the fault changes, the client gives
	// up or the server closes.
	Hang
	// Huge answers 200 with a JSON array whose first string never ends
	// before Options.HugeBytes bytes.
	Huge
	// HugeList answers 200 with a valid listing of Options.HugeBytes or a
	// little more: copies of the first allocation served, under new IDs
	// (a node with far more allocations than any real one).
	HugeList
	// HugeError answers 500 with a text body of Options.HugeErrorBytes.
	HugeError
)

func (f Fault) String() string {
	switch f {
	case NoFault:
		return "none"
	case Status500:
		return "500"
	case Status403:
		return "403"
	case Garbage:
		return "garbage"
	case Truncated:
		return "truncated"
	case CloseConnection:
		return "close"
	case Hang:
		return "hang"
	case Huge:
		return "huge"
	case HugeList:
		return "huge-list"
	case HugeError:
		return "huge-error"
	}
	return "fault(" + strconv.Itoa(int(f)) + ")"
}

// Kind names a class of request, for Requests.
type Kind int

const (
	// Allocations is every GET /v1/node/<id>/allocations.
	Allocations Kind = iota
	// Blocking is the subset of Allocations that carried ?index > 0.
	Blocking
	// NodeInfo is GET /v1/node/<id>.
	NodeInfo
	// AgentSelf is GET /v1/agent/self.
	AgentSelf
	// Other is any other path (answered 404).
	Other
	numKinds
)

// Query is what one allocations request asked for.
type Query struct {
	NodeID string
	Index  uint64
	// Wait is the raw wait parameter ("" when absent).
	Wait string
	// Token is the X-Nomad-Token header, or the bearer token.
	Token string
	// Stale is whether the request allowed a stale read (?stale).
	Stale bool
	At    time.Time
}

// maxQueries bounds the query log so that long benchmarks stay flat.
const maxQueries = 4096

// Options configure a Server. Zero values give a loopback TCP server for
// node "00000000-0000-0000-0000-000000000001", with no token required.
type Options struct {
	// NodeID is the node whose allocations are served; it also replaces
	// the IDs found in Node and AgentSelf.
	NodeID string
	// Node is the body of GET /v1/node/<NodeID> (a fixture's node.json).
	// Nil gives a minimal node named "fake" in datacenter "dc1".
	Node json.RawMessage
	// AgentSelf is the body of GET /v1/agent/self (a fixture's
	// agent-self.json). Nil gives a minimal client agent.
	AgentSelf json.RawMessage
	// Token, when set, must come as X-Nomad-Token or a bearer token;
	// anything else answers 403 Permission denied.
	Token string
	// UnixSocket, when set, is where the server listens instead of a
	// loopback TCP port (the Task API's api.sock).
	UnixSocket string
	// TLS serves HTTPS with a self-signed certificate (see CACertPEM).
	TLS bool
	// MaxWait caps a blocking query's wait (Nomad: 300s).
	MaxWait time.Duration
	// HugeBytes is the length of the Huge and HugeList faults' bodies
	// (default 64 MiB).
	HugeBytes int64
	// HugeErrorBytes is the length of the HugeError fault's body
	// (default HugeBytes).
	HugeErrorBytes int64
}

// Served is what the server sent, for a class of request.
type Served struct {
	Requests int
	// Body is the bytes of the bodies as encoded (before gzip);
	// Wire is what went on the connection for them (gzipped when asked).
	Body, Wire int64
}

// Server is a fake Nomad agent.
type Server struct {
	srv       *httptest.Server
	opts      Options
	node      []byte
	agentSelf []byte
	closing   chan struct{}
	closeOnce sync.Once

	mu         sync.Mutex
	raftIndex  uint64 // the last index handed out
	tableIndex uint64 // index of the last write to the allocation table
	allocs     map[string]*entry
	body       []byte // cached encoding of the list; nil after a change
	gzBody     []byte // cached gzip of body; nil after a change
	changed    chan struct{}
	fault      Fault
	faultTimer *time.Timer
	counts     [numKinds]int
	served     [numKinds]Served
	queries    []Query
	waiting    int
	leaderLost time.Time // zero while there is a leader
}

type entry struct {
	createIndex uint64
	modifyIndex uint64
	raw         []byte
}

// New starts a Server with allocs already placed (all in one write).
func New(o Options, allocs ...*api.Allocation) (*Server, error) {
	if o.NodeID == "" {
		o.NodeID = "00000000-0000-0000-0000-000000000001"
	}
	if o.MaxWait <= 0 {
		o.MaxWait = 300 * time.Second
	}
	if o.HugeBytes <= 0 {
		o.HugeBytes = 64 << 20
	}
	if o.HugeErrorBytes <= 0 {
		o.HugeErrorBytes = o.HugeBytes
	}
	s := &Server{
		opts:       o,
		closing:    make(chan struct{}),
		allocs:     make(map[string]*entry),
		changed:    make(chan struct{}),
		raftIndex:  1,
		tableIndex: 1,
	}
	var err error
	if s.node, err = patchJSON(o.Node, `{"Name":"fake","Datacenter":"dc1","Status":"ready"}`, func(m map[string]any) {
		m["ID"] = o.NodeID
	}); err != nil {
		return nil, fmt.Errorf("fakenomad: node: %w", err)
	}
	if s.agentSelf, err = patchJSON(o.AgentSelf, `{"config":{},"member":{},"stats":{"client":{}}}`, func(m map[string]any) {
		stats, _ := m["stats"].(map[string]any)
		if stats == nil {
			stats = map[string]any{}
			m["stats"] = stats
		}
		client, _ := stats["client"].(map[string]any)
		if client == nil {
			client = map[string]any{}
			stats["client"] = client
		}
		client["node_id"] = o.NodeID
	}); err != nil {
		return nil, fmt.Errorf("fakenomad: agent self: %w", err)
	}
	if len(allocs) > 0 {
		if err := s.put(allocs); err != nil {
			return nil, err
		}
	}

	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	// Clients that refuse our certificate or hang up are what tests do.
	s.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	if o.UnixSocket != "" {
		ln, err := net.Listen("unix", o.UnixSocket)
		if err != nil {
			return nil, fmt.Errorf("fakenomad: listen on %s: %w", o.UnixSocket, err)
		}
		s.srv.Listener.Close()
		s.srv.Listener = ln
	}
	if o.TLS {
		s.srv.StartTLS()
	} else {
		s.srv.Start()
	}
	return s, nil
}

func patchJSON(raw json.RawMessage, fallback string, patch func(map[string]any)) ([]byte, error) {
	if raw == nil {
		raw = json.RawMessage(fallback)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	patch(m)
	return json.Marshal(m)
}

// URL is the address to give the client: http(s)://127.0.0.1:PORT, or
// unix://PATH for a unix socket.
func (s *Server) URL() string {
	if s.opts.UnixSocket != "" {
		return "unix://" + s.opts.UnixSocket
	}
	return s.srv.URL
}

// NodeID is the node whose allocations are served.
func (s *Server) NodeID() string { return s.opts.NodeID }

// CACertPEM is the certificate of a TLS server, PEM-encoded, for
// NOMAD_CACERT.
func (s *Server) CACertPEM() []byte {
	c := s.srv.Certificate()
	if c == nil {
		return nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// TLSConfig is the server's TLS configuration (nil without TLS).
func (s *Server) TLSConfig() *tls.Config { return s.srv.TLS }

// Close stops the server, releasing requests that hang or block.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.closing)
		s.mu.Lock()
		if s.faultTimer != nil {
			s.faultTimer.Stop()
		}
		s.mu.Unlock()
		s.srv.CloseClientConnections()
		s.srv.Close()
		if s.opts.UnixSocket != "" {
			os.Remove(s.opts.UnixSocket)
		}
	})
}

// Put places or replaces allocations in one write: each gets the new
// index as its ModifyIndex (and as its CreateIndex when new). Waiters wake.
func (s *Server) Put(allocs ...*api.Allocation) {
	if err := s.put(allocs); err != nil {
		panic(err) // an api.Allocation always encodes
	}
}

func (s *Server) put(allocs []*api.Allocation) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.raftIndex++
	idx := s.raftIndex
	for _, a := range allocs {
		c := *a
		create := idx
		if old, ok := s.allocs[c.ID]; ok {
			create = old.createIndex
		}
		c.CreateIndex, c.ModifyIndex, c.AllocModifyIndex = create, idx, idx
		raw, err := json.Marshal(&c)
		if err != nil {
			return fmt.Errorf("fakenomad: encode allocation %q: %w", c.ID, err)
		}
		s.allocs[c.ID] = &entry{createIndex: create, modifyIndex: idx, raw: raw}
	}
	s.tableIndex = idx
	s.changedLocked()
	return nil
}

// Update changes one allocation in place (as the client reporting a new
// status does) and reports whether it exists.
func (s *Server) Update(id string, change func(a *api.Allocation)) bool {
	a := s.Allocation(id)
	if a == nil {
		return false
	}
	change(a)
	a.ID = id
	s.Put(a)
	return true
}

// SetClientStatus sets an allocation's ClientStatus; a terminal status
// also marks its tasks dead, as Nomad's client does.
func (s *Server) SetClientStatus(id, status string) bool {
	return s.Update(id, func(a *api.Allocation) {
		a.ClientStatus = status
		switch status {
		case api.AllocClientStatusComplete, api.AllocClientStatusFailed, api.AllocClientStatusLost:
			now := time.Now().UTC()
			for _, ts := range a.TaskStates {
				if ts != nil {
					ts.State = "dead"
					ts.FinishedAt = now
					ts.Failed = status == api.AllocClientStatusFailed
				}
			}
		}
	})
}

// Remove deletes allocations from the node's list (server GC, purge).
// Like Nomad it wakes no waiter, unless the node is left with none.
func (s *Server) Remove(ids ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.raftIndex++
	for _, id := range ids {
		delete(s.allocs, id)
	}
	s.tableIndex = s.raftIndex
	s.changedLocked()
}

// SetIndex moves the index back (or forward) to n, as a restored snapshot
// or a new leader with an older state would: every allocation's index is
// clamped to n. Waiters keep waiting (their index is not reached).
func (s *Server) SetIndex(n uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.raftIndex, s.tableIndex = n, n
	for id, e := range s.allocs {
		if e.modifyIndex <= n && e.createIndex <= n {
			continue
		}
		var a api.Allocation
		if err := json.Unmarshal(e.raw, &a); err != nil {
			panic(err)
		}
		a.CreateIndex, a.ModifyIndex, a.AllocModifyIndex = min(a.CreateIndex, n), min(a.ModifyIndex, n), min(a.AllocModifyIndex, n)
		raw, err := json.Marshal(&a)
		if err != nil {
			panic(err)
		}
		s.allocs[id] = &entry{createIndex: a.CreateIndex, modifyIndex: a.ModifyIndex, raw: raw}
	}
	s.changedLocked()
}

// changedLocked drops the cached body and wakes every waiter, which then
// compares the new index with its own.
func (s *Server) changedLocked() {
	s.body, s.gzBody = nil, nil
	close(s.changed)
	s.changed = make(chan struct{})
}

// Allocation returns a copy of an allocation as served, or nil.
func (s *Server) Allocation(id string) *api.Allocation {
	s.mu.Lock()
	e, ok := s.allocs[id]
	s.mu.Unlock()
	if !ok {
		return nil
	}
	var a api.Allocation
	if err := json.Unmarshal(e.raw, &a); err != nil {
		panic(err)
	}
	return &a
}

// IDs lists the allocations served, in CreateIndex order.
func (s *Server) IDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.orderLocked()
}

func (s *Server) orderLocked() []string {
	ids := make([]string, 0, len(s.allocs))
	for id := range s.allocs {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b string) int {
		if c := s.allocs[a].createIndex; c != s.allocs[b].createIndex {
			if c < s.allocs[b].createIndex {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	return ids
}

// Index is what X-Nomad-Index says now.
func (s *Server) Index() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.indexLocked()
}

func (s *Server) indexLocked() uint64 {
	if len(s.allocs) == 0 {
		return s.tableIndex
	}
	var hi uint64
	for _, e := range s.allocs {
		hi = max(hi, e.modifyIndex)
	}
	return hi
}

// SetFault makes every request misbehave until the fault is changed;
// NoFault ends it. Requests parked in a blocking query answer with the
// new fault at once.
func (s *Server) SetFault(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.faultTimer != nil {
		s.faultTimer.Stop()
		s.faultTimer = nil
	}
	s.setFaultLocked(f)
}

// SetFaultFor is SetFault for a while, then NoFault.
func (s *Server) SetFaultFor(f Fault, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.faultTimer != nil {
		s.faultTimer.Stop()
	}
	s.setFaultLocked(f)
	var t *time.Timer
	t = time.AfterFunc(d, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.faultTimer == t {
			s.faultTimer = nil
			s.setFaultLocked(NoFault)
		}
	})
	s.faultTimer = t
}

func (s *Server) setFaultLocked(f Fault) {
	if s.fault == f {
		return
	}
	s.fault = f
	// Wake parked requests so they answer with the fault, or stop
	// hanging; no cached body changes.
	close(s.changed)
	s.changed = make(chan struct{})
}

// Fault is the fault in effect.
func (s *Server) Fault() Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fault
}

// Requests is how many requests of kind k arrived so far.
func (s *Server) Requests(k Kind) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[k]
}

// Served is what was sent for requests of kind k so far (Allocations
// includes Blocking).
func (s *Server) Served(k Kind) Served {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.served[k]
}

// LoseLeader makes the servers lose their leader: consistent reads fail
// with 500 No cluster leader, stale reads are answered with
// X-Nomad-KnownLeader false. Waiters are not woken.
func (s *Server) LoseLeader() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.leaderLost.IsZero() {
		s.leaderLost = time.Now()
	}
}

// ElectLeader ends LoseLeader.
func (s *Server) ElectLeader() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.leaderLost = time.Time{}
}

// Queries lists the latest allocations requests, oldest first.
func (s *Server) Queries() []Query {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.queries)
}

// Waiting is how many blocking queries are parked now.
func (s *Server) Waiting() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.waiting
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	kind, nodeID := route(r)
	s.mu.Lock()
	s.counts[kind]++
	s.mu.Unlock()
	if r.Method != http.MethodGet {
		http.Error(w, "Invalid method", http.StatusMethodNotAllowed)
		return
	}
	token := r.Header.Get("X-Nomad-Token")
	if token == "" {
		token, _ = strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	}
	if kind == Allocations {
		s.logQuery(r, nodeID, token)
	}
	if s.opts.Token != "" && token != s.opts.Token {
		http.Error(w, "Permission denied", http.StatusForbidden)
		return
	}
	if kind != AgentSelf && kind != Other && !stale(r) && s.leaderless() {
		// Only the leader answers a consistent read (Nomad's rpc.go
		// forward); an agent's own self needs no server.
		http.Error(w, "No cluster leader", http.StatusInternalServerError)
		return
	}
	switch kind {
	case Allocations:
		s.serveAllocations(w, r, nodeID)
	case NodeInfo:
		if s.answerFault(w, r) {
			return
		}
		if nodeID != s.opts.NodeID {
			http.Error(w, "node not found", http.StatusNotFound)
			return
		}
		s.write(w, r, kind, s.node, nil, s.Index())
	case AgentSelf:
		if s.answerFault(w, r) {
			return
		}
		s.write(w, r, kind, s.agentSelf, nil, s.Index())
	default:
		http.NotFound(w, r)
	}
}

// stale reports whether r allows a stale read: Nomad looks only at the
// presence of the parameter (the api package sends "stale=").
func stale(r *http.Request) bool {
	_, ok := r.URL.Query()["stale"]
	return ok
}

func (s *Server) leaderless() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.leaderLost.IsZero()
}

func route(r *http.Request) (Kind, string) {
	p := r.URL.Path
	if p == "/v1/agent/self" {
		return AgentSelf, ""
	}
	rest, ok := strings.CutPrefix(p, "/v1/node/")
	if !ok || rest == "" {
		return Other, ""
	}
	if id, ok := strings.CutSuffix(rest, "/allocations"); ok && id != "" && !strings.Contains(id, "/") {
		return Allocations, id
	}
	if !strings.Contains(rest, "/") {
		return NodeInfo, rest
	}
	return Other, ""
}

func (s *Server) logQuery(r *http.Request, nodeID, token string) {
	q := r.URL.Query()
	index, _ := strconv.ParseUint(q.Get("index"), 10, 64)
	s.mu.Lock()
	defer s.mu.Unlock()
	if index > 0 {
		s.counts[Blocking]++
	}
	_, stale := q["stale"]
	s.queries = append(s.queries, Query{NodeID: nodeID, Index: index, Wait: q.Get("wait"), Token: token, Stale: stale, At: time.Now()})
	if len(s.queries) > maxQueries {
		s.queries = append(s.queries[:0], s.queries[len(s.queries)-maxQueries/2:]...)
	}
}

func (s *Server) serveAllocations(w http.ResponseWriter, r *http.Request, nodeID string) {
	q := r.URL.Query()
	var index uint64
	if v := q.Get("index"); v != "" {
		var err error
		if index, err = strconv.ParseUint(v, 10, 64); err != nil {
			http.Error(w, "Invalid index", http.StatusBadRequest)
			return
		}
	}
	wait := s.opts.MaxWait
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			http.Error(w, "Invalid wait time", http.StatusBadRequest)
			return
		}
		if d > 0 && d < wait {
			wait = d
		}
	}
	if index > 0 {
		if !s.block(r, index, wait) {
			return
		}
	}
	if s.answerFault(w, r) {
		return
	}
	s.mu.Lock()
	body, gz := []byte("[]"), []byte(nil)
	idx := s.tableIndex
	if nodeID == s.opts.NodeID {
		body, idx = s.bodyLocked(), s.indexLocked()
		if acceptsGzip(r) {
			gz = s.gzBodyLocked()
		}
	}
	s.mu.Unlock()
	s.write(w, r, Allocations, body, gz, idx)
}

// block parks a blocking query until the index passes index, wait ends or
// a fault is set. False means the client or the server went away.
func (s *Server) block(r *http.Request, index uint64, wait time.Duration) bool {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	s.mu.Lock()
	s.waiting++
	defer func() {
		s.mu.Lock()
		s.waiting--
		s.mu.Unlock()
	}()
	for s.indexLocked() <= index && s.fault == NoFault {
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-timer.C:
			return true
		case <-r.Context().Done():
			return false
		case <-s.closing:
			return false
		}
		s.mu.Lock()
	}
	s.mu.Unlock()
	return true
}

func (s *Server) bodyLocked() []byte {
	if s.body != nil {
		return s.body
	}
	var b bytes.Buffer
	b.WriteByte('[')
	for i, id := range s.orderLocked() {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(s.allocs[id].raw)
	}
	b.WriteByte(']')
	s.body = b.Bytes()
	return s.body
}

func (s *Server) gzBodyLocked() []byte {
	if s.gzBody == nil {
		s.gzBody = gzipped(s.bodyLocked())
	}
	return s.gzBody
}

func gzipped(body []byte) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	_, _ = zw.Write(body)
	_ = zw.Close()
	return b.Bytes()
}

func acceptsGzip(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept-Encoding"), "gzip")
}

// write answers 200 with body, as gz (its gzip, computed here when nil)
// if the client accepts gzip, chunked as Nomad's are, with Nomad's
// headers; it counts what it sent under kind.
func (s *Server) write(w http.ResponseWriter, r *http.Request, kind Kind, body, gz []byte, index uint64) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Vary", "Accept-Encoding")
	h.Set("X-Nomad-Index", strconv.FormatUint(index, 10))
	s.mu.Lock()
	lost := s.leaderLost
	s.mu.Unlock()
	if lost.IsZero() {
		h.Set("X-Nomad-Knownleader", "true")
		h.Set("X-Nomad-Lastcontact", "0")
	} else {
		h.Set("X-Nomad-Knownleader", "false")
		h.Set("X-Nomad-Lastcontact", strconv.FormatInt(time.Since(lost).Milliseconds(), 10))
	}
	wire := body
	if acceptsGzip(r) {
		if gz == nil {
			gz = gzipped(body)
		}
		h.Set("Content-Encoding", "gzip")
		wire = gz
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(wire)
	s.count(r, kind, len(body), len(wire))
}

// count adds a response to what was served.
func (s *Server) count(r *http.Request, kind Kind, body, wire int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	kinds := []Kind{kind}
	if kind == Allocations && r.URL.Query().Get("index") != "" && r.URL.Query().Get("index") != "0" {
		kinds = append(kinds, Blocking)
	}
	for _, k := range kinds {
		s.served[k].Requests++
		s.served[k].Body += int64(body)
		s.served[k].Wire += int64(wire)
	}
}

// answerFault answers r according to the fault in effect, and reports
// whether it did.
func (s *Server) answerFault(w http.ResponseWriter, r *http.Request) bool {
	for {
		s.mu.Lock()
		f, ch := s.fault, s.changed
		s.mu.Unlock()
		switch f {
		case NoFault:
			return false
		case Status500:
			http.Error(w, "No cluster leader", http.StatusInternalServerError)
		case Status403:
			http.Error(w, "Permission denied", http.StatusForbidden)
		case Garbage:
			w.Header().Set("Content-Type", "text/html")
			w.Header().Set("X-Nomad-Index", "7")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte("<html><body>502 Bad Gateway</body></html>\n"))
		case Truncated:
			s.mu.Lock()
			body := s.bodyLocked()
			idx := s.indexLocked()
			s.mu.Unlock()
			w.Header().Set("X-Nomad-Index", strconv.FormatUint(idx, 10))
			w.Header().Set("Content-Length", strconv.Itoa(len(body)+64))
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(body[:len(body)/2])
			if fl, ok := w.(http.Flusher); ok {
				fl.Flush()
			}
			panic(http.ErrAbortHandler) // closes the connection mid-body
		case CloseConnection:
			panic(http.ErrAbortHandler)
		case Hang:
			select {
			case <-ch:
				continue // the fault changed: answer according to the new one
			case <-r.Context().Done():
			case <-s.closing:
			}
		case Huge:
			s.writeHuge(w, r)
		case HugeList:
			s.writeHugeList(w, r)
		case HugeError:
			s.writeHugeError(w, r)
		}
		return true
	}
}

func (s *Server) writeHuge(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Nomad-Index", "9")
	w.WriteHeader(http.StatusOK)
	chunk := bytes.Repeat([]byte("a"), 64<<10)
	if _, err := w.Write([]byte(`[{"ID":"`)); err != nil {
		return
	}
	for left := s.opts.HugeBytes; left > 0; left -= int64(len(chunk)) {
		if r.Context().Err() != nil {
			return
		}
		if _, err := w.Write(chunk[:min(int64(len(chunk)), left)]); err != nil {
			return
		}
	}
	_, _ = w.Write([]byte(`"}]`))
}

// writeHugeList answers a valid listing of at least HugeBytes: copies of
// the first allocation served, each under an ID of its own.
func (s *Server) writeHugeList(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	var tmpl []byte
	if ids := s.orderLocked(); len(ids) > 0 {
		tmpl = s.allocs[ids[0]].raw
	}
	idx := s.indexLocked()
	s.mu.Unlock()
	if tmpl == nil {
		tmpl = []byte(`{"ID":"00000000-0000-4000-8000-000000000000"}`)
	}
	var a map[string]any
	if err := json.Unmarshal(tmpl, &a); err != nil {
		panic(err) // encoded by put
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Nomad-Index", strconv.FormatUint(idx, 10))
	w.WriteHeader(http.StatusOK)
	if _, err := w.Write([]byte("[")); err != nil {
		return
	}
	for i, sent := 0, int64(1); sent < s.opts.HugeBytes; i++ {
		if r.Context().Err() != nil {
			return
		}
		a["ID"] = fmt.Sprintf("ffffffff-0000-4000-8000-%012d", i)
		b, err := json.Marshal(a)
		if err != nil {
			panic(err)
		}
		if i > 0 {
			b = append([]byte{','}, b...)
		}
		if _, err := w.Write(b); err != nil {
			return
		}
		sent += int64(len(b))
	}
	_, _ = w.Write([]byte("]"))
}

// writeHugeError answers 500 with a text body of HugeErrorBytes.
func (s *Server) writeHugeError(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusInternalServerError)
	line := append(bytes.Repeat([]byte("rpc error: no cluster leader. "), 2184), '\n') // ~64 KiB
	for left := s.opts.HugeErrorBytes; left > 0; left -= int64(len(line)) {
		if r.Context().Err() != nil {
			return
		}
		if _, err := w.Write(line[:min(int64(len(line)), left)]); err != nil {
			return
		}
	}
}

// LoadAllocations reads a saved allocations response (a JSON array).
func LoadAllocations(path string) ([]*api.Allocation, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var allocs []*api.Allocation
	if err := json.Unmarshal(data, &allocs); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return allocs, nil
}

// FromFixtures starts a Server that serves a captured fixture folder:
// dir/node.json, dir/agent-self.json and the allocations in dir/allocsFile,
// for the node the agent-self fixture names (unless o.NodeID is set).
func FromFixtures(dir, allocsFile string, o Options) (*Server, error) {
	var err error
	if o.Node == nil {
		if o.Node, err = os.ReadFile(dir + "/node.json"); err != nil {
			return nil, err
		}
	}
	if o.AgentSelf == nil {
		if o.AgentSelf, err = os.ReadFile(dir + "/agent-self.json"); err != nil {
			return nil, err
		}
	}
	if o.NodeID == "" {
		var self api.AgentSelf
		if err := json.Unmarshal(o.AgentSelf, &self); err != nil {
			return nil, fmt.Errorf("%s/agent-self.json: %w", dir, err)
		}
		o.NodeID = self.Stats["client"]["node_id"]
		if o.NodeID == "" {
			return nil, errors.New("fakenomad: agent-self fixture names no node_id")
		}
	}
	allocs, err := LoadAllocations(dir + "/" + allocsFile)
	if err != nil {
		return nil, err
	}
	return New(o, allocs...)
}
