package tailer

import (
	"sync"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/taskstream"
)

// streamLog is a stream's logger: the daemon's, with the stream's
// alloc_id, task and stream fields, made on first use. zap encodes a
// logger's fields when the logger is made (With): about 2 KiB a stream,
// 11 MB of heap at 5,000 streams (twice that in RSS at the default GOGC),
// for loggers that most streams never use. Safe for concurrent use.
type streamLog struct {
	base *zap.Logger
	id   taskstream.ID
	once sync.Once
	l    *zap.Logger
}

func newStreamLog(base *zap.Logger, id taskstream.ID) *streamLog {
	return &streamLog{base: base, id: id}
}

func (s *streamLog) logger() *zap.Logger {
	s.once.Do(func() {
		s.l = s.base.With(zap.String("alloc_id", s.id.AllocID), zap.String("task", s.id.Task), zap.String("stream", s.id.Stream))
	})
	return s.l
}

// Each level asks the daemon's logger first whether it would write at
// all, so that a message below --log-level never makes the logger.
func (s *streamLog) Debug(msg string, fields ...zap.Field) { s.log(zapcore.DebugLevel, msg, fields) }
func (s *streamLog) Info(msg string, fields ...zap.Field)  { s.log(zapcore.InfoLevel, msg, fields) }
func (s *streamLog) Warn(msg string, fields ...zap.Field)  { s.log(zapcore.WarnLevel, msg, fields) }
func (s *streamLog) Error(msg string, fields ...zap.Field) { s.log(zapcore.ErrorLevel, msg, fields) }

func (s *streamLog) log(level zapcore.Level, msg string, fields []zap.Field) {
	if !s.base.Core().Enabled(level) {
		return
	}
	s.logger().Log(level, msg, fields...)
}
