package tailer

import (
	"fmt"
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/checkpoint"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/enrich"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/safefs"
)

// LagFiles is how many files of a stream LagBytes counts: its committed
// file and the next ones by index. logmon keeps 10 files per stream by
// default, so a real stream is counted whole; a folder that a task filled
// with thousands of matching names costs one fstatat per counted file, not
// an open of every one at every scrape.
const LagFiles = 64

// LagBytes is how many bytes of e's stream are on disk past its committed
// position: the rest of file e.FileIndex and the newer files, at most
// LagFiles files in all (the lowest indexes from e.FileIndex on), so it is
// a lower bound when a stream has more. Files that are not regular files
// below the alloc dir count as nothing. Nothing is opened but the folder.
// An error says the folder could not be read: the lag is not known, which
// is not the same as 0.
func LagBytes(root *safefs.Root, e checkpoint.Entry) (int64, error) {
	if enrich.ValidPathComponent(e.AllocID) != nil || enrich.ValidPathComponent(e.Task) != nil {
		return 0, fmt.Errorf("checkpoint entry %s names no log folder below the alloc dir", e.Key())
	}
	d, err := root.OpenDir(enrich.LogDir(e.AllocID))
	if err != nil {
		return 0, fmt.Errorf("measure the lag of %s: %w", e.Key(), err)
	}
	defer d.Close()
	// The LagFiles lowest indexes at or after e.FileIndex, kept sorted.
	indexes := make([]int64, 0, LagFiles)
	// A folder that cannot be listed to its end is measured by what was
	// listed: the gauge is a lower bound anyway.
	_ = enrich.EachLogFile(d, func(task, stream string, index int64) {
		if task != e.Task || stream != e.Stream || index < e.FileIndex {
			return
		}
		if len(indexes) == LagFiles && index >= indexes[LagFiles-1] {
			return
		}
		at, _ := slices.BinarySearch(indexes, index)
		if len(indexes) == LagFiles {
			indexes = indexes[:LagFiles-1]
		}
		indexes = slices.Insert(indexes, at, index)
	})
	var lag int64
	for _, index := range indexes {
		size, err := safefs.SizeIn(d, enrich.LogFileName(e.Task, e.Stream, index))
		if err != nil {
			continue
		}
		if index == e.FileIndex {
			size -= e.Offset
		}
		lag += max(size, 0)
	}
	return lag, nil
}

// lagCollector reports, at each scrape, the bytes on disk that were not
// confirmed forwarded yet, summed over every unfinished stream. It reads
// the checkpoint and stats files, so it costs nothing between scrapes.
type lagCollector struct {
	root *safefs.Root
	cp   Checkpoint
	desc *prometheus.Desc
}

// NewLagCollector makes the nlf_lag_bytes gauge.
func NewLagCollector(root *safefs.Root, cp Checkpoint) prometheus.Collector {
	return &lagCollector{root: root, cp: cp, desc: prometheus.NewDesc("nlf_lag_bytes",
		fmt.Sprintf("Bytes in task log files not yet confirmed forwarded, summed over all streams. "+
			"Counts at most the first %d files of each stream from its committed file on, "+
			"so it is a lower bound for a stream with more.", LagFiles), nil, nil)}
}

func (c *lagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *lagCollector) Collect(ch chan<- prometheus.Metric) {
	var total int64
	for _, e := range c.cp.Entries() {
		if !e.Finished {
			// A folder that cannot be read adds nothing: the gauge is a
			// lower bound.
			lag, _ := LagBytes(c.root, e)
			total += lag
		}
	}
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(total))
}
