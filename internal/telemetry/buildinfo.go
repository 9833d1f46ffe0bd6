package telemetry

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
)

// NewBuildInfo is the nlf_build_info gauge: always 1, labelled with the
// forwarder's version and the Go version it was built with, so that a
// dashboard can tell which build runs on which node.
func NewBuildInfo(version string) prometheus.Collector {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "nlf_build_info",
		Help: "Always 1; the labels say which build of nomad-log-forwarder runs.",
	}, []string{"version", "goversion"})
	g.WithLabelValues(version, runtime.Version()).Set(1)
	return g
}
