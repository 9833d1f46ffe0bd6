package enrich

import (
	"encoding/json"
	"unicode/utf8"
)

// validJSON reports whether b is exactly one JSON value in valid UTF-8
// (spaces around it allowed). It is encoding/json.Valid's answer, in one
// tight pass: a JSON line is checked for every line of a stream whose
// format is json, and json.Valid's scanner costs several times more.
func validJSON(b []byte) bool {
	v := validator{b: b}
	return v.valid()
}

func (v *validator) valid() bool {
	v.space()
	if !v.value(0, 0) {
		return false
	}
	v.space()
	return v.i == len(v.b)
}

// jsonObjectLevel checks b, one JSON object in valid UTF-8, and finds its
// level on the way (see levelKeys): one pass for both.
func jsonObjectLevel(b []byte) (ok bool, level []byte) {
	v := validator{b: b, levelRank: len(levelKeys)}
	if !v.valid() {
		return false, nil
	}
	if v.levelEnd == 0 {
		return true, nil
	}
	raw := b[v.levelStart:v.levelEnd]
	if !v.levelEscaped {
		return true, raw
	}
	var s string
	if json.Unmarshal(b[v.levelStart-1:v.levelEnd+1], &s) != nil {
		return true, nil
	}
	return true, []byte(s)
}

// maxDepth bounds nesting, as encoding/json does (10000): beyond, a line
// is not taken for JSON rather than recursed into.
const maxDepth = 10000

type validator struct {
	b []byte
	i int
	// The level found so far: its string's bytes (between the quotes),
	// whether it has escapes, and the rank of its key in levelKeys.
	levelStart, levelEnd int
	levelEscaped         bool
	levelRank            int
	// strEscaped: the last string read had an escape.
	strEscaped bool
}

// Where a level may be: the top object's keys, or "level" in its "log".
const (
	noLevel = iota
	topLevel
	inLog
)

func (v *validator) space() {
	for v.i < len(v.b) {
		switch v.b[v.i] {
		case ' ', '\t', '\n', '\r':
			v.i++
		default:
			return
		}
	}
}

func (v *validator) value(depth, mode int) bool {
	if v.i >= len(v.b) || depth > maxDepth {
		return false
	}
	switch c := v.b[v.i]; {
	case c == '{':
		if depth == 0 && v.levelRank > 0 {
			mode = topLevel
		}
		return v.object(depth+1, mode)
	case c == '[':
		return v.array(depth + 1)
	case c == '"':
		return v.str()
	case c == '-' || '0' <= c && c <= '9':
		return v.number()
	case c == 't':
		return v.literal("true")
	case c == 'f':
		return v.literal("false")
	case c == 'n':
		return v.literal("null")
	}
	return false
}

func (v *validator) literal(s string) bool {
	if len(v.b)-v.i < len(s) || string(v.b[v.i:v.i+len(s)]) != s {
		return false
	}
	v.i += len(s)
	return true
}

func (v *validator) object(depth, mode int) bool {
	v.i++ // {
	v.space()
	if v.i < len(v.b) && v.b[v.i] == '}' {
		v.i++
		return true
	}
	for {
		v.space()
		keyStart := v.i + 1
		if v.i >= len(v.b) || v.b[v.i] != '"' || !v.str() {
			return false
		}
		key := v.b[keyStart : v.i-1]
		v.space()
		if v.i >= len(v.b) || v.b[v.i] != ':' {
			return false
		}
		v.i++
		v.space()
		rank, next := len(levelKeys), noLevel
		switch mode {
		case topLevel:
			for r, k := range levelKeys {
				if string(key) == string(k) {
					rank = r
				}
			}
			if string(key) == "log" {
				next = inLog
			}
		case inLog:
			if string(key) == "level" {
				rank = 3 // log.level
			}
		}
		valueStart := v.i
		if !v.value(depth, next) {
			return false
		}
		if rank < v.levelRank && v.b[valueStart] == '"' {
			v.levelStart, v.levelEnd, v.levelEscaped, v.levelRank = valueStart+1, v.i-1, v.strEscaped, rank
		}
		v.space()
		if v.i >= len(v.b) {
			return false
		}
		switch v.b[v.i] {
		case ',':
			v.i++
		case '}':
			v.i++
			return true
		default:
			return false
		}
	}
}

func (v *validator) array(depth int) bool {
	v.i++ // [
	v.space()
	if v.i < len(v.b) && v.b[v.i] == ']' {
		v.i++
		return true
	}
	for {
		v.space()
		if !v.value(depth, noLevel) {
			return false
		}
		v.space()
		if v.i >= len(v.b) {
			return false
		}
		switch v.b[v.i] {
		case ',':
			v.i++
		case ']':
			v.i++
			return true
		default:
			return false
		}
	}
}

func (v *validator) str() bool {
	v.i++ // "
	v.strEscaped = false
	for v.i < len(v.b) {
		c := v.b[v.i]
		switch {
		case c == '"':
			v.i++
			return true
		case c == '\\':
			v.strEscaped = true
			if v.i+1 >= len(v.b) {
				return false
			}
			switch v.b[v.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				v.i += 2
			case 'u':
				if v.i+6 > len(v.b) {
					return false
				}
				for _, h := range v.b[v.i+2 : v.i+6] {
					if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
						return false
					}
				}
				v.i += 6
			default:
				return false
			}
		case c < 0x20:
			return false
		case c < utf8.RuneSelf:
			v.i++
		default:
			r, size := utf8.DecodeRune(v.b[v.i:])
			if r == utf8.RuneError && size == 1 {
				return false
			}
			v.i += size
		}
	}
	return false
}

func (v *validator) number() bool {
	start := v.i
	if v.b[v.i] == '-' {
		v.i++
	}
	switch {
	case v.i < len(v.b) && v.b[v.i] == '0':
		v.i++
	case v.i < len(v.b) && '1' <= v.b[v.i] && v.b[v.i] <= '9':
		v.digits()
	default:
		return false
	}
	if v.i < len(v.b) && v.b[v.i] == '.' {
		v.i++
		if !v.digits() {
			return false
		}
	}
	if v.i < len(v.b) && (v.b[v.i] == 'e' || v.b[v.i] == 'E') {
		v.i++
		if v.i < len(v.b) && (v.b[v.i] == '+' || v.b[v.i] == '-') {
			v.i++
		}
		if !v.digits() {
			return false
		}
	}
	return v.i > start
}

func (v *validator) digits() bool {
	start := v.i
	for v.i < len(v.b) && '0' <= v.b[v.i] && v.b[v.i] <= '9' {
		v.i++
	}
	return v.i > start
}
