package e2e_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/e2e"
)

// The node keys come from the captured agent (config.Region "global") and
// node (NodePool "default", NodeClass "", Meta connect.*), once per stream.
func TestNodeKeysAndNodeMetaFlag(t *testing.T) {
	w := newWorld(t)
	code, _, stderr := e2e.Run(t, 30*time.Second, "run", "--once", "--nomad-addr", w.api.URL(), "--alloc-dir", w.allocDir,
		"--checkpoint", w.ckpt, "--output", w.recv.URL(), "--node-meta", "connect.log_level", "--node-meta", "rack",
		"--task-events=false")
	require.Equal(t, 0, code, stderr)
	require.Eventually(t, func() bool { return w.recv.Open() == 0 }, 10*time.Second, time.Millisecond)
	assert.Contains(t, stderr, "this node has no such meta key", "--node-meta rack: the node has none")
	lines := w.recv.Lines()
	require.NotEmpty(t, lines)
	for _, raw := range lines {
		var l struct {
			Nomad map[string]any `json:"nomad"`
		}
		require.NoError(t, json.Unmarshal(raw, &l), "%s", raw)
		assert.Equal(t, "global", l.Nomad["region"])
		assert.Equal(t, "default", l.Nomad["node_pool"])
		assert.NotContains(t, l.Nomad, "node_class")
		assert.Equal(t, map[string]any{"connect.log_level": "info"}, l.Nomad["node_meta"])
		assert.NotContains(t, l.Nomad, "restarts", "no task of the fixture restarted")
	}

	code, _, stderr = e2e.Run(t, 10*time.Second, "run", "--once", "--task-events=maybe")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "task-events")
}
