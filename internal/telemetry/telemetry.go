// Package telemetry serves what an operator looks at: Prometheus metrics
// at /metrics and a health verdict at /healthz.
package telemetry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check reports why the daemon is unhealthy, or nil.
type Check struct {
	Name  string
	Check func() error
}

// health is the /healthz body.
type health struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks"`
}

// Handler serves /metrics from reg and /healthz from checks: 200 when
// every check passes, 503 otherwise, with a JSON body saying why.
func Handler(reg prometheus.Gatherer, checks []Check) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		h := health{Status: "ok", Checks: make(map[string]string, len(checks))}
		for _, c := range checks {
			if err := c.Check(); err != nil {
				h.Status = "unhealthy"
				h.Checks[c.Name] = err.Error()
			} else {
				h.Checks[c.Name] = "ok"
			}
		}
		w.Header().Set("Content-Type", "application/json")
		if h.Status != "ok" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		json.NewEncoder(w).Encode(h)
	})
	return mux
}

// Serve listens on addr and serves h until ctx ends.
func Serve(ctx context.Context, addr string, h http.Handler) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen for metrics on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	stop := context.AfterFunc(ctx, func() {
		shutdown, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	})
	defer stop()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve metrics: %w", err)
	}
	return nil
}
