// Command nlf-bench runs the end-to-end performance scenarios of `make
// bench` against the built forwarder and the yardstick, and prints one
// table with a row per target; it exits 1 when a target is missed. It
// parses flags; internal/bench does the work.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/bench"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	var cfg bench.Config
	fs := flag.NewFlagSet("nlf-bench", flag.ContinueOnError)
	fs.StringVar(&cfg.Forwarder, "forwarder", "bin/nomad-log-forwarder", "the forwarder binary under test")
	fs.StringVar(&cfg.Ideal, "ideal", "bin/ideal", "the yardstick binary (go build -o bin/ideal ./bench/ideal)")
	fs.Func("scenario", "run only this scenario (repeatable, or comma-separated): "+strings.Join(bench.Names(), ", "), func(v string) error {
		cfg.Scenarios = append(cfg.Scenarios, strings.Split(v, ",")...)
		return nil
	})
	fs.IntVar(&cfg.Lines, "lines", 2_000_000, "throughput and http: lines in the file")
	fs.IntVar(&cfg.Repeat, "repeat", 3, "throughput and http: runs of each side (medians are reported)")
	fs.IntVar(&cfg.Allocs, "allocs", 500, "live scenarios: allocations, two streams each")
	fs.IntVar(&cfg.ScaleAllocs, "scale-allocs", 2500, "scale: allocations of the large fleet, two streams each (the small one has a fifth)")
	fs.IntVar(&cfg.Rate, "rate", 100, "many-streams: lines per second per stream")
	fs.DurationVar(&cfg.ManyStreams, "many-streams-for", 30*time.Second, "many-streams: measured window")
	fs.DurationVar(&cfg.Idle, "idle-for", 60*time.Second, "idle: measured window")
	fs.DurationVar(&cfg.APILoad, "api-load-for", time.Minute, "api-load: measured window (at a tenth of the default reconcile interval)")
	fs.StringVar(&cfg.Fixtures, "fixtures", "testdata/nomad-2.0.5/api", "discovery and api-load: captured Nomad API answers whose allocation, node and agent the fake API serves")
	fs.StringVar(&cfg.GoBench, "gobench", "", "output of `go test -bench . -benchmem ./...`, whose hot-path allocations become rows")
	fs.StringVar(&cfg.ProfileDir, "profile-dir", "", "write a CPU profile of every forwarder run into this folder")
	fs.StringVar(&cfg.WorkDir, "work-dir", "", "folder for generated data (default: a temporary one)")
	quick := fs.Bool("quick", false, "small sizes for a quick look: 200,000 lines, 1 run, 10-15 s windows")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if *quick {
		cfg.Lines, cfg.Repeat = 200_000, 1
		cfg.ManyStreams, cfg.Idle, cfg.APILoad = 10*time.Second, 10*time.Second, 15*time.Second
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
	fmt.Printf("\nnlf-bench, %s, %s, took %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), bench.Machine(), time.Since(start).Round(time.Second))
	if err := bench.WriteTable(os.Stdout, rows); err != nil {
		return 1
	}
	if bench.Failed(rows) {
		fmt.Println("\nsome targets are not met")
		return 1
	}
	return 0
}
