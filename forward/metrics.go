package forward

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the writer's counters. NewMetrics(nil) gives working metrics
// that are registered nowhere, for tests.
type Metrics struct {
	BytesWritten prometheus.Counter
	LinesWritten prometheus.Counter
	WriteErrors  prometheus.Counter
	DialErrors   prometheus.Counter
	Connects     prometheus.Counter
	Connected    prometheus.Gauge
}

// NewMetrics creates the writer's metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		BytesWritten: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nlf_output_bytes_total", Help: "Bytes of rendered lines accepted by the output."}),
		LinesWritten: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nlf_output_lines_total", Help: "Lines accepted by the output."}),
		WriteErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nlf_output_errors_total", Help: "Failed writes to the output; their lines are resent."}),
		DialErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nlf_output_dial_errors_total", Help: "Failed attempts to connect to the output."}),
		Connects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nlf_output_connects_total", Help: "Connections made to the output (reconnects are connects after the first)."}),
		Connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "nlf_output_connected", Help: "1 while the output is connected."}),
	}
	if reg != nil {
		reg.MustRegister(m.BytesWritten, m.LinesWritten, m.WriteErrors, m.DialErrors, m.Connects, m.Connected)
	}
	return m
}
