package tailer

import "bytes"

// Position is a place in a stream: byte Offset of file Index, whose device
// and inode are Dev and Ino.
type Position struct {
	Index  int64
	Offset int64
	Dev    uint64
	Ino    uint64
	// InLongLine: the position is inside a line that was already emitted
	// truncated; reading resumes by skipping to that line's end.
	InLongLine bool
}

// line is one framed line. data is only valid until the next frame call.
type line struct {
	data      []byte
	start     Position
	truncated bool
}

// framer splits a stream's bytes into lines. Its input may be cut anywhere:
// a line can begin in one read (or one file) and end in another. A line is
// complete at its newline; one trailing \r is stripped; a line longer than
// max bytes is emitted truncated to max as soon as that is known, and the
// rest of it is skipped.
type framer struct {
	max int
	// partial holds the first bytes (at most max+1: a trailing \r may still
	// be stripped) of a line whose newline has not been seen.
	partial []byte
	start   Position
	inLine  bool
	// skipping: the current line was already emitted truncated.
	skipping bool
}

// frame consumes data, which begins at position at, up to and including
// its first newline, or all of it when there is none. It returns how many
// bytes it consumed and, when a line is ready, that line.
func (f *framer) frame(data []byte, at Position) (n int, l line, ok bool) {
	i := bytes.IndexByte(data, '\n')
	if i < 0 {
		if f.skipping {
			return len(data), line{}, false
		}
		if !f.inLine {
			f.inLine, f.start, f.partial = true, at, f.partial[:0]
		}
		room := f.max + 1 - len(f.partial)
		if len(data) <= room {
			f.partial = append(f.partial, data...)
			return len(data), line{}, false
		}
		f.partial = append(f.partial, data[:room]...)
		f.skipping = true
		return len(data), line{data: f.partial[:f.max], start: f.start, truncated: true}, true
	}
	n = i + 1
	body := data[:i]
	if f.skipping {
		f.inLine, f.skipping = false, false
		return n, line{}, false
	}
	if !f.inLine {
		body = trimCR(body)
		if len(body) > f.max {
			return n, line{data: body[:f.max], start: at, truncated: true}, true
		}
		return n, line{data: body, start: at}, true
	}
	f.inLine = false
	total := len(f.partial) + len(body)
	room := f.max + 1 - len(f.partial)
	f.partial = append(f.partial, body[:min(len(body), room)]...)
	content := f.partial
	if total <= f.max+1 {
		content = trimCR(content)
	}
	if len(content) > f.max {
		return n, line{data: content[:f.max], start: f.start, truncated: true}, true
	}
	return n, line{data: content, start: f.start}, true
}

// flush ends the stream's current line as it is, without a newline: the
// stream is finished, or the process stops after --once.
func (f *framer) flush() (l line, ok bool) {
	if !f.inLine {
		return line{}, false
	}
	skipped := f.skipping
	f.inLine, f.skipping = false, false
	if skipped {
		return line{}, false
	}
	if len(f.partial) > f.max {
		return line{data: f.partial[:f.max], start: f.start, truncated: true}, true
	}
	return line{data: f.partial, start: f.start}, true
}

// resume is where reading must start again to lose nothing that was not
// emitted: the first byte of an unfinished line, else at. Inside a line
// that was already emitted truncated, it is at, marked InLongLine: the
// rest of that line is skipped after a restart too, and the files it
// spans can be let go (a long line may span more files than a stream may
// hold open).
func (f *framer) resume(at Position) Position {
	switch {
	case f.skipping:
		at.InLongLine = true
		return at
	case f.inLine:
		return f.start
	}
	return at
}

// resumeAt puts the framer where p says: at a line's start, or inside a
// long line whose rest is to be skipped.
func (f *framer) resumeAt(p Position) {
	f.reset()
	if p.InLongLine {
		f.inLine, f.skipping, f.start = true, true, p
	}
}

func (f *framer) reset() {
	f.inLine, f.skipping, f.partial = false, false, f.partial[:0]
}

func trimCR(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\r' {
		return b[:n-1]
	}
	return b
}
