// Command nomad-log-forwarder ships the logs of every task on a Nomad client
// node to Vector, each line wrapped in a JSON object with its Nomad
// metadata. This package parses flags and wires the packages together;
// the behaviour lives in enrich, tailer, forward and checkpoint.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = ""

// Exit codes.
const (
	exitUsage = 2 // a mistake in the command line
	// exitUnfinished: --once stopped (SIGTERM, or the output gave up)
	// before the output confirmed every line it read.
	exitUnfinished = 3
)

const usage = `nomad-log-forwarder ships Nomad task logs to Vector.

Usage:
  nomad-log-forwarder run [flags]                 follow task logs and forward them
  nomad-log-forwarder offsets list [flags]        show the checkpoint, one row per task stream
  nomad-log-forwarder offsets forget ALLOC_ID...  remove entries from the checkpoint
  nomad-log-forwarder version                     print the version
  nomad-log-forwarder help [COMMAND]              print this, or a command's usage

Run 'nomad-log-forwarder help COMMAND' (or COMMAND --help) for a command's flags.

Exit codes: 0 done; 1 failed; 2 wrong usage; 3 run --once stopped before the
output confirmed every line (they are read again by the next run).
`

func main() {
	os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
}

func dispatch(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "run":
		return runCommand(args[1:], stdout, stderr)
	case "offsets":
		return offsetsCommand(args[1:], stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintf(stdout, "nomad-log-forwarder %s (%s %s/%s)\n", versionString(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return 0
	case "help", "--help", "-h":
		return helpCommand(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "unknown command %q\n\n%s", args[0], usage)
	return exitUsage
}

// helpCommand prints the usage, or that of the command named.
func helpCommand(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stdout, usage)
		return 0
	}
	switch args[0] {
	case "run":
		return runCommand([]string{"--help"}, stdout, stderr)
	case "offsets":
		printOffsetsUsage(stdout)
		return 0
	case "version":
		fmt.Fprintln(stdout, "Usage: nomad-log-forwarder version\n\nPrints the version, the Go version it was built with, and the platform.")
		return 0
	}
	fmt.Fprintf(stderr, "unknown command %q\n\n%s", args[0], usage)
	return exitUsage
}

func versionString() string {
	if version != "" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return "dev-" + s.Value[:12]
		}
	}
	if info.Main.Version != "" {
		return info.Main.Version
	}
	return "unknown"
}
