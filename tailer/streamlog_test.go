package tailer

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/taskstream"
)

func TestAStreamsLogCarriesItsFieldsAndCostsNothingUntilUsed(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	l := newStreamLog(zap.New(core), taskstream.ID{AllocID: "a1", Task: "web", Stream: "stdout"})
	l.Debug("below the level")
	assert.Nil(t, l.l, "a message below the level makes no logger")
	assert.Zero(t, logs.Len())

	l.Warn("something", zap.Int("n", 3))
	require.Equal(t, 1, logs.Len())
	e := logs.All()[0]
	assert.Equal(t, zapcore.WarnLevel, e.Level)
	assert.Equal(t, "something", e.Message)
	assert.Equal(t, map[string]any{"alloc_id": "a1", "task": "web", "stream": "stdout", "n": int64(3)}, e.ContextMap())
}
