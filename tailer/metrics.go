package tailer

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/enrich"
)

// Metrics are the tailer's. Per-line counters are labelled by namespace and
// job only, so their cardinality stays bounded however many allocations
// come and go. NewMetrics(nil) gives metrics registered nowhere.
type Metrics struct {
	LinesRead      *prometheus.CounterVec
	BytesRead      *prometheus.CounterVec
	LinesForwarded *prometheus.CounterVec
	BytesForwarded *prometheus.CounterVec
	LinesTruncated prometheus.Counter
	// LinesThrottled counts task lines dropped over their rate limit, once
	// the record that says so was confirmed.
	LinesThrottled *prometheus.CounterVec
	FilesSkipped   prometheus.Counter
	FilesTruncated prometheus.Counter
	FilesRefused   prometheus.Counter
	FilesDropped   prometheus.Counter
	BytesRefused   prometheus.Counter
	HeldFiles      prometheus.Gauge
	HeldBytes      prometheus.Gauge
	TargetsActive  prometheus.Gauge
	TargetsDrain   prometheus.Gauge
	// EventsForwarded counts task event records the output confirmed.
	EventsForwarded prometheus.Counter
}

// NewMetrics creates the tailer's metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	labels := []string{"namespace", "job"}
	m := &Metrics{
		LinesRead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nlf_lines_read_total", Help: "Lines read from task log files and handed to the output (resent lines count again)."}, labels),
		BytesRead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nlf_bytes_read_total", Help: "Bytes read from task log files."}, labels),
		LinesForwarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nlf_lines_forwarded_total", Help: "Lines the output confirmed written."}, labels),
		BytesForwarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nlf_bytes_forwarded_total", Help: "Bytes of rendered lines the output confirmed written."}, labels),
		LinesThrottled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nlf_lines_throttled_total", Help: "Task lines dropped over their log_forwarder_rate_limit, counted when the record that reports them is confirmed (delivered + throttled = written)."}, labels),
		LinesTruncated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nlf_lines_truncated_total", Help: "Lines longer than --max-line-bytes, emitted truncated."}),
		FilesSkipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nlf_files_skipped_total", Help: "Log files deleted (purged by logmon, or with their alloc dir) before they could be opened: their lines are lost."}),
		FilesTruncated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nlf_files_truncated_total", Help: "Log files found shorter than the read offset and read again from the start."}),
		FilesRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nlf_files_refused_total", Help: "Symlinks, hard-linked and non-regular files found where log files or folders should be, never read."}),
		FilesDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nlf_files_dropped_total", Help: "Purged log files the daemon held but gave up before reading them to their end, because --max-held-files or --max-held-bytes was reached: their unread lines are lost."}),
		BytesRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nlf_bytes_refused_total", Help: "Bytes of log files never read: holes of sparse files (logmon never writes one)."}),
		HeldFiles: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "nlf_held_files", Help: "Log files the daemon holds open (bounded by --max-held-files)."}),
		HeldBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "nlf_held_bytes", Help: "Bytes in log files the daemon holds open that are no longer in their folder (purged by logmon): disk space only the daemon keeps in use (bounded by --max-held-bytes)."}),
		EventsForwarded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nlf_task_events_forwarded_total", Help: "Task event records (stream \"event\") the output confirmed."}),
		TargetsActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "nlf_targets_active", Help: "Task streams being tailed."}),
		TargetsDrain: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "nlf_targets_draining", Help: "Task streams whose allocation stopped, being drained."}),
	}
	if reg != nil {
		reg.MustRegister(m.LinesRead, m.BytesRead, m.LinesForwarded, m.BytesForwarded, m.LinesThrottled, m.LinesTruncated,
			m.FilesSkipped, m.FilesTruncated, m.FilesRefused, m.FilesDropped, m.BytesRefused, m.HeldFiles, m.HeldBytes,
			m.TargetsActive, m.TargetsDrain, m.EventsForwarded)
	}
	return m
}

// streamMetrics are a stream's counters, with its labels resolved once.
type streamMetrics struct {
	linesRead, bytesRead, linesForwarded, bytesForwarded prometheus.Counter
	linesThrottled                                       prometheus.Counter
	linesTruncated, filesSkipped, filesTruncated         prometheus.Counter
	filesRefused, filesDropped, bytesRefused             prometheus.Counter
}

// jobLabels are the labels of a job's series.
type jobLabels struct{ namespace, job string }

func jobOf(meta enrich.Meta) jobLabels {
	job := meta.JobName
	if job == "" {
		job = meta.JobID
	}
	return jobLabels{meta.Namespace, job}
}

// forgetJob deletes a job's series, once it has no stream left.
func (m *Metrics) forgetJob(l jobLabels) {
	for _, v := range []*prometheus.CounterVec{m.LinesRead, m.BytesRead, m.LinesForwarded, m.BytesForwarded, m.LinesThrottled} {
		v.DeleteLabelValues(l.namespace, l.job)
	}
}

func (m *Metrics) forStream(meta enrich.Meta) *streamMetrics {
	l := jobOf(meta)
	return &streamMetrics{
		linesRead:      m.LinesRead.WithLabelValues(l.namespace, l.job),
		bytesRead:      m.BytesRead.WithLabelValues(l.namespace, l.job),
		linesForwarded: m.LinesForwarded.WithLabelValues(l.namespace, l.job),
		bytesForwarded: m.BytesForwarded.WithLabelValues(l.namespace, l.job),
		linesThrottled: m.LinesThrottled.WithLabelValues(l.namespace, l.job),
		linesTruncated: m.LinesTruncated,
		filesSkipped:   m.FilesSkipped,
		filesTruncated: m.FilesTruncated,
		filesRefused:   m.FilesRefused,
		filesDropped:   m.FilesDropped,
		bytesRefused:   m.BytesRefused,
	}
}
