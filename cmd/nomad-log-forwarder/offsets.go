package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/pflag"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/checkpoint"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/safefs"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/taskstream"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/tailer"
)

const offsetsUsage = `Usage:
  nomad-log-forwarder offsets list [--checkpoint FILE] [--alloc-dir DIR] [--json]
  nomad-log-forwarder offsets forget [--checkpoint FILE] [--ignore-missing] ALLOC_ID...

offsets shows and edits the checkpoint: for each task stream, the file and
offset up to which the output confirmed the lines.

  list    One row per stream: FILE_INDEX and OFFSET committed, LAG_BYTES (bytes
          on disk not confirmed yet; "-" in the table and null in --json when
          the stream's folder could not be read), FINISHED. Only reads: safe
          while a daemon runs.
  forget  Removes every entry of the allocations named, so that a daemon
          started afterwards reads their logs again from the start. Refused
          while a daemon holds the checkpoint. An ALLOC_ID that is not in the
          checkpoint is an error, and nothing is removed, unless
          --ignore-missing. The file keeps its owner and mode.

A checkpoint that does not exist is an error ("no checkpoint at PATH"), and
nothing is created for it.
`

func listFlags() (*pflag.FlagSet, *string, *string, *bool) {
	fs := pflag.NewFlagSet("offsets list", pflag.ContinueOnError)
	path := fs.String("checkpoint", defaultCheckpoint, "checkpoint file")
	allocDir := fs.String("alloc-dir", defaultAllocDir, "the Nomad client's alloc dir, to measure LAG_BYTES")
	asJSON := fs.Bool("json", false, "print a JSON array instead of a table")
	return fs, path, allocDir, asJSON
}

func forgetFlags() (*pflag.FlagSet, *string, *bool) {
	fs := pflag.NewFlagSet("offsets forget", pflag.ContinueOnError)
	path := fs.String("checkpoint", defaultCheckpoint, "checkpoint file")
	ignoreMissing := fs.Bool("ignore-missing", false, "an ALLOC_ID that is not in the checkpoint is not an error")
	return fs, path, ignoreMissing
}

// printOffsetsUsage prints the usage of both subcommands with their flags.
func printOffsetsUsage(w io.Writer) {
	fmt.Fprint(w, offsetsUsage)
	list, _, _, _ := listFlags()
	forget, _, _ := forgetFlags()
	fmt.Fprintf(w, "\nFlags of list:\n%s\nFlags of forget:\n%s", list.FlagUsages(), forget.FlagUsages())
}

func offsetsCommand(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		printOffsetsUsage(stderr)
		return exitUsage
	}
	var fs *pflag.FlagSet
	var action func() error
	switch args[0] {
	case "help", "--help", "-h":
		printOffsetsUsage(stdout)
		return 0
	case "list":
		var path, allocDir *string
		var asJSON *bool
		fs, path, allocDir, asJSON = listFlags()
		action = func() error {
			if fs.NArg() > 0 {
				return usageError{fmt.Errorf("unexpected arguments: %v", fs.Args())}
			}
			return offsetsList(stdout, stderr, *path, *allocDir, *asJSON)
		}
	case "forget":
		var path *string
		var ignoreMissing *bool
		fs, path, ignoreMissing = forgetFlags()
		action = func() error {
			if fs.NArg() == 0 {
				return usageError{errors.New("name at least one ALLOC_ID")}
			}
			return offsetsForget(stdout, *path, fs.Args(), *ignoreMissing)
		}
	default:
		fmt.Fprintf(stderr, "unknown offsets command %q\n\n", args[0])
		printOffsetsUsage(stderr)
		return exitUsage
	}
	fs.SetOutput(stderr)
	fs.Usage = func() { printOffsetsUsage(stdout) }
	err := fs.Parse(args[1:])
	if errors.Is(err, pflag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "nomad-log-forwarder %s: %v\n", fs.Name(), err)
		return exitUsage
	}
	if err := action(); err != nil {
		fmt.Fprintf(stderr, "nomad-log-forwarder %s: %v\n", fs.Name(), err)
		if errors.As(err, new(usageError)) {
			return exitUsage
		}
		return 1
	}
	return 0
}

// usageError is a mistake in the command line: exit 2.
type usageError struct{ error }

// offsetRow is one line of `offsets list`; its JSON keys are the contract.
type offsetRow struct {
	AllocID   string `json:"alloc_id"`
	Task      string `json:"task"`
	Stream    string `json:"stream"`
	FileIndex int64  `json:"file_index"`
	Offset    int64  `json:"offset"`
	// LagBytes is nil (null) when the stream's folder could not be read:
	// an unknown lag is not 0.
	LagBytes  *int64 `json:"lag_bytes"`
	Finished  bool   `json:"finished"`
	UpdatedAt string `json:"updated_at"`
	// LastEventTime is, on a task's events row (stream "event"), the time
	// of the last event the output confirmed (RFC 3339, nanoseconds).
	LastEventTime string `json:"last_event_time,omitempty"`
}

// offsetsList only reads the checkpoint, so it is safe while a daemon runs.
func offsetsList(w, warn io.Writer, path, allocDir string, asJSON bool) error {
	entries, err := checkpoint.ReadExisting(path)
	if err != nil {
		return err
	}
	root, rootErr := safefs.OpenRoot(allocDir)
	if rootErr == nil {
		defer root.Close()
	}
	// One warning for all the lags that could not be measured, naming the
	// first folder: a node whose alloc dir is elsewhere would otherwise
	// print one per stream.
	var unknown, measured int
	var firstErr error
	rows := make([]offsetRow, 0, len(entries))
	checkpoint.Sort(entries)
	for _, e := range entries {
		row := offsetRow{
			AllocID: e.AllocID, Task: e.Task, Stream: e.Stream, FileIndex: e.FileIndex, Offset: e.Offset,
			Finished: e.Finished, UpdatedAt: e.UpdatedAt.UTC().Format(time.RFC3339Nano),
		}
		if e.Key().IsEvents() {
			// A task's events: no files, no lag; how far they went.
			row.LastEventTime = time.Unix(0, e.EventTime).UTC().Format(time.RFC3339Nano)
			rows = append(rows, row)
			continue
		}
		measured++
		lagErr := rootErr
		if rootErr == nil {
			var lag int64
			if lag, lagErr = tailer.LagBytes(root, e); lagErr == nil {
				row.LagBytes = &lag
			}
		}
		if lagErr != nil {
			unknown++
			if firstErr == nil {
				firstErr = lagErr
			}
		}
		rows = append(rows, row)
	}
	switch {
	case rootErr != nil && unknown > 0:
		fmt.Fprintf(warn, "warning: LAG_BYTES is unknown for every stream: cannot read the alloc dir: %s (is --alloc-dir right?)\n", escapeControls(rootErr.Error()))
	case unknown > 0:
		fmt.Fprintf(warn, "warning: LAG_BYTES is unknown for %d of %d streams: %s\n", unknown, measured, escapeControls(firstErr.Error()))
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ALLOC_ID\tTASK\tSTREAM\tFILE_INDEX\tOFFSET\tLAG_BYTES\tLAST_EVENT\tFINISHED\tUPDATED_AT")
	for _, r := range rows {
		index, offset, lag, last := strconv.FormatInt(r.FileIndex, 10), strconv.FormatInt(r.Offset, 10), "-", "-"
		if r.LagBytes != nil {
			lag = strconv.FormatInt(*r.LagBytes, 10)
		}
		if r.LastEventTime != "" {
			index, offset, last = "-", "-", r.LastEventTime
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%t\t%s\n", escapeField(r.AllocID), escapeField(r.Task), escapeField(r.Stream),
			index, offset, lag, last, r.Finished, r.UpdatedAt)
	}
	return tw.Flush()
}

// escapeField makes a name from the checkpoint (task names come from the
// API or from file names a task chose) safe for a terminal: one with
// control characters (an ESC sequence rewrites the screen, a newline or
// tab forges rows or columns), spaces, quotes, backslashes or invalid
// UTF-8 is printed Go-quoted, as "web\x1b[2J"; any other is printed as is.
func escapeField(s string) string {
	if !utf8.ValidString(s) {
		return strconv.QuoteToGraphic(s)
	}
	for _, r := range s {
		if !unicode.IsGraphic(r) || unicode.IsSpace(r) || r == '"' || r == '\\' {
			return strconv.QuoteToGraphic(s)
		}
	}
	return s
}

// escapeControls quotes a message only if it holds characters a terminal
// would act on (it names a task, which may hold any).
func escapeControls(s string) string {
	if !utf8.ValidString(s) {
		return strconv.QuoteToGraphic(s)
	}
	for _, r := range s {
		if !unicode.IsGraphic(r) {
			return strconv.QuoteToGraphic(s)
		}
	}
	return s
}

// offsetsForget edits the checkpoint, so it refuses while a daemon holds it.
func offsetsForget(w io.Writer, path string, allocIDs []string, ignoreMissing bool) error {
	unlock, err := checkpoint.LockExisting(path)
	if errors.Is(err, checkpoint.ErrLocked) {
		return fmt.Errorf("%w; stop the daemon first", err)
	}
	if err != nil {
		return err
	}
	defer unlock()
	store, err := checkpoint.OpenExisting(path, nil)
	if err != nil {
		return err
	}
	want := make(map[string]bool, len(allocIDs))
	for _, id := range allocIDs {
		want[id] = false
	}
	entries := store.Entries()
	var keys []taskstream.ID
	for _, e := range entries {
		if _, ok := want[e.AllocID]; ok {
			want[e.AllocID] = true
			keys = append(keys, e.Key())
		}
	}
	var missing []string
	for _, id := range allocIDs {
		if !want[id] {
			missing = append(missing, id)
			want[id] = true // name a repeated ID once
		}
	}
	if len(missing) > 0 && !ignoreMissing {
		return missingError(path, missing, entries)
	}
	store.Delete(keys...)
	if err := store.Save(); err != nil {
		return err
	}
	fmt.Fprintf(w, "removed %d entries\n", len(keys))
	return nil
}

// missingError names the alloc IDs not in the checkpoint, with the full
// ID when one was given short.
func missingError(path string, missing []string, entries []checkpoint.Entry) error {
	var b strings.Builder
	for i, id := range missing {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.QuoteToGraphic(id))
		for _, e := range entries {
			if id != "" && strings.HasPrefix(e.AllocID, id) {
				fmt.Fprintf(&b, " (did you mean %s?)", escapeField(e.AllocID))
				break
			}
		}
	}
	noun := "alloc ID"
	if len(missing) > 1 {
		noun = "alloc IDs"
	}
	return fmt.Errorf("%s %s not in checkpoint %s; nothing was removed (--ignore-missing removes the others)", noun, b.String(), path)
}
