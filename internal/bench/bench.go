package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Config says what to run and how big. The defaults are the sizes the
// targets are set for.
type Config struct {
	// Forwarder and Ideal are the binaries under test: the daemon and the
	// yardstick (bench/ideal).
	Forwarder, Ideal string
	// WorkDir holds the generated data; a temporary folder when empty.
	WorkDir string
	// Scenarios to run, by name; all when empty.
	Scenarios []string

	// Lines is the size of the file of the throughput and http scenarios;
	// Repeat how many times each side reads it (the yardstick and the
	// forwarder, or the forwarder to TCP and to HTTP; medians are reported).
	Lines  int
	Repeat int
	// Allocs is the number of allocations of the live scenarios (two
	// streams each); Rate the lines per second of each stream.
	Allocs int
	Rate   int
	// ScaleAllocs is the number of allocations of the scale scenario
	// (two streams each; its small fleet has a fifth of them).
	ScaleAllocs int
	// ManyStreams and Idle are the measured windows of those scenarios;
	// Settle is the pause before each, so that start-up work is over.
	ManyStreams time.Duration
	Idle        time.Duration
	Settle      time.Duration

	// APILoad is the measured window of the api-load scenario.
	APILoad time.Duration

	// Fixtures is a folder of captured Nomad API answers
	// (testdata/nomad-2.0.5/api) that the discovery scenario's fake API
	// serves: its allocations are copies of one of them.
	Fixtures string

	// GoBench is a file with the output of `go test -bench -benchmem`,
	// whose allocation figures become rows of the table.
	GoBench string
	// ProfileDir, when set, gets a CPU profile of every forwarder run.
	ProfileDir string
	// Progress receives a line per step.
	Progress io.Writer
}

// Defaults fills in the targets' sizes where c has none.
func (c *Config) Defaults() {
	c.Lines = orDefault(c.Lines, 2_000_000)
	c.Repeat = orDefault(c.Repeat, 3)
	c.Allocs = orDefault(c.Allocs, 500)
	c.Rate = orDefault(c.Rate, 100)
	c.ScaleAllocs = orDefault(c.ScaleAllocs, 2500)
	c.ManyStreams = orDefault(c.ManyStreams, 30*time.Second)
	c.Idle = orDefault(c.Idle, 60*time.Second)
	c.Settle = orDefault(c.Settle, 2*time.Second)
	c.APILoad = orDefault(c.APILoad, time.Minute)
	if c.Progress == nil {
		c.Progress = io.Discard
	}
}

func orDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

type scenario struct {
	name string
	run  func(ctx context.Context, e *env) ([]Row, error)
}

// scenarios lists every scenario in the order of the table.
func scenarios() []scenario {
	return []scenario{
		{name: "throughput", run: throughput},
		{name: "http", run: httpOutput},
		{name: "many-streams", run: manyStreams},
		{name: "idle", run: idle},
		{name: "restart", run: restart},
		{name: "discovery", run: discovery},
		{name: "api-load", run: apiLoad},
		{name: "burst", run: burst},
		{name: "pertask", run: pertask},
		{name: "scale", run: scale},
	}
}

// Names lists the scenarios.
func Names() []string {
	var names []string
	for _, s := range scenarios() {
		names = append(names, s.name)
	}
	return names
}

// env is what a scenario gets: the configuration, a folder of its own, and
// the arguments that every forwarder run takes.
type env struct {
	cfg  *Config
	dir  string
	runs int
}

func (e *env) progress(format string, args ...any) {
	fmt.Fprintf(e.cfg.Progress, "  "+format+"\n", args...)
}

// forwarderArgs completes the arguments of a forwarder run: the output (a
// --output URL), a CPU profile when asked for, quiet logs.
func (e *env) forwarderArgs(name, output string, args ...string) []string {
	args = append(args, "--output", output, "--log-level", "warn")
	if e.cfg.ProfileDir != "" {
		e.runs++
		args = append(args, "--cpuprofile", filepath.Join(e.cfg.ProfileDir, fmt.Sprintf("%s-%d.pprof", name, e.runs)))
	}
	return args
}

// Run runs the chosen scenarios and returns the rows of the table. A
// scenario that cannot be measured gives an Error row; the others still run.
func Run(ctx context.Context, cfg Config) ([]Row, error) {
	cfg.Defaults()
	for _, name := range cfg.Scenarios {
		if !slices.Contains(Names(), name) {
			return nil, fmt.Errorf("unknown scenario %q (known: %s)", name, strings.Join(Names(), ", "))
		}
	}
	for _, bin := range []string{cfg.Forwarder, cfg.Ideal} {
		if _, err := os.Stat(bin); err != nil {
			return nil, fmt.Errorf("binary under test: %w", err)
		}
	}
	work := cfg.WorkDir
	if work == "" {
		dir, err := os.MkdirTemp("", "nlf-bench-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		work = dir
	}
	if cfg.ProfileDir != "" {
		if err := os.MkdirAll(cfg.ProfileDir, 0o755); err != nil {
			return nil, err
		}
	}
	var rows []Row
	for _, s := range scenarios() {
		if len(cfg.Scenarios) > 0 && !slices.Contains(cfg.Scenarios, s.name) {
			continue
		}
		fmt.Fprintf(cfg.Progress, "%s:\n", s.name)
		dir := filepath.Join(work, s.name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		start := time.Now()
		got, err := s.run(ctx, &env{cfg: &cfg, dir: dir})
		os.RemoveAll(dir)
		if ctx.Err() != nil {
			return rows, ctx.Err()
		}
		if err != nil {
			got = append(got, Row{Scenario: s.name, Metric: "could not be measured", Measured: err.Error(), Result: Error})
		}
		fmt.Fprintf(cfg.Progress, "  done in %s\n", time.Since(start).Round(time.Second))
		rows = append(rows, got...)
		if s.name == "throughput" {
			rows = append(rows, goBenchRows(cfg.GoBench)...)
		}
	}
	return rows, nil
}

// Machine describes the machine the figures come from.
func Machine() string {
	model := "unknown CPU"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for l := range strings.Lines(string(data)) {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	return fmt.Sprintf("%d CPUs (%s), %s", runtime.NumCPU(), model, runtime.Version())
}
