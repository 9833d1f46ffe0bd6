package enrich

import (
	"bytes"
	"strconv"
)

// RecordOpts say what a record carries beyond a plain line.
type RecordOpts struct {
	Truncated bool
	// Lines is the number of lines of a multiline event (rendered when
	// more than one).
	Lines int
	// JSON: a message that is a JSON object is rendered under "json" too.
	JSON bool
	// DetectLevel: the level is taken from the message (its first word, or
	// a JSON object's level key) into "level".
	DetectLevel bool
}

// AppendRecord appends one record: a line or a multiline event, as
// AppendLine renders it, with "lines", "truncated", "level" and "json"
// as opts says. The message is always the raw text, so nothing is lost
// when the JSON is not what it seems.
//
//	{"timestamp":"…","message":"…","stream":"…","file":"…","offset":12,"lines":3,"level":"error","json":{…},"nomad":{…}}
func (r *Renderer) AppendRecord(dst, timestamp, message []byte, offset int64, opts RecordOpts) []byte {
	dst = append(dst, `{"timestamp":"`...)
	dst = append(dst, timestamp...)
	dst = append(dst, `","message":"`...)
	dst = AppendEscaped(dst, message)
	dst = append(dst, r.filePart...)
	dst = strconv.AppendInt(dst, offset, 10)
	if opts.Lines > 1 {
		dst = append(dst, `,"lines":`...)
		dst = strconv.AppendInt(dst, int64(opts.Lines), 10)
	}
	if opts.Truncated {
		dst = append(dst, `,"truncated":true`...)
	}
	var object, level []byte
	if opts.JSON {
		object, level = jsonObject(message)
	}
	if object == nil && opts.DetectLevel {
		level = textLevel(message)
	}
	if level != nil {
		dst = append(dst, `,"level":"`...)
		dst = appendLower(dst, level)
		dst = append(dst, '"')
	}
	if object != nil {
		dst = append(dst, `,"json":`...)
		dst = append(dst, object...)
	}
	return append(dst, r.nomadPart...)
}

// AppendThrottle appends the record that says a stream dropped lines over
// its rate limit: how many, from which line on (offset in the current
// file), at which limit.
//
//	{"timestamp":"…","message":"nomad-log-forwarder: dropped N lines over the limit of R lines/s","throttled":N,"stream":"…","file":"…","offset":12,"nomad":{…}}
func (r *Renderer) AppendThrottle(dst, timestamp []byte, dropped, limit int, offset int64) []byte {
	dst = append(dst, `{"timestamp":"`...)
	dst = append(dst, timestamp...)
	dst = append(dst, `","message":"nomad-log-forwarder: dropped `...)
	dst = strconv.AppendInt(dst, int64(dropped), 10)
	dst = append(dst, ` lines over the limit of `...)
	dst = strconv.AppendInt(dst, int64(limit), 10)
	dst = append(dst, ` lines/s","throttled":`...)
	dst = strconv.AppendInt(dst, int64(dropped), 10)
	dst = append(dst, r.filePart[1:]...) // `,"stream":…` without the quote that closes a message
	dst = strconv.AppendInt(dst, offset, 10)
	return append(dst, r.nomadPart...)
}

// jsonObject is the message itself when it is one JSON object (spaces
// around it aside) in valid UTF-8, else nil, with its level (nil: none).
func jsonObject(message []byte) (object, level []byte) {
	m := bytes.TrimSpace(message)
	if len(m) < 2 || m[0] != '{' || m[len(m)-1] != '}' {
		return nil, nil
	}
	ok, level := jsonObjectLevel(m)
	if !ok {
		return nil, nil
	}
	return m, level
}

// levelKeys are the keys a JSON line's level is taken from, first first.
var levelKeys = [][]byte{[]byte("level"), []byte("lvl"), []byte("severity"), []byte("log.level"), []byte("@l")}

// textLevels are the words a text line's level is taken from.
var textLevels = []string{"TRACE", "DEBUG", "INFO", "WARN", "WARNING", "ERROR", "FATAL", "PANIC", "CRITICAL"}

// textLevel is the line's first word, when it is a level (any case,
// optionally in brackets: "[ERROR]"), else nil.
func textLevel(line []byte) []byte {
	end := bytes.IndexAny(line, " \t:")
	if end < 0 {
		end = len(line)
	}
	w := line[:end]
	if len(w) > 2 && w[0] == '[' && w[len(w)-1] == ']' {
		w = w[1 : len(w)-1]
	}
	for _, l := range textLevels {
		if len(w) == len(l) && bytes.EqualFold(w, []byte(l)) {
			return w
		}
	}
	return nil
}

// appendLower appends s lowercased and escaped for a JSON string.
func appendLower(dst, s []byte) []byte {
	start := len(dst)
	dst = AppendEscaped(dst, s)
	for i := start; i < len(dst); i++ {
		if c := dst[i]; 'A' <= c && c <= 'Z' {
			dst[i] = c + 'a' - 'A'
		}
	}
	return dst
}
