package tailer

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/checkpoint"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/enrich"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/safefs"
)

// LagBytes is how many bytes of e's stream are on disk past its committed
// position: the rest of file e.FileIndex and every newer file. Files that
// cannot be opened safely count as nothing.
func LagBytes(root *safefs.Root, e checkpoint.Entry) int64 {
	if enrich.ValidPathComponent(e.AllocID) != nil || enrich.ValidPathComponent(e.Task) != nil {
		return 0
	}
	dir := enrich.LogDir(e.AllocID)
	d, err := root.OpenDir(dir)
	if err != nil {
		return 0
	}
	defer d.Close()
	var lag int64
	for {
		names, err := d.Readdirnames(1024)
		for _, name := range names {
			task, stream, idx, ok := enrich.ParseLogFileName(name)
			if !ok || task != e.Task || stream != e.Stream || idx < e.FileIndex {
				continue
			}
			f, err := root.OpenFile(dir + "/" + name)
			if err != nil {
				continue
			}
			size := fileSize(f)
			f.Close()
			if idx == e.FileIndex {
				size -= e.Offset
			}
			lag += max(size, 0)
		}
		if err != nil {
			break
		}
	}
	return lag
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
		"Bytes in task log files not yet confirmed forwarded, summed over all streams.", nil, nil)}
}

func (c *lagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *lagCollector) Collect(ch chan<- prometheus.Metric) {
	var total int64
	for _, e := range c.cp.Entries() {
		if !e.Finished {
			total += LagBytes(c.root, e)
		}
	}
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(total))
}
