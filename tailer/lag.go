package tailer

import (
	"fmt"
	"os"
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/checkpoint"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/enrich"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/safefs"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/taskstream"
)

// LagBytes is how many bytes of e's stream are on disk past its committed
// position: the rest of file e.FileIndex and the files after it that can
// be logmon's, the run of consecutive indexes that starts at the lowest
// index from e.FileIndex on (logmon's files are such a run; a far index
// dropped into the folder is not counted). Nothing is opened but the
// folder; files that are not regular files below the alloc dir count as
// nothing. An error says the folder could not be read: the lag is not
// known, which is not the same as 0.
func LagBytes(root *safefs.Root, e checkpoint.Entry) (int64, error) {
	if enrich.ValidAllocID(e.AllocID) != nil || enrich.ValidPathComponent(e.Task) != nil {
		return 0, fmt.Errorf("checkpoint entry %s names no log folder below the alloc dir", e.Key())
	}
	d, err := root.OpenDir(enrich.LogDir(e.AllocID))
	if err != nil {
		return 0, fmt.Errorf("measure the lag of %s: %w", e.Key(), err)
	}
	defer d.Close()
	all := listFolder(d, func(key string) bool { return key == e.Task+"."+e.Stream })
	return lagIn(d, all[e.Task+"."+e.Stream], e), nil
}

// lagIn sums the lag of e from indexes, its stream's files in d (sorted).
func lagIn(d *os.File, indexes []int64, e checkpoint.Entry) int64 {
	at, _ := slices.BinarySearch(indexes, e.FileIndex)
	var lag int64
	for i := at; i < len(indexes); i++ {
		if i > at && indexes[i] != indexes[i-1]+1 {
			break // not logmon's run any more
		}
		size, err := safefs.SizeIn(d, enrich.LogFileName(e.Task, e.Stream, indexes[i]))
		if err != nil {
			continue
		}
		if indexes[i] == e.FileIndex {
			size -= e.Offset
		}
		lag += max(size, 0)
	}
	return lag
}

// liveStream is what the lag metrics know of a stream the manager runs.
type liveStream struct {
	id             taskstream.ID
	namespace, job string
	// retention is MaxFiles x MaxFileSizeMB of the task's LogConfig in
	// bytes, 0 when unknown.
	retention int64
	log       *streamLog
	// heldPurged is how many bytes of files purged from the folder the
	// stream holds: on disk, not read yet (or not confirmed).
	heldPurged func() int64
}

// streamLag is one measurement.
type streamLag struct {
	s   *liveStream
	lag int64
}

// lagMonitor measures the lag of the streams the manager runs: per
// folder, one listing for all its streams. It warns once per stream when
// the lag passes half of the task's retention: the next files logmon
// purges will be lost. Safe for concurrent use (the manager and the
// metrics scrape both measure).
type lagMonitor struct {
	root *safefs.Root
	cp   Checkpoint

	mu     sync.Mutex
	live   map[taskstream.ID]*liveStream
	warned map[taskstream.ID]bool
}

func newLagMonitor(root *safefs.Root, cp Checkpoint) *lagMonitor {
	return &lagMonitor{root: root, cp: cp, live: make(map[taskstream.ID]*liveStream), warned: make(map[taskstream.ID]bool)}
}

func (m *lagMonitor) add(s *liveStream) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.live[s.id] = s
}

func (m *lagMonitor) remove(id taskstream.ID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.live, id)
	delete(m.warned, id)
}

// measure lists each live stream's folder once and returns every live
// stream's lag, warning about those close to their retention.
func (m *lagMonitor) measure() []streamLag {
	m.mu.Lock()
	byAlloc := make(map[string][]*liveStream)
	for _, s := range m.live {
		byAlloc[s.id.AllocID] = append(byAlloc[s.id.AllocID], s)
	}
	m.mu.Unlock()
	var out []streamLag
	for alloc, streams := range byAlloc {
		d, err := m.root.OpenDir(enrich.LogDir(alloc))
		if err != nil {
			continue // gone (GC) or refused: its streams drain what they hold
		}
		all := listFolder(d, nil)
		for _, s := range streams {
			e, ok := m.cp.Get(s.id)
			if !ok || e.Finished {
				continue
			}
			lag := lagIn(d, all[s.id.Task+"."+s.id.Stream], e) + s.heldPurged()
			out = append(out, streamLag{s: s, lag: lag})
		}
		d.Close()
	}
	m.warn(out)
	return out
}

func (m *lagMonitor) warn(lags []streamLag) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, l := range lags {
		s := l.s
		if s.retention <= 0 || l.lag <= s.retention/2 {
			continue
		}
		if m.warned[s.id] || m.live[s.id] != s {
			continue
		}
		m.warned[s.id] = true
		s.log.Warn("stream lags by more than half of what logmon keeps (max_files x max_file_size): "+
			"the next files it purges will be lost unless the output catches up",
			zap.Int64("lag_bytes", l.lag), zap.Int64("retention_bytes", s.retention))
	}
}

// lagCollector reports the lag at each scrape: nlf_lag_bytes per
// namespace and job, and per stream with its retention.
type lagCollector struct {
	mon                               *lagMonitor
	total, perStream, retentionMetric *prometheus.Desc
}

// NewLagCollector makes the lag gauges of the streams m runs.
func (m *Manager) NewLagCollector() prometheus.Collector {
	// The labels are the task stream's, not the allocation's: two
	// allocations of one job on a node (count > 1) have streams of the
	// same task, and Collect sums them into one series (the same labels
	// twice would fail every scrape).
	stream := []string{"namespace", "job", "task", "stream"}
	return &lagCollector{
		mon: m.lag,
		total: prometheus.NewDesc("nlf_lag_bytes",
			"Bytes in task log files not yet confirmed forwarded, per namespace and job (the streams of the node).", []string{"namespace", "job"}, nil),
		perStream: prometheus.NewDesc("nlf_stream_lag_bytes",
			"Bytes in a task stream's log files not yet confirmed forwarded.", stream, nil),
		retentionMetric: prometheus.NewDesc("nlf_stream_retention_bytes",
			"What logmon keeps of a task stream: max_files x max_file_size of the task's logs block. "+
				"Headroom = retention - lag; time to loss = headroom / write rate.", stream, nil),
	}
}

func (c *lagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.total
	ch <- c.perStream
	ch <- c.retentionMetric
}

func (c *lagCollector) Collect(ch chan<- prometheus.Metric) {
	type taskStream struct{ namespace, job, task, stream string }
	lags, retentions := make(map[taskStream]int64), make(map[taskStream]int64)
	for _, l := range c.mon.measure() {
		k := taskStream{l.s.namespace, l.s.job, l.s.id.Task, l.s.id.Stream}
		lags[k] += l.lag
		retentions[k] += l.s.retention
	}
	type job struct{ namespace, job string }
	totals := make(map[job]int64)
	for k, lag := range lags {
		totals[job{k.namespace, k.job}] += lag
		ch <- prometheus.MustNewConstMetric(c.perStream, prometheus.GaugeValue, float64(lag), k.namespace, k.job, k.task, k.stream)
		if r := retentions[k]; r > 0 {
			ch <- prometheus.MustNewConstMetric(c.retentionMetric, prometheus.GaugeValue, float64(r), k.namespace, k.job, k.task, k.stream)
		}
	}
	for j, lag := range totals {
		ch <- prometheus.MustNewConstMetric(c.total, prometheus.GaugeValue, float64(lag), j.namespace, j.job)
	}
}
