package telemetry

import (
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

func TestBuildInfo(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewBuildInfo("1.2.3"))
	want := `# HELP nlf_build_info Always 1; the labels say which build of nomad-log-forwarder runs.
# TYPE nlf_build_info gauge
nlf_build_info{goversion="` + runtime.Version() + `",version="1.2.3"} 1
`
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(want), "nlf_build_info"))
}
