package chaos_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/fakenomad"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/scenario"
)

// httpConfig runs the HTTP output's scenarios with discovery through the
// fake Nomad API, which lists the scenario streams' allocations.
func httpConfig(t *testing.T, events int) scenario.HTTPConfig {
	t.Helper()
	srv, template := newAPI(t, fakenomad.Options{})
	srv.Put(allocations(template, scenario.HTTPLogmon, scenario.DefaultStreams)...)
	return scenario.HTTPConfig{Events: events, NomadAddr: srv.URL(), NodeID: srv.NodeID()}
}

// minRenderedLine is a lower bound on a rendered line of the HTTP
// scenarios, to turn request sizes into lines.
const minRenderedLine = 250

// http-receiver-crash: the fake http_server source crashes with requests
// on their way (every unanswered request is dropped) and comes back. The
// HTTP output is at-least-once end to end: nothing is missing; a crash can
// make the receiver accept again at most the requests on their way.
func TestHTTPReceiverCrash(t *testing.T) {
	cfg := httpConfig(t, pick(5, 20))
	rep := scenario.HTTPReceiverCrash(t, cfg)
	fmt.Println(rep.Summary())
	require.True(t, rep.OK(), "%s\n%+v", rep.Summary(), rep.PerStream)
	bound := rep.Events * 2 * (64 << 10) / minRenderedLine // --inflight requests of --batch-bytes
	assert.LessOrEqual(t, rep.Duplicates, bound, rep.Summary())
}

// poison-line: lines the receiver refuses on their own (400) are skipped,
// each logged with its file and offset; every other line arrives once.
func TestPoisonLine(t *testing.T) {
	rep := scenario.PoisonLines(t, httpConfig(t, pick(3, 10)))
	fmt.Println(rep.Summary())
	require.True(t, rep.OK(), "%s\n%+v", rep.Summary(), rep.PerStream)
	assert.GreaterOrEqual(t, rep.Events, pick(3, 10))
	assert.Zero(t, rep.PoisonAccepted)
	assert.Equal(t, rep.Events, rep.PoisonLogged, "each skipped line is logged with its file and offset")
	assert.Zero(t, rep.Duplicates)
}
