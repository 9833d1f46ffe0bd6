package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/checkpoint"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/safefs"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/taskstream"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/tailer"
)

const offsetsUsage = `Usage:
  nomad-log-forwarder offsets list [--checkpoint F] [--alloc-dir D] [--json]
  nomad-log-forwarder offsets forget [--checkpoint F] ALLOC_ID...
`

func offsetsCommand(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, offsetsUsage)
		return 2
	}
	fs := pflag.NewFlagSet("offsets "+args[0], pflag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("checkpoint", defaultCheckpoint, "checkpoint file")
	var err error
	switch args[0] {
	case "list":
		allocDir := fs.String("alloc-dir", defaultAllocDir, "alloc dir, to measure lag_bytes")
		asJSON := fs.Bool("json", false, "print a JSON array instead of a table")
		if err = fs.Parse(args[1:]); err == nil {
			err = offsetsList(stdout, *path, *allocDir, *asJSON)
		}
	case "forget":
		if err = fs.Parse(args[1:]); err == nil {
			if fs.NArg() == 0 {
				err = errors.New("name at least one ALLOC_ID")
			} else {
				err = offsetsForget(stdout, *path, fs.Args())
			}
		}
	default:
		fmt.Fprintf(stderr, "unknown offsets command %q\n\n%s", args[0], offsetsUsage)
		return 2
	}
	if errors.Is(err, pflag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "nomad-log-forwarder offsets:", err)
		return 1
	}
	return 0
}

// offsetRow is one line of `offsets list`; its JSON keys are the contract.
type offsetRow struct {
	AllocID   string `json:"alloc_id"`
	Task      string `json:"task"`
	Stream    string `json:"stream"`
	FileIndex int64  `json:"file_index"`
	Offset    int64  `json:"offset"`
	LagBytes  int64  `json:"lag_bytes"`
	Finished  bool   `json:"finished"`
	UpdatedAt string `json:"updated_at"`
}

// offsetsList only reads the checkpoint, so it is safe while a daemon runs.
func offsetsList(w io.Writer, path, allocDir string, asJSON bool) error {
	entries, err := checkpoint.Read(path)
	if err != nil {
		return err
	}
	root, rootErr := safefs.OpenRoot(allocDir)
	if rootErr == nil {
		defer root.Close()
	}
	rows := make([]offsetRow, 0, len(entries))
	checkpoint.Sort(entries)
	for _, e := range entries {
		row := offsetRow{
			AllocID: e.AllocID, Task: e.Task, Stream: e.Stream, FileIndex: e.FileIndex, Offset: e.Offset,
			Finished: e.Finished, UpdatedAt: e.UpdatedAt.UTC().Format(time.RFC3339Nano),
		}
		if rootErr == nil {
			row.LagBytes, _ = tailer.LagBytes(root, e)
		}
		rows = append(rows, row)
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ALLOC_ID\tTASK\tSTREAM\tFILE_INDEX\tOFFSET\tLAG_BYTES\tFINISHED\tUPDATED_AT")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%t\t%s\n", r.AllocID, r.Task, r.Stream, r.FileIndex, r.Offset, r.LagBytes, r.Finished, r.UpdatedAt)
	}
	return tw.Flush()
}

// offsetsForget edits the checkpoint, so it refuses while a daemon holds it.
func offsetsForget(w io.Writer, path string, allocIDs []string) error {
	unlock, err := checkpoint.Lock(path)
	if err != nil {
		return fmt.Errorf("%w; stop the daemon first", err)
	}
	defer unlock()
	store, err := checkpoint.Open(path, nil)
	if err != nil {
		return err
	}
	want := make(map[string]bool, len(allocIDs))
	for _, id := range allocIDs {
		want[id] = true
	}
	var keys []taskstream.ID
	for _, e := range store.Entries() {
		if want[e.AllocID] {
			keys = append(keys, e.Key())
		}
	}
	store.Delete(keys...)
	if err := store.Save(); err != nil {
		return err
	}
	fmt.Fprintf(w, "removed %d entries\n", len(keys))
	return nil
}
