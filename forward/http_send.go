package forward

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"

	"go.uber.org/zap"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/backoff"
)

// span is a run of whole lines of one batch of a request.
type span struct {
	batch int // index in request.batches
	data  []byte
}

// chunk is what one POST carries: whole lines, in order.
type chunk []span

func (c chunk) bytes() int {
	n := 0
	for _, s := range c {
		n += len(s.data)
	}
	return n
}

func (c chunk) lines() int {
	n := 0
	for _, s := range c {
		n += bytes.Count(s.data, newline)
	}
	return n
}

// oneLine reports whether c holds a single line.
func (c chunk) oneLine() bool {
	if len(c) != 1 {
		return false
	}
	i := bytes.IndexByte(c[0].data, '\n')
	return i < 0 || i == len(c[0].data)-1
}

var newline = []byte{'\n'}

// cut splits c after the last line that ends within limit bytes. head is
// never empty: if even the first line is longer than limit, it is head.
func cut(c chunk, limit int) (head, tail chunk) {
	n := 0
	for k, s := range c {
		if n+len(s.data) <= limit {
			head = append(head, s)
			n += len(s.data)
			continue
		}
		j := bytes.LastIndexByte(s.data[:limit-n], '\n') + 1
		if j == 0 && n == 0 {
			if j = bytes.IndexByte(s.data, '\n') + 1; j == 0 {
				j = len(s.data)
			}
		}
		if j > 0 {
			head = append(head, span{s.batch, s.data[:j]})
		}
		if j < len(s.data) {
			tail = append(tail, span{s.batch, s.data[j:]})
		}
		return head, append(tail, c[k+1:]...)
	}
	return head, nil
}

// chunks cuts c into pieces of at most limit bytes (or one line).
func chunks(c chunk, limit int) []chunk {
	var out []chunk
	for len(c) > 0 {
		var head chunk
		head, c = cut(c, limit)
		out = append(out, head)
	}
	return out
}

// outcome is what became of one chunk.
type outcome int

const (
	outcomeAccepted outcome = iota // 2xx: the receiver has the lines
	outcomeDropped                 // one poison line, skipped
	outcomeSplit                   // send its pieces instead
	outcomeStopped                 // hard stop: not confirmed
)

// send delivers every line of r, splitting on 413 and 400, resending
// whatever the receiver did not take, until all is settled or ctx ends.
func (w *HTTPWriter) send(ctx context.Context, r *request) {
	whole := make(chunk, len(r.batches))
	for i, b := range r.batches {
		whole[i] = span{i, b.Data}
	}
	todo := chunks(whole, int(w.limit.Load()))
	for len(todo) > 0 {
		c := todo[0]
		res, pieces := w.deliver(ctx, c)
		switch res {
		case outcomeStopped:
			return
		case outcomeSplit:
			todo = append(pieces, todo[1:]...)
			continue
		case outcomeDropped:
			r.dropped[c[0].batch]++
		}
		for _, s := range c {
			r.settled[s.batch] += len(s.data)
		}
		todo = todo[1:]
	}
}

// answer classes.
type answer int

const (
	answerAccepted   answer = iota
	answerRetry             // 5xx, 408, 429, no answer: resend as is
	answerSinkReject        // 400 "Contents failed to deliver to sink": resend slowly
	answerBadLines          // other 400: some line cannot be decoded
	answerTooLarge          // 413
	answerConfig            // anything else: a setup problem; resend slowly
)

// sinkRejected is the message of Vector's 400 when a sink refused the
// events for good, as opposed to a body it could not decode.
var sinkRejected = []byte("Contents failed to deliver to sink")

func classify(code int, msg []byte) answer {
	switch {
	case code >= 200 && code < 300:
		return answerAccepted
	case code == http.StatusRequestEntityTooLarge:
		return answerTooLarge
	case code == http.StatusBadRequest && bytes.Contains(msg, sinkRejected):
		return answerSinkReject
	case code == http.StatusBadRequest:
		return answerBadLines
	case code >= 500, code == http.StatusRequestTimeout, code == http.StatusTooManyRequests:
		return answerRetry
	}
	return answerConfig
}

// deliver sends c until the receiver takes it, or it must be split, or its
// single line is skipped as poison, or ctx ends.
func (w *HTTPWriter) deliver(ctx context.Context, c chunk) (outcome, []chunk) {
	body := w.encode(c)
	defer w.bodies.Put(body)
	fast := backoff.Backoff{Min: w.cfg.MinBackoff, Max: w.cfg.MaxBackoff}
	slow := backoff.Backoff{Min: max(w.cfg.MinBackoff, w.cfg.SinkRejectBackoff/60), Max: w.cfg.SinkRejectBackoff}
	for attempt := 1; ; attempt++ {
		code, msg, err := w.post(ctx, body.Bytes())
		if ctx.Err() != nil {
			return outcomeStopped, nil
		}
		var (
			wait   time.Duration
			reason string
		)
		class := answerRetry
		if err == nil {
			class = classify(code, msg)
		}
		switch class {
		case answerAccepted:
			w.dropsSinceAccept.Store(0)
			return outcomeAccepted, nil
		case answerTooLarge:
			size := c.bytes()
			if !c.oneLine() {
				w.lowerLimit(size, code)
				return outcomeSplit, chunks(c, int(w.limit.Load()))
			}
			if w.dropPoison(c, code, msg) {
				return outcomeDropped, nil
			}
			wait, reason = slow.Next(), retryHoldPoison
		case answerBadLines:
			if !c.oneLine() {
				// Bisect: the halves go one after the other, so that the
				// lines keep their order; only single lines are skipped.
				head, tail := cut(c, c.bytes()/2)
				return outcomeSplit, []chunk{head, tail}
			}
			if w.dropPoison(c, code, msg) {
				return outcomeDropped, nil
			}
			wait, reason = slow.Next(), retryHoldPoison
		case answerSinkReject:
			wait, reason = slow.Next(), retrySinkReject
		case answerRetry:
			wait, reason = fast.Next(), retryServerError
		case answerConfig:
			wait, reason = slow.Next(), retryConfig
		}
		if err != nil {
			reason = retryNetwork
		}
		w.cfg.Metrics.WriteErrors.Inc()
		w.cfg.HTTPMetrics.Retries.WithLabelValues(reason).Inc()
		fields := []zap.Field{zap.String("output", w.String()), zap.String("reason", reason), zap.Int("attempt", attempt),
			zap.Duration("retry_in", wait), zap.Int("lines", c.lines())}
		if err != nil {
			fields = append(fields, zap.Error(err))
		} else {
			fields = append(fields, zap.Int("status", code), zap.ByteString("answer", msg))
		}
		switch reason {
		case retryConfig:
			w.cfg.Log.Error("HTTP output refuses requests: check the URL, TLS and --http-header settings; retrying, nothing is lost", fields...)
		case retryHoldPoison:
			w.cfg.Log.Error("receiver refuses lines and accepts nothing else: looks like its configuration, not poison lines; holding the line and retrying", fields...)
		default:
			w.cfg.Log.Warn("HTTP request not confirmed; retrying, nothing is lost", fields...)
		}
		if !backoff.Sleep(ctx, wait) {
			return outcomeStopped, nil
		}
	}
}

// lowerLimit halves the request size limit after a 413 for size bytes.
func (w *HTTPWriter) lowerLimit(size, code int) {
	for {
		cur := w.limit.Load()
		next := max(int64(size/2), 1)
		if next >= cur || w.limit.CompareAndSwap(cur, next) {
			if next < cur {
				w.cfg.HTTPMetrics.RequestLimit.Set(float64(next))
				w.cfg.Log.Warn("receiver refused a request as too large; requests are smaller from now on",
					zap.String("output", w.String()), zap.Int("status", code), zap.Int("refused_bytes", size), zap.Int64("request_limit_bytes", next))
			}
			return
		}
	}
}

// dropPoison skips a single line the receiver refuses, unless the receiver
// has refused too many lines while accepting nothing: then it reports
// false and the line is held.
func (w *HTTPWriter) dropPoison(c chunk, code int, msg []byte) bool {
	if w.dropsSinceAccept.Add(1) > maxDropsWithoutAccept {
		w.dropsSinceAccept.Add(-1)
		return false
	}
	file, offset := lineOrigin(c[0].data)
	w.cfg.HTTPMetrics.PoisonLines.Inc()
	w.cfg.Log.Error("receiver refused a line on its own; skipping it",
		zap.String("file", file), zap.Int64("offset", offset), zap.Int("status", code),
		zap.ByteString("answer", msg), zap.Int("line_bytes", len(c[0].data)))
	return true
}

// lineOrigin finds the "file" and "offset" of a rendered line without a
// full parse (it may not parse: that is why it is logged). In a rendered
// line every quote inside a string is escaped, so `,"file":"` can only be
// the key itself.
func lineOrigin(line []byte) (file string, offset int64) {
	offset = -1
	if i := bytes.Index(line, []byte(`,"file":"`)); i >= 0 {
		rest := line[i+len(`,"file":`):]
		end := 1
		for end < len(rest) && rest[end] != '"' {
			if rest[end] == '\\' {
				end++
			}
			end++
		}
		if end < len(rest) {
			_ = json.Unmarshal(rest[:end+1], &file)
		}
	}
	if i := bytes.Index(line, []byte(`,"offset":`)); i >= 0 {
		rest := line[i+len(`,"offset":`):]
		end := 0
		for end < len(rest) && rest[end] >= '0' && rest[end] <= '9' {
			end++
		}
		if n, err := strconv.ParseInt(string(rest[:end]), 10, 64); err == nil {
			offset = n
		}
	}
	return file, offset
}

// encode gzips the lines of c into a pooled buffer.
func (w *HTTPWriter) encode(c chunk) *bytes.Buffer {
	body := w.bodies.Get().(*bytes.Buffer)
	body.Reset()
	zw := w.gzips.Get().(*gzip.Writer)
	zw.Reset(body)
	for _, s := range c {
		zw.Write(s.data) // a bytes.Buffer does not fail
	}
	zw.Close()
	w.gzips.Put(zw)
	return body
}

// maxAnswer is how much of an answer's body is kept for logs.
const maxAnswer = 512

// post sends one request and returns the status and the start of the
// answer's body, or the error that left it unanswered.
func (w *HTTPWriter) post(ctx context.Context, body []byte) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, fmt.Errorf("make request: %w", err)
	}
	for k, v := range w.cfg.Header {
		req.Header[k] = v
	}
	if host := w.cfg.Header.Get("Host"); host != "" {
		req.Host = host
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	req.Header.Set("Content-Encoding", "gzip")
	start := time.Now()
	w.cfg.HTTPMetrics.BytesSent.Add(float64(len(body)))
	resp, err := w.client.Do(req)
	if err != nil {
		w.cfg.HTTPMetrics.Requests.WithLabelValues("error").Inc()
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			err = fmt.Errorf("no answer within %s: %w", w.cfg.Timeout, err)
		}
		return 0, nil, err
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	msg = w.redact(msg)
	// Read the rest so that the connection can be reused.
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	w.cfg.HTTPMetrics.RequestSeconds.Observe(time.Since(start).Seconds())
	w.cfg.HTTPMetrics.Requests.WithLabelValues(strconv.Itoa(resp.StatusCode)).Inc()
	return resp.StatusCode, msg, nil
}

// redact replaces in an answer every header value the writer sends, and
// every long word of one (a token without its "Bearer "), by [redacted]:
// a receiver that echoes the request back must not put a secret in the
// log.
func (w *HTTPWriter) redact(msg []byte) []byte {
	for _, values := range w.cfg.Header {
		for _, v := range values {
			secrets := append([]string{v}, strings.Fields(v)...)
			for _, s := range secrets {
				if len(s) >= minRedacted {
					msg = bytes.ReplaceAll(msg, []byte(s), redacted)
				}
			}
		}
	}
	return msg
}

// minRedacted is the shortest word of a header value redacted on its own:
// shorter ones ("Bearer", a tenant name) are no secret, and replacing them
// everywhere would garble the answer.
const minRedacted = 8

var redacted = []byte("[redacted]")
