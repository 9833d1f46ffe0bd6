package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/checkpoint"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/enrich"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/forward"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/safefs"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/tailer"
)

const (
	defaultAllocDir   = "/opt/nomad/data/alloc"
	defaultCheckpoint = "/var/lib/nomad-log-forwarder/checkpoint.msgpack"
	// shutdownBudget is how long SIGTERM may take, inside Nomad's default
	// kill_timeout of 5s.
	shutdownBudget = 4 * time.Second
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
	nodeID             string
	namespaces         []string
	metaKeys           []string
	logLevel           string
	logFormat          string
	cpuProfile         string
}

func parseRunFlags(args []string, stderr io.Writer) (*runFlags, error) {
	f := &runFlags{}
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.allocDir, "alloc-dir", defaultAllocDir, "Nomad client's alloc dir (<data_dir>/alloc)")
	fs.StringVar(&f.checkpointPath, "checkpoint", defaultCheckpoint, "checkpoint file (msgpack); keep it outside any alloc dir")
	fs.DurationVar(&f.checkpointInterval, "checkpoint-interval", time.Second, "how often the checkpoint is saved when something changed")
	fs.StringVar(&f.output, "output", "stdout", "where lines go: stdout, tcp://HOST:PORT or unix:///PATH")
	fs.StringVar(&f.readFrom, "read-from", tailer.ReadFromBeginning, "where a stream with no checkpoint starts: beginning or end")
	fs.IntVar(&f.maxLineBytes, "max-line-bytes", 102400, "longer lines are truncated to this many bytes and flagged \"truncated\": true")
	fs.BoolVar(&f.once, "once", false, "read every stream to its end, emit partial last lines, and exit")
	fs.BoolVar(&f.offline, "offline", false, "never call Nomad: find streams by scanning --alloc-dir")
	fs.StringVar(&f.allocsFile, "allocs-file", "", "with --offline: a saved GET /v1/node/<id>/allocations response for metadata")
	fs.DurationVar(&f.drainDelay, "drain-delay", 10*time.Second, "a stopped allocation's stream is retired after this long with no new bytes")
	fs.DurationVar(&f.reconcileInterval, "reconcile-interval", 30*time.Second, "how often the full list of allocations is fetched (or the alloc dir rescanned)")
	fs.StringVar(&f.nomadAddr, "nomad-addr", "", "Nomad HTTP API address (default: NOMAD_ADDR, or the task API socket)")
	fs.StringVar(&f.nodeID, "node-id", "", "this node's ID (default: asked from /v1/agent/self)")
	fs.StringArrayVar(&f.namespaces, "namespace", nil, "tail only this namespace (repeatable; default all)")
	fs.StringArrayVar(&f.metaKeys, "meta", nil, "copy this task/group/job meta key into nomad.meta.KEY (repeatable)")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&f.logFormat, "log-format", "json", "json or console")
	fs.StringVar(&f.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file (for make bench)")
	_ = fs.MarkHidden("cpuprofile")
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
	}
	return f, nil
}

func runCommand(args []string, stdout, stderr io.Writer) int {
	f, err := parseRunFlags(args, stderr)
	if errors.Is(err, pflag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "nomad-log-forwarder run:", err)
		return 2
	}
	log, err := newLogger(stderr, f.logLevel, f.logFormat)
	if err != nil {
		fmt.Fprintln(stderr, "nomad-log-forwarder run:", err)
		return 2
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
		log.Error("nomad-log-forwarder stopped", zap.Error(err))
		return 1
	}
	return 0
}

// run wires the packages and owns every goroutine it starts.
func run(f *runFlags, stdout io.Writer, log *zap.Logger) error {
	ctx, stopSignals := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stopSignals()

	out, err := forward.ParseOutput(f.output, stdout)
	if err != nil {
		return err
	}
	unlock, err := checkpoint.Lock(f.checkpointPath)
	if err != nil {
		return err
	}
	defer unlock()
	store, err := checkpoint.Open(f.checkpointPath)
	if err != nil {
		return err
	}
	root, err := safefs.OpenRoot(f.allocDir)
	if err != nil {
		return err
	}
	defer root.Close()

	var discover func(ctx context.Context, updates chan<- []enrich.Desired)
	var once []enrich.Desired
	if !f.offline {
		return errors.New("discovery through the Nomad API is not built yet: use --offline")
	}
	scanner := &enrich.Scanner{Root: root, Log: log, Options: enrich.Options{Namespaces: f.namespaces, MetaKeys: f.metaKeys}}
	if f.allocsFile != "" {
		if scanner.Allocs, err = enrich.LoadAllocations(f.allocsFile); err != nil {
			return err
		}
		if len(scanner.Allocs) > 0 {
			scanner.Node = enrich.Node{ID: scanner.Allocs[0].NodeID, Name: scanner.Allocs[0].NodeName}
		}
	}
	if f.once {
		if once, err = scanner.Scan(); err != nil {
			return err
		}
	} else {
		discover = func(ctx context.Context, updates chan<- []enrich.Desired) {
			scanner.Run(ctx, f.reconcileInterval, updates)
		}
	}

	writer := forward.New(forward.Config{Output: out, Log: log})
	watcher, err := tailer.NewWatcher(log)
	if err != nil {
		log.Warn("inotify is unavailable; every stream polls", zap.Error(err))
		watcher = nil
	}
	manager := tailer.NewManager(tailer.Config{
		Root: root, Output: writer, Checkpoint: store, Watcher: watcher,
		ReadFrom: f.readFrom, MaxLineBytes: f.maxLineBytes, DrainDelay: f.drainDelay, Log: log,
	})

	// The writer outlives the streams: it gets its own context, cancelled
	// only when the shutdown budget is spent.
	writerCtx, stopWriter := context.WithCancel(context.Background())
	defer stopWriter()
	var wg sync.WaitGroup
	defer wg.Wait()
	writerDone := make(chan error, 1)
	wg.Go(func() {
		err := writer.Run(writerCtx)
		writerDone <- err
		if err != nil {
			stopSignals() // nothing can be shipped any more: stop everything
		}
	})
	bgCtx, stopBackground := context.WithCancel(ctx)
	defer stopBackground()
	wg.Go(func() {
		store.Run(bgCtx, f.checkpointInterval, func(err error) { log.Error("saving the checkpoint failed", zap.Error(err)) })
	})
	if watcher != nil {
		wg.Go(func() { watcher.Run(bgCtx) })
	}

	if f.once {
		log.Info("reading every stream to its end", zap.Int("streams", len(once)), zap.Stringer("output", out))
		_ = manager.RunOnce(ctx, once)
	} else {
		updates := make(chan []enrich.Desired)
		wg.Go(func() { discover(bgCtx, updates) })
		log.Info("forwarding task logs", zap.String("alloc_dir", root.Path()), zap.Stringer("output", out))
		_ = manager.Run(ctx, updates)
	}

	// Shutdown: streams have stopped reading; let the writer write what is
	// queued, then save the checkpoint with everything it confirmed.
	stopBackground()
	writer.Close()
	var writeErr error
	select {
	case writeErr = <-writerDone:
	case <-time.After(shutdownBudget):
		log.Warn("output did not take the last lines in time; they will be sent again after a restart")
		stopWriter()
		writeErr = <-writerDone
	}
	if err := store.Save(); err != nil {
		return err
	}
	if writeErr != nil {
		return writeErr
	}
	log.Info("stopped; checkpoint saved", zap.String("checkpoint", store.Path()))
	return nil
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
