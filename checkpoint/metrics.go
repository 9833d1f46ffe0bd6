package checkpoint

import "github.com/prometheus/client_golang/prometheus"

// Metrics count saves. NewMetrics(nil) gives metrics registered nowhere.
type Metrics struct {
	Saves      prometheus.Counter
	SaveErrors prometheus.Counter
}

// NewMetrics creates the checkpoint's metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Saves: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nlf_checkpoint_saves_total", Help: "Checkpoint files written."}),
		SaveErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nlf_checkpoint_save_errors_total", Help: "Failed checkpoint saves (retried at the next interval)."}),
	}
	if reg != nil {
		reg.MustRegister(m.Saves, m.SaveErrors)
	}
	return m
}
