package enrich

import (
	"sort"
	"strconv"
	"time"
	"unicode/utf8"
)

// Renderer turns the lines of one target into newline-delimited JSON:
//
//	{"timestamp":"…","message":"…","stream":"stdout","file":"…","offset":12,"nomad":{…}}
//
// Everything but the timestamp, the message and the offset is rendered once,
// when the Renderer is made or when the stream moves to another file. A
// Renderer belongs to one stream and is not safe for concurrent use.
type Renderer struct {
	stream string
	// filePart is `","stream":"…","file":"…","offset":` for the current file.
	filePart []byte
	// nomadPart is `,"nomad":{…}}` followed by the newline.
	nomadPart []byte
	// truncatedNomadPart is `,"truncated":true` followed by nomadPart.
	truncatedNomadPart []byte
}

// NewRenderer renders meta once for every line of the target's stream.
func NewRenderer(stream string, meta Meta) *Renderer {
	r := &Renderer{stream: stream}
	r.nomadPart = append(appendNomad(append([]byte(nil), `,"nomad":`...), meta), "}\n"...)
	r.truncatedNomadPart = append([]byte(`,"truncated":true`), r.nomadPart...)
	return r
}

// SetFile renders the file name that the next lines carry.
func (r *Renderer) SetFile(path string) {
	b := append(r.filePart[:0], `","stream":`...)
	b = appendString(b, r.stream)
	b = append(b, `,"file":`...)
	b = appendString(b, path)
	r.filePart = append(b, `,"offset":`...)
}

// AppendTimestamp appends t in UTC as RFC 3339 with nanoseconds, the form
// the timestamp field carries. Callers render it once per read, not per line.
func AppendTimestamp(dst []byte, t time.Time) []byte {
	return t.UTC().AppendFormat(dst, "2006-01-02T15:04:05.000000000Z07:00")
}

// AppendLine appends one rendered line to dst. timestamp comes from
// AppendTimestamp; message is the line without its newline; offset is the
// byte offset of the line's first byte in the current file.
func (r *Renderer) AppendLine(dst, timestamp, message []byte, offset int64, truncated bool) []byte {
	dst = append(dst, `{"timestamp":"`...)
	dst = append(dst, timestamp...)
	dst = append(dst, `","message":"`...)
	dst = AppendEscaped(dst, message)
	dst = append(dst, r.filePart...)
	dst = strconv.AppendInt(dst, offset, 10)
	if truncated {
		return append(dst, r.truncatedNomadPart...)
	}
	return append(dst, r.nomadPart...)
}

func appendNomad(b []byte, m Meta) []byte {
	b = append(b, '{')
	first := true
	field := func(key, value string) {
		if value == "" {
			return
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendString(b, key)
		b = append(b, ':')
		b = appendString(b, value)
	}
	field("namespace", m.Namespace)
	field("node_id", m.NodeID)
	field("node_name", m.NodeName)
	field("datacenter", m.Datacenter)
	field("job_id", m.JobID)
	field("job_name", m.JobName)
	field("job_type", m.JobType)
	field("group_name", m.GroupName)
	field("task_name", m.TaskName)
	field("alloc_id", m.AllocID)
	field("alloc_name", m.AllocName)
	if m.AllocIndex != nil {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, `"alloc_index":`...)
		b = strconv.AppendInt(b, int64(*m.AllocIndex), 10)
	}
	if len(m.Extra) > 0 {
		keys := make([]string, 0, len(m.Extra))
		for k, v := range m.Extra {
			if v != "" {
				keys = append(keys, k)
			}
		}
		if len(keys) > 0 {
			sort.Strings(keys)
			if !first {
				b = append(b, ',')
			}
			first = false
			b = append(b, `"meta":{`...)
			for i, k := range keys {
				if i > 0 {
					b = append(b, ',')
				}
				b = appendString(b, k)
				b = append(b, ':')
				b = appendString(b, m.Extra[k])
			}
			b = append(b, '}')
		}
	}
	return append(b, '}')
}

// appendString appends s as a quoted JSON string.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	b = AppendEscaped(b, []byte(s))
	return append(b, '"')
}

// plain marks the ASCII bytes that go into a JSON string unchanged.
var plain = func() (t [utf8.RuneSelf]bool) {
	for b := 0x20; b < utf8.RuneSelf; b++ {
		t[b] = b != '"' && b != '\\'
	}
	return t
}()

const hexDigits = "0123456789abcdef"

// AppendEscaped appends s escaped for the inside of a JSON string: quotes,
// backslashes and control characters are escaped, invalid UTF-8 becomes
// U+FFFD (as encoding/json does), everything else is copied in runs.
func AppendEscaped(dst, s []byte) []byte {
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if plain[b] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	return append(dst, s[start:]...)
}
