package enrich

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Kinds of Nomad API errors, the values of the "kind" label.
const (
	// ErrKindUnreachable: no connection (refused, DNS, socket missing, reset).
	ErrKindUnreachable = "unreachable"
	// ErrKindTimeout: no complete answer in time.
	ErrKindTimeout = "timeout"
	// ErrKindDenied: 401 or 403, a token without the rights it needs.
	ErrKindDenied = "denied"
	// ErrKindServer: a 5xx status.
	ErrKindServer = "server"
	// ErrKindStatus: any other unexpected status (400, 404, ...).
	ErrKindStatus = "status"
	// ErrKindInvalid: a body that is not the JSON expected, too large, or
	// without X-Nomad-Index.
	ErrKindInvalid = "invalid"
)

// Metrics are discovery's. NewMetrics(nil) gives metrics registered nowhere.
type Metrics struct {
	APIErrors *prometheus.CounterVec
	// LastSync is when the allocations were last listed successfully
	// (unix seconds).
	LastSync    prometheus.Gauge
	Allocations prometheus.Gauge
	Refused     prometheus.Counter
	// LastContact is how long the server that answered the last listing
	// had not heard from the leader: how stale a stale read may be.
	LastContact prometheus.Gauge
}

// NewMetrics creates discovery's metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		APIErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nlf_nomad_api_errors_total",
			Help: "Failed Nomad API requests, by kind: unreachable, timeout, denied, server, status, invalid.",
		}, []string{"kind"}),
		LastSync: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "nlf_nomad_last_sync_timestamp_seconds",
			Help: "When this node's allocations were last listed successfully (unix seconds; 0 = never).",
		}),
		Allocations: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "nlf_nomad_allocations",
			Help: "Allocations the last successful listing returned for this node.",
		}),
		Refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nlf_allocations_refused_total",
			Help: "Allocations whose ID or task names would lead out of the alloc dir, never tailed (counted once each).",
		}),
		LastContact: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "nlf_nomad_last_contact_seconds",
			Help: "How long the Nomad server that answered the last listing had not heard from the leader (0: the leader answered); listings are stale reads.",
		}),
	}
	// Every kind exists from the start, so that a rate over it is defined.
	for _, k := range []string{ErrKindUnreachable, ErrKindTimeout, ErrKindDenied, ErrKindServer, ErrKindStatus, ErrKindInvalid} {
		m.APIErrors.WithLabelValues(k)
	}
	if reg != nil {
		reg.MustRegister(m.APIErrors, m.LastSync, m.Allocations, m.Refused, m.LastContact)
	}
	return m
}
