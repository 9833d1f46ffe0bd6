package telemetry

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHealthzAndMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "nlf_test_total", Help: "x"})
	reg.MustRegister(c)
	c.Add(3)
	var saveErr error
	srv := httptest.NewServer(Handler(reg, []Check{{Name: "checkpoint", Check: func() error { return saveErr }}}))
	defer srv.Close()

	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := get("/healthz")
	assert.Equal(t, http.StatusOK, code)
	var h health
	require.NoError(t, json.Unmarshal([]byte(body), &h))
	assert.Equal(t, "ok", h.Status)

	saveErr = errors.New("disk full")
	code, body = get("/healthz")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	require.NoError(t, json.Unmarshal([]byte(body), &h))
	assert.Equal(t, "disk full", h.Checks["checkpoint"])

	code, body = get("/metrics")
	assert.Equal(t, http.StatusOK, code)
	assert.True(t, strings.Contains(body, "nlf_test_total 3"), body)
}
