package forward

import "github.com/prometheus/client_golang/prometheus"

// HTTPMetrics are the HTTP output's own counters, beside the Metrics every
// output keeps. NewHTTPMetrics(nil) gives metrics registered nowhere.
type HTTPMetrics struct {
	// Requests counts answered requests by status code, and requests that
	// got no answer (code "error": connection error or timeout).
	Requests *prometheus.CounterVec
	// Retries counts resends of the same lines, by reason.
	Retries *prometheus.CounterVec
	// PoisonLines counts lines the receiver refused one by one (400 or 413
	// for the line alone): they were skipped, and logged with file and
	// offset.
	PoisonLines prometheus.Counter
	// BytesSent counts compressed request bodies, resends included.
	BytesSent prometheus.Counter
	// RequestSeconds is the time from sending a request to its answer.
	RequestSeconds prometheus.Histogram
	// RequestLimit is the current request size limit (uncompressed): it
	// starts at --batch-bytes and halves on each 413.
	RequestLimit prometheus.Gauge
}

// Retry reasons.
const (
	retryServerError = "server_error"  // 5xx, 408, 429
	retryNetwork     = "network"       // connection error or timeout
	retrySinkReject  = "sink_rejected" // 400 "Contents failed to deliver to sink"
	retryConfig      = "config"        // 401, 403, 404, 415, 3xx...: a setup problem
	retryHoldPoison  = "held_poison"   // a refused line kept because nothing else is accepted
)

// NewHTTPMetrics creates the HTTP output's metrics and registers them with reg.
func NewHTTPMetrics(reg prometheus.Registerer) *HTTPMetrics {
	m := &HTTPMetrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nlf_output_http_requests_total", Help: "HTTP output requests by answer: status code, or \"error\" for none."}, []string{"code"}),
		Retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nlf_output_http_retries_total", Help: "HTTP output resends of the same lines, by reason."}, []string{"reason"}),
		PoisonLines: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nlf_output_http_poison_lines_total", Help: "Lines the receiver refused on their own (400 or 413): skipped and logged with file and offset."}),
		BytesSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nlf_output_http_sent_bytes_total", Help: "Compressed HTTP request bodies sent, resends included."}),
		RequestSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "nlf_output_http_request_duration_seconds", Help: "Time from sending an HTTP output request to its answer.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 9)}),
		RequestLimit: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "nlf_output_http_request_limit_bytes", Help: "Current request size limit before compression (--batch-bytes, halved on each 413)."}),
	}
	if reg != nil {
		reg.MustRegister(m.Requests, m.Retries, m.PoisonLines, m.BytesSent, m.RequestSeconds, m.RequestLimit)
	}
	return m
}
