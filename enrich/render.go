package enrich

import (
	"bytes"
	"encoding/binary"
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
	// nomadPart is `,"nomad":{…}}` followed by the newline. Its exact
	// size: a node with 5,000 streams holds 5,000 of them.
	nomadPart []byte
}

// NewRenderer renders meta once for every line of the target's stream.
func NewRenderer(stream string, meta Meta) *Renderer {
	r := &Renderer{stream: stream}
	r.SetMeta(meta)
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
		dst = append(dst, `,"truncated":true`...)
	}
	return append(dst, r.nomadPart...)
}

// SetMeta renders meta for the lines that follow, as NewRenderer did: a
// listing that changed the metadata (a task restarted) changes it here,
// once, not per line.
func (r *Renderer) SetMeta(meta Meta) {
	r.nomadPart = bytes.Clone(append(appendNomad([]byte(`,"nomad":`), meta), "}\n"...))
}

// appendNomad renders the nomad object. Keys come in a fixed order; what
// is unknown or unset is left out.
func appendNomad(b []byte, m Meta) []byte {
	o := object{b: append(b, '{')}
	o.str("namespace", m.Namespace)
	o.str("region", m.Region)
	o.str("node_id", m.NodeID)
	o.str("node_name", m.NodeName)
	o.str("node_pool", m.NodePool)
	o.str("node_class", m.NodeClass)
	o.str("datacenter", m.Datacenter)
	o.str("job_id", m.JobID)
	o.str("job_name", m.JobName)
	o.str("job_type", m.JobType)
	o.str("parent_job_id", m.ParentJobID)
	o.flag("dispatched", m.Dispatched)
	o.flag("periodic_child", m.PeriodicChild)
	o.str("group_name", m.GroupName)
	o.str("task_name", m.TaskName)
	if m.TaskLifecycle != "" {
		o.str("task_lifecycle", m.TaskLifecycle)
		o.flag("task_sidecar", m.TaskSidecar)
	}
	o.str("alloc_id", m.AllocID)
	o.str("alloc_name", m.AllocName)
	if m.AllocIndex != nil {
		o.int("alloc_index", int64(*m.AllocIndex))
	}
	if m.Restarts > 0 {
		o.key("restarts")
		o.b = strconv.AppendUint(o.b, m.Restarts, 10)
	}
	o.strings("meta", m.Extra, true)
	o.strings("node_meta", m.NodeMeta, true)
	return append(o.b, '}')
}

// object appends the members of a JSON object whose '{' is written.
type object struct {
	b    []byte
	some bool
}

func (o *object) key(k string) {
	if o.some {
		o.b = append(o.b, ',')
	}
	o.some = true
	o.b = appendString(o.b, k)
	o.b = append(o.b, ':')
}

// str appends a string member, unless value is empty.
func (o *object) str(k, value string) {
	if value != "" {
		o.key(k)
		o.b = appendString(o.b, value)
	}
}

// flag appends k:true, or nothing when v is false.
func (o *object) flag(k string, v bool) {
	if v {
		o.key(k)
		o.b = append(o.b, "true"...)
	}
}

func (o *object) int(k string, v int64) {
	o.key(k)
	o.b = strconv.AppendInt(o.b, v, 10)
}

// strings appends m as an object of strings with sorted keys. With
// omitEmpty, empty values are left out, and so is an object left empty.
func (o *object) strings(k string, m map[string]string, omitEmpty bool) {
	keys := make([]string, 0, len(m))
	for key, v := range m {
		if v != "" || !omitEmpty {
			keys = append(keys, key)
		}
	}
	if len(keys) == 0 && omitEmpty {
		return
	}
	sort.Strings(keys)
	o.key(k)
	o.b = append(o.b, '{')
	for i, key := range keys {
		if i > 0 {
			o.b = append(o.b, ',')
		}
		o.b = appendString(o.b, key)
		o.b = append(o.b, ':')
		o.b = appendString(o.b, m[key])
	}
	o.b = append(o.b, '}')
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

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// plainWord says whether all eight bytes of x are plain (see plain): no
// byte has its high bit set (UTF-8 must be checked), is below 0x20, or is
// a quote or a backslash. The tests are the exact "has a byte less than
// n" and "has a zero byte" of Bit Twiddling Hacks.
func plainWord(x uint64) bool {
	const quotes, backslashes = ones * '"', ones * '\\'
	hasZero := func(v uint64) uint64 { return (v - ones) & ^v & highs }
	control := (x - ones*0x20) & ^x & highs
	return (x&highs)|control|hasZero(x^quotes)|hasZero(x^backslashes) == 0
}

// AppendEscaped appends s escaped for the inside of a JSON string: quotes,
// backslashes and control characters are escaped, invalid UTF-8 becomes
// U+FFFD (as encoding/json does), everything else is copied in runs.
func AppendEscaped(dst, s []byte) []byte {
	start := 0
	for i := 0; i < len(s); {
		// Eight bytes at a time while none needs a look: this loop was
		// 36% of the daemon's CPU per line in make bench's throughput
		// scenario, a byte at a time.
		if i+8 <= len(s) && plainWord(binary.LittleEndian.Uint64(s[i:])) {
			i += 8
			continue
		}
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
