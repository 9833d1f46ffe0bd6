package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/checkpoint"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/enrich"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/forward"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/safefs"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/telemetry"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/tailer"
)

const (
	defaultAllocDir   = "/opt/nomad/data/alloc"
	defaultCheckpoint = "/var/lib/nomad-log-forwarder/checkpoint.msgpack"
	// shutdownBudget is how long SIGTERM may take, inside Nomad's default
	// kill_timeout of 5s.
	shutdownBudget = 4 * time.Second
	// onceAttempts is how often --once tries to list the allocations
	// before it gives up (with backoff: about 15s in all).
	onceAttempts = 6
)

type runFlags struct {
	allocDir           string
	checkpointPath     string
	checkpointInterval time.Duration
	output             string
	readFrom           string
	maxLineBytes       int
	once               bool
	offline            bool
	allocsFile         string
	drainDelay         time.Duration
	reconcileInterval  time.Duration
	nomadAddr          string
	nomadMaxResponse   int64
	nodeID             string
	namespaces         []string
	metaKeys           []string
	nodeMetaKeys       []string
	taskEvents         bool
	maxStreamsPerAlloc int
	logLevel           string
	logFormat          string
	metricsAddr        string
	maxHeldFiles       int64
	maxHeldBytes       int64
	maxWatches         int

	// Per-task handling: the defaults of the log_forwarder_* meta keys.
	handlingValues    enrich.HandlingValues
	handling          enrich.Handling
	multilineMaxLines int
	multilineMaxBytes int
	multilineTimeout  time.Duration

	// HTTP output only.
	batchBytes    int
	flushInterval time.Duration
	inflight      int
	httpHeaders   []string
	headerFile    string
	// header is the parsed --http-header, --http-header-file and
	// NLF_HTTP_HEADERS.
	header      http.Header
	httpTimeout time.Duration
	tls         forward.TLSOptions
	cpuProfile  string
}

const runUsage = `nomad-log-forwarder run follows the stdout and stderr log files of every task of every allocation
on this Nomad client node (found through the Nomad API, or with --offline in
--alloc-dir), wraps each line in a JSON object naming its namespace, job,
group, task and allocation, and sends it to --output. The checkpoint records
what the output confirmed, so that a restart resumes exactly there. It runs
until SIGINT or SIGTERM; with --once, until every stream is read to its end
(exit 3 if the output did not confirm every line by then).

Examples:
  # The system job (deploy/): the Task API, Vector's socket in the allocation
  nomad-log-forwarder run --alloc-dir /nomad-alloc --node-id "$NODE_ID" \
    --checkpoint /var/lib/nomad-log-forwarder/checkpoint.msgpack --output unix:///alloc/vector.sock

  # On a client host, to Vector's http_server source (acknowledged delivery)
  NOMAD_ADDR=http://127.0.0.1:4646 NOMAD_TOKEN=... \
    nomad-log-forwarder run --alloc-dir /opt/nomad/data/alloc --output http://127.0.0.1:8080/

  # Backfill what is on disk once, without the API, to stdout
  nomad-log-forwarder run --offline --once --alloc-dir /opt/nomad/data/alloc --output stdout

Usage: nomad-log-forwarder run [flags]

Flags:
`

func parseRunFlags(args []string, stdout, stderr io.Writer) (*runFlags, error) {
	f := &runFlags{}
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stdout, runUsage, fs.FlagUsages()) }
	fs.StringVar(&f.allocDir, "alloc-dir", defaultAllocDir, "Nomad client's alloc dir (<data_dir>/alloc)")
	fs.StringVar(&f.checkpointPath, "checkpoint", defaultCheckpoint, "checkpoint file (msgpack); keep it outside any alloc dir")
	fs.DurationVar(&f.checkpointInterval, "checkpoint-interval", time.Second, "how often the checkpoint is saved when something changed")
	fs.StringVar(&f.output, "output", "stdout", "where lines go: stdout, tcp://HOST:PORT, unix:///PATH, or http(s)://HOST:PORT/PATH (Vector's http_server source; offsets advance only once it confirms)")
	fs.StringVar(&f.readFrom, "read-from", tailer.ReadFromBeginning, "where a stream with no checkpoint starts: beginning or end")
	fs.IntVar(&f.maxLineBytes, "max-line-bytes", 102400, "longer lines are truncated to this many bytes and flagged \"truncated\": true")
	fs.StringVar(&f.handlingValues.Multiline, "multiline", "off", "join lines into events where a task's meta log_forwarder_multiline does not say: java, python, go, dotnet, regex:<RE2> (a matching line starts an event) or off")
	fs.StringVar(&f.handlingValues.Format, "format", "text", "json (a line that is a JSON object is also sent parsed, under \"json\") or text, where a task's meta log_forwarder_format does not say")
	fs.StringVar(&f.handlingValues.RateLimit, "rate-limit", "off", "lines a second a stream may send (<N>/s, with a burst of one second's worth) or off, where a task's meta log_forwarder_rate_limit does not say; lines over it are dropped, counted in nlf_lines_throttled_total and reported by a record once a second")
	fs.StringVar(&f.handlingValues.Level, "level", "off", "detect (a line's level into \"level\") or off, where a task's meta log_forwarder_level does not say")
	fs.IntVar(&f.multilineMaxLines, "multiline-max-lines", 500, "a multiline event with more lines is sent truncated (\"truncated\": true) and its rest dropped")
	fs.IntVar(&f.multilineMaxBytes, "multiline-max-bytes", 0, "a multiline event with more bytes is sent truncated and its rest dropped (default: --max-line-bytes)")
	fs.DurationVar(&f.multilineTimeout, "multiline-timeout", time.Second, "a multiline event is sent once no line came for this long")
	fs.BoolVar(&f.once, "once", false, "read every stream to its end, emit partial last lines, and exit")
	fs.BoolVar(&f.offline, "offline", false, "never call Nomad: find streams by scanning --alloc-dir")
	fs.StringVar(&f.allocsFile, "allocs-file", "", "with --offline: a saved GET /v1/node/<id>/allocations response for metadata")
	fs.DurationVar(&f.drainDelay, "drain-delay", 10*time.Second, "a stopped allocation's stream is retired after this long with no new bytes")
	fs.DurationVar(&f.reconcileInterval, "reconcile-interval", 30*time.Second, "how often the full list of allocations is fetched (or the alloc dir rescanned)")
	fs.StringVar(&f.nomadAddr, "nomad-addr", "", "Nomad HTTP API address (default: NOMAD_ADDR, or the task API socket)")
	fs.Int64Var(&f.nomadMaxResponse, "nomad-max-response-bytes", enrich.DefaultMaxResponseBytes, "refuse an allocations listing larger than this (decompressed); it is decoded one allocation at a time, so memory does not grow with it")
	fs.StringVar(&f.nodeID, "node-id", "", "this node's ID, rendered as nomad.node_id (default: asked from /v1/agent/self; with --offline, taken from --allocs-file)")
	fs.StringArrayVar(&f.namespaces, "namespace", nil, "tail only this namespace (repeatable; default all)")
	fs.StringArrayVar(&f.metaKeys, "meta", nil, "copy this task/group/job meta key into nomad.meta.KEY (repeatable)")
	fs.StringArrayVar(&f.nodeMetaKeys, "node-meta", nil, "copy this node meta key into nomad.node_meta.KEY (repeatable)")
	fs.IntVar(&f.maxStreamsPerAlloc, "max-streams-per-alloc", enrich.DefaultMaxStreamsPerAlloc, "follow at most this many task streams of one allocation (offline, task names come from file names, which a task can make without end); the rest are logged and counted in nlf_files_refused_total")
	fs.BoolVar(&f.taskEvents, "task-events", true, "send each Nomad task event (Started, Terminated, Restarting, ...) once as a record with stream \"event\"")
	fs.StringVar(&f.metricsAddr, "metrics-addr", "127.0.0.1:9465", "serve Prometheus /metrics and /healthz here (empty: off)")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&f.logFormat, "log-format", "json", "json or console")
	fs.IntVar(&f.batchBytes, "batch-bytes", 1<<20, "HTTP output: largest request body before compression (halved when the receiver answers 413)")
	fs.DurationVar(&f.flushInterval, "flush-interval", 200*time.Millisecond, "HTTP output: longest a line waits for its request to fill")
	fs.IntVar(&f.inflight, "inflight", 2, "HTTP output: requests awaiting their answer at once")
	fs.StringArrayVar(&f.httpHeaders, "http-header", nil, "HTTP output: add header 'Name: value' to every request (repeatable; values are never logged; every local user can read argv: put secrets in --http-header-file or NLF_HTTP_HEADERS)")
	fs.StringVar(&f.headerFile, "http-header-file", "", "HTTP output: a file of 'Name: value' lines (blank lines and # comments skipped) added to every request; the place for secrets")
	fs.DurationVar(&f.httpTimeout, "http-timeout", 60*time.Second, "HTTP output: how long one request may wait for its answer (Vector answers once its sinks confirm)")
	fs.StringVar(&f.tls.CAFile, "tls-ca", "", "HTTPS output: PEM CA bundle to verify the server with (default: the system's)")
	fs.StringVar(&f.tls.CertFile, "tls-cert", "", "HTTPS output: PEM client certificate, for a server that verifies clients")
	fs.StringVar(&f.tls.KeyFile, "tls-key", "", "HTTPS output: PEM key of --tls-cert")
	fs.BoolVar(&f.tls.SkipVerify, "tls-skip-verify", false, "HTTPS output: do not verify the server's certificate (testing only)")
	fs.Int64Var(&f.maxHeldFiles, "max-held-files", tailer.DefaultMaxHeldFiles(), "log files all streams together may hold open (default: half of the open-files limit, at least 1024); "+
		"while the output is slow and tasks rotate fast, held files keep purged logs on disk")
	fs.Int64Var(&f.maxHeldBytes, "max-held-bytes", tailer.DefaultMaxHeldBytes, "bytes of purged log files the streams may keep on disk by holding them open; "+
		"beyond it the oldest are given up (logged and counted in nlf_files_dropped_total)")
	fs.StringVar(&f.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file (for make bench)")
	_ = fs.MarkHidden("cpuprofile")
	fs.IntVar(&f.maxWatches, "max-inotify-watches", 0, "cap the inotify watches (0: the kernel's limit); streams beyond it poll (for make bench)")
	_ = fs.MarkHidden("max-inotify-watches")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	switch {
	case f.readFrom != tailer.ReadFromBeginning && f.readFrom != tailer.ReadFromEnd:
		return nil, fmt.Errorf("--read-from %q: want beginning or end", f.readFrom)
	case f.maxLineBytes <= 0:
		return nil, fmt.Errorf("--max-line-bytes must be positive")
	case f.checkpointInterval <= 0:
		return nil, fmt.Errorf("--checkpoint-interval must be positive")
	case f.reconcileInterval <= 0:
		return nil, fmt.Errorf("--reconcile-interval must be positive")
	case f.drainDelay < 0:
		return nil, fmt.Errorf("--drain-delay must not be negative")
	case f.allocsFile != "" && !f.offline:
		return nil, fmt.Errorf("--allocs-file needs --offline")
	case f.batchBytes <= 0:
		return nil, fmt.Errorf("--batch-bytes must be positive")
	case f.flushInterval <= 0:
		return nil, fmt.Errorf("--flush-interval must be positive")
	case f.inflight <= 0:
		return nil, fmt.Errorf("--inflight must be positive")
	case f.httpTimeout <= 0:
		return nil, fmt.Errorf("--http-timeout must be positive")
	case f.maxStreamsPerAlloc < 2:
		return nil, fmt.Errorf("--max-streams-per-alloc must be at least 2 (a task's two streams)")
	case f.maxHeldFiles <= 0:
		return nil, fmt.Errorf("--max-held-files must be positive")
	case f.maxHeldBytes <= 0:
		return nil, fmt.Errorf("--max-held-bytes must be positive")
	case f.maxWatches < 0:
		return nil, fmt.Errorf("--max-inotify-watches must not be negative")
	case f.multilineMaxLines <= 0:
		return nil, fmt.Errorf("--multiline-max-lines must be positive")
	case f.multilineMaxBytes < 0:
		return nil, fmt.Errorf("--multiline-max-bytes must not be negative")
	case f.multilineTimeout <= 0:
		return nil, fmt.Errorf("--multiline-timeout must be positive")
	}
	if f.multilineMaxBytes == 0 {
		f.multilineMaxBytes = f.maxLineBytes
	}
	if f.nodeID != "" {
		if err := enrich.ValidNodeID(f.nodeID); err != nil {
			return nil, fmt.Errorf("--node-id: %w", err)
		}
	}
	var err error
	if f.handling, err = enrich.ParseHandling(f.handlingValues); err != nil {
		return nil, err
	}
	if f.header, err = headers(f, os.Getenv); err != nil {
		return nil, err
	}
	if err := forward.Check(f.output, f.outputOptions(nil, nil, nil)); err != nil {
		return nil, fmt.Errorf("--output: %w", err)
	}
	return f, nil
}

func runCommand(args []string, stdout, stderr io.Writer) int {
	f, err := parseRunFlags(args, stdout, stderr)
	if errors.Is(err, pflag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "nomad-log-forwarder run:", err)
		return exitUsage
	}
	log, err := newLogger(stderr, f.logLevel, f.logFormat)
	if err != nil {
		fmt.Fprintln(stderr, "nomad-log-forwarder run:", err)
		return exitUsage
	}
	defer log.Sync()
	if f.cpuProfile != "" {
		stop, err := startCPUProfile(f.cpuProfile)
		if err != nil {
			fmt.Fprintln(stderr, "nomad-log-forwarder run:", err)
			return 1
		}
		defer stop()
	}
	if err := run(f, stdout, log); err != nil {
		if errors.As(err, new(*tailer.UnfinishedError)) {
			log.Error("--once stopped before the output confirmed every line; the next run reads them again from the checkpoint", zap.Error(err))
			return exitUnfinished
		}
		log.Error("nomad-log-forwarder stopped", zap.Error(err))
		return 1
	}
	return 0
}

// onceFailed is run's error when --once stopped before the output
// confirmed every line (an *tailer.UnfinishedError: exit 3), with what
// went wrong at shutdown, if anything (the output's own error when it gave
// up).
func onceFailed(unfinished, shutdown error) error {
	if shutdown != nil {
		return fmt.Errorf("%w; at shutdown: %v", unfinished, shutdown)
	}
	return unfinished
}

// run wires the packages and owns every goroutine it starts.
func run(f *runFlags, stdout io.Writer, log *zap.Logger) (err error) {
	ctx, stopSignals := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stopSignals()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		telemetry.NewBuildInfo(versionString()))
	writer, err := forward.Open(f.output, f.outputOptions(stdout, log, reg))
	if err != nil {
		return err
	}
	if len(f.header) > 0 {
		log.Info("HTTP output sends extra headers", zap.Strings("headers", forward.HeaderNames(f.header)))
	}
	if n, ok := spareProcessor(os.Getenv, runtime.GOMAXPROCS(0)); ok {
		runtime.GOMAXPROCS(n)
	}
	if os.Getenv("GOGC") == "" {
		// Go lets the heap grow to twice what is live before it
		// collects. Half that headroom costs the daemon little, since
		// reading and sending a line allocates nothing: on a node with
		// 5,000 streams it cut peak RSS from 153 to 140 MiB at the same
		// CPU. The HTTP output does make garbage (net/http's objects for
		// every request), and there it keeps peak RSS near the socket
		// output's for a few percent of CPU (see the README, "Choosing an
		// output").
		debug.SetGCPercent(50)
	}
	switch limit, ok, err := nomadMemoryLimit(os.Getenv); {
	case err != nil:
		log.Warn("reading the task's memory limit", zap.Error(err))
	case ok:
		debug.SetMemoryLimit(limit)
		log.Info("Go soft memory limit set from the task's memory limit", zap.Int64("bytes", limit))
	}
	unlock, err := checkpoint.Lock(f.checkpointPath)
	if err != nil {
		return err
	}
	defer unlock()
	store, err := checkpoint.Open(f.checkpointPath, checkpoint.NewMetrics(reg))
	if err != nil {
		return err
	}
	root, err := safefs.OpenRoot(f.allocDir)
	if err != nil {
		return err
	}
	defer root.Close()

	checks := []telemetry.Check{{Name: "checkpoint", Check: store.Healthy}}
	opts := enrich.Options{Namespaces: f.namespaces, MetaKeys: f.metaKeys, NodeMetaKeys: f.nodeMetaKeys,
		SelfAllocID: os.Getenv("NOMAD_ALLOC_ID"), TaskEvents: f.taskEvents, MaxStreamsPerAlloc: f.maxStreamsPerAlloc,
		Handling: f.handling}
	tailerMetrics := tailer.NewMetrics(reg)
	var d discovery
	if f.offline {
		d, err = offlineDiscovery(f, root, opts, writer.Acknowledges(), tailerMetrics, reg, log)
	} else {
		d, err = apiDiscovery(ctx, f, root, opts, reg, log)
	}
	if err != nil {
		return err
	}
	defer d.close()
	checks = append(checks, d.checks...)
	once, discover := d.once, d.run

	watcher, err := tailer.NewWatcher(log, f.maxWatches)
	if err != nil {
		log.Warn("inotify is unavailable; every stream polls", zap.Error(err))
		watcher = nil
	}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "nlf_inotify_watches", Help: "inotify watches the daemon holds (two per watched log folder); streams beyond fs.inotify.max_user_watches poll.",
	}, func() float64 { return float64(watcher.Watches()) }))
	manager := tailer.NewManager(tailer.Config{
		Root: root, Output: writer, Checkpoint: store, Watcher: watcher,
		Budget:   tailer.NewBudget(f.maxHeldFiles, f.maxHeldBytes, tailerMetrics.HeldFiles, tailerMetrics.HeldBytes),
		ReadFrom: f.readFrom, MaxLineBytes: f.maxLineBytes, DrainDelay: f.drainDelay, Log: log,
		MultilineMaxLines: f.multilineMaxLines, MultilineMaxBytes: f.multilineMaxBytes, MultilineTimeout: f.multilineTimeout,
		Metrics: tailerMetrics,
	})
	reg.MustRegister(manager.NewLagCollector())

	var wg sync.WaitGroup
	defer wg.Wait()
	// The output outlives the streams (see Shutdown); if it can never
	// write again, nothing can be shipped: stop everything.
	output := tailer.StartOutput(writer, func(error) { stopSignals() })
	bgCtx, stopBackground := context.WithCancel(ctx)
	defer stopBackground()
	wg.Go(func() {
		store.Run(bgCtx, f.checkpointInterval, func(err error) { log.Error("saving the checkpoint failed", zap.Error(err)) })
	})
	if watcher != nil {
		wg.Go(func() { watcher.Run(bgCtx) })
	}
	if f.metricsAddr != "" {
		wg.Go(func() {
			if err := telemetry.Serve(bgCtx, f.metricsAddr, telemetry.Handler(reg, checks)); err != nil {
				log.Warn("metrics and health endpoint unavailable; forwarding goes on", zap.Error(err))
			}
		})
	}

	if f.once {
		log.Info("reading every stream to its end", zap.Int("streams", len(once)), zap.Stringer("output", writer))
		if unfinished := manager.RunOnce(ctx, once); unfinished != nil {
			// Deferred, to be run's answer (exit 3) however the shutdown
			// below ends.
			defer func() { err = onceFailed(unfinished, err) }()
		}
	} else {
		updates := make(chan []enrich.Desired)
		wg.Go(func() { discover(bgCtx, updates) })
		log.Info("forwarding task logs", zap.String("alloc_dir", root.Path()), zap.Stringer("output", writer))
		_ = manager.Run(ctx, updates)
	}

	// Streams have stopped reading: the output writes what it holds, then
	// the checkpoint is saved with everything it confirmed.
	stopBackground()
	err = output.Shutdown(shutdownBudget, store)
	if errors.Is(err, tailer.ErrOutputTimedOut) {
		log.Warn(err.Error())
		err = nil
	}
	if err != nil {
		return err
	}
	log.Info("stopped; checkpoint saved", zap.String("checkpoint", store.Path()))
	return nil
}

// syncedWithin is a health check: the allocations were listed less than
// maxAge ago.
func syncedWithin(lastSync func() time.Time, maxAge time.Duration) func() error {
	return func() error {
		last := lastSync()
		switch {
		case last.IsZero():
			return errors.New("not synced with the Nomad API yet")
		case time.Since(last) > maxAge:
			return fmt.Errorf("last successful sync with the Nomad API was %s ago", time.Since(last).Round(time.Second))
		}
		return nil
	}
}

// headers gathers the HTTP headers of --http-header, --http-header-file
// and NLF_HTTP_HEADERS (newline-separated 'Name: value' lines). Secrets
// belong in the file or the environment: argv is every local user's to
// read in /proc/<pid>/cmdline.
func headers(f *runFlags, env func(string) string) (http.Header, error) {
	specs := append([]string(nil), f.httpHeaders...)
	if f.headerFile != "" {
		data, err := os.ReadFile(f.headerFile)
		if err != nil {
			return nil, fmt.Errorf("--http-header-file: %w", err)
		}
		lines, err := forward.HeaderLines("--http-header-file "+f.headerFile, string(data))
		if err != nil {
			return nil, err
		}
		specs = append(specs, lines...)
	}
	if v := env("NLF_HTTP_HEADERS"); v != "" {
		lines, err := forward.HeaderLines("NLF_HTTP_HEADERS", v)
		if err != nil {
			return nil, err
		}
		specs = append(specs, lines...)
	}
	if len(specs) == 0 {
		return nil, nil
	}
	return forward.ParseHeaders(specs)
}

// outputOptions are the flags' forward.Options.
func (f *runFlags) outputOptions(stdout io.Writer, log *zap.Logger, reg prometheus.Registerer) forward.Options {
	return forward.Options{
		Stdout: stdout, Log: log, Registerer: reg, Header: f.header, TLS: f.tls,
		RequestBytes: f.batchBytes, FlushInterval: f.flushInterval, Inflight: f.inflight, Timeout: f.httpTimeout,
		SourceWindow: tailer.BatchesPerStream,
	}
}

func startCPUProfile(path string) (stop func(), err error) {
	out, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("create CPU profile: %w", err)
	}
	if err := pprof.StartCPUProfile(out); err != nil {
		out.Close()
		return nil, fmt.Errorf("start CPU profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		out.Close()
	}, nil
}

// discovery is where the targets come from: the Nomad API, or the alloc
// dir itself (--offline).
type discovery struct {
	// once is the target set of --once; run sends snapshots otherwise.
	once   []enrich.Desired
	run    func(ctx context.Context, updates chan<- []enrich.Desired)
	checks []telemetry.Check
	close  func()
}

// offlineDiscovery: acknowledged says the output confirms end to end, so
// lines need a node ID to be told apart (see the README's idempotency key).
func offlineDiscovery(f *runFlags, root *safefs.Root, opts enrich.Options, acknowledged bool, tm *tailer.Metrics, reg prometheus.Registerer, log *zap.Logger) (discovery, error) {
	d := discovery{close: func() {}}
	// Of discovery's metrics only the refused allocations apply.
	discoveryMetrics := enrich.NewMetrics(nil)
	reg.MustRegister(discoveryMetrics.Refused)
	scanner := &enrich.Scanner{Root: root, Log: log, Options: opts, Node: enrich.Node{ID: f.nodeID},
		Refused: tm.FilesRefused, AllocationsRefused: discoveryMetrics.Refused}
	if f.allocsFile != "" {
		var err error
		if scanner.Allocs, err = enrich.LoadAllocations(f.allocsFile); err != nil {
			return d, err
		}
	}
	if acknowledged && scanner.ResolvedNode().ID == "" {
		log.Warn("this node's ID is unknown, so lines carry no nomad.node_id: file + offset alone do not identify a line across nodes; pass --node-id (or --allocs-file)")
	}
	if f.once {
		var err error
		d.once, err = scanner.Scan()
		return d, err
	}
	d.run = func(ctx context.Context, updates chan<- []enrich.Desired) {
		scanner.Run(ctx, f.reconcileInterval, updates)
	}
	return d, nil
}

func apiDiscovery(ctx context.Context, f *runFlags, root *safefs.Root, opts enrich.Options, reg prometheus.Registerer, log *zap.Logger) (discovery, error) {
	d := discovery{close: func() {}}
	client, info, err := enrich.NewClient(enrich.ClientConfig{Address: f.nomadAddr, MaxResponseBytes: f.nomadMaxResponse})
	if err != nil {
		return d, err
	}
	d.close = client.Close
	log.Info("using the Nomad API", zap.String("address", info.Address), zap.String("address_from", info.AddressFrom),
		zap.String("token_from", info.TokenFrom), zap.Bool("tls", info.TLS), zap.String("dial_via", info.DialVia))
	watcher := enrich.NewWatcher(enrich.WatcherConfig{
		Client: client, NodeID: f.nodeID, Root: root, Options: opts, Region: info.Region,
		ReconcileInterval: f.reconcileInterval, Log: log, Metrics: enrich.NewMetrics(reg),
	})
	d.checks = []telemetry.Check{{Name: "nomad", Check: syncedWithin(watcher.LastSync, max(3*f.reconcileInterval, 30*time.Second))}}
	if f.once {
		d.once, err = watcher.Snapshot(ctx, onceAttempts)
		return d, err
	}
	d.run = watcher.Run
	return d, nil
}
