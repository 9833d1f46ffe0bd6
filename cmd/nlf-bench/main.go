// Command nlf-bench runs the end-to-end performance scenarios of `make
// bench` against the built forwarder and the yardstick, and prints one
// table with a row per target. It parses flags; internal/bench does the
// work.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/bench"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	var cfg bench.Config
	fs := pflag.NewFlagSet("nlf-bench", pflag.ContinueOnError)
	fs.StringVar(&cfg.Forwarder, "forwarder", "bin/nomad-log-forwarder", "the forwarder binary under test")
	fs.StringVar(&cfg.Ideal, "ideal", "bin/ideal", "the yardstick binary (go build ./bench/ideal)")
	fs.StringSliceVar(&cfg.Scenarios, "scenario", nil, "run only these scenarios (repeatable, comma-separated): "+strings.Join(bench.Names(), ", "))
	fs.IntVar(&cfg.Lines, "lines", 2_000_000, "throughput: lines in the file")
	fs.IntVar(&cfg.Repeat, "repeat", 3, "throughput: runs of the yardstick and of the forwarder each (medians are reported)")
	fs.IntVar(&cfg.Allocs, "allocs", 500, "live scenarios: allocations, two streams each")
	fs.IntVar(&cfg.Rate, "rate", 100, "many-streams: lines per second per stream")
	fs.DurationVar(&cfg.ManyStreams, "many-streams-for", 30*time.Second, "many-streams: measured window")
	fs.DurationVar(&cfg.Idle, "idle-for", 60*time.Second, "idle: measured window")
	fs.StringVar(&cfg.GoBench, "gobench", "", "output of `go test -bench . -benchmem ./...` whose hot-path allocations become rows")
	fs.StringVar(&cfg.ProfileDir, "profile-dir", "", "write a CPU profile of every forwarder run into this folder")
	fs.StringVar(&cfg.WorkDir, "work-dir", "", "folder for generated data (default: a temporary one)")
	quick := fs.Bool("quick", false, "small sizes for a quick look: 200k lines, 1 run, 10 s windows")
	if err := fs.Parse(args); err != nil {
		if err == pflag.ErrHelp {
			return 0
		}
		return 2
	}
	if *quick {
		cfg.Lines, cfg.Repeat = 200_000, 1
		cfg.ManyStreams, cfg.Idle = 10*time.Second, 10*time.Second
	}
	cfg.Progress = os.Stderr

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	rows, err := bench.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "nlf-bench:", err)
		return 1
	}
	fmt.Printf("\nnlf-bench, %s, %d CPUs (%s), %s, took %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"),
		runtime.NumCPU(), cpuModel(), runtime.Version(), time.Since(start).Round(time.Second))
	if err := bench.WriteTable(os.Stdout, rows); err != nil {
		return 1
	}
	if bench.Failed(rows) {
		fmt.Println("\nsome targets are not met")
		return 1
	}
	return 0
}

// cpuModel names the machine's processor, for the record.
func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for l := range strings.Lines(string(data)) {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}
