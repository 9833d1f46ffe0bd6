package tailer

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type framed struct {
	text      string
	offset    int64
	truncated bool
}

// frameAll feeds chunks (each at the next offset of file 0) through a framer
// and flushes it at the end when flush is set.
func frameAll(max int, chunks [][]byte, flush bool) []framed {
	f := framer{max: max}
	var out []framed
	var off int64
	for _, c := range chunks {
		for len(c) > 0 {
			n, l, ok := f.frame(c, Position{Offset: off})
			if ok {
				out = append(out, framed{string(l.data), l.start.Offset, l.truncated})
			}
			c = c[n:]
			off += int64(n)
		}
	}
	if flush {
		if l, ok := f.flush(); ok {
			out = append(out, framed{string(l.data), l.start.Offset, l.truncated})
		}
	}
	return out
}

func TestFramerTable(t *testing.T) {
	cases := []struct {
		name   string
		max    int
		chunks []string
		flush  bool
		want   []framed
	}{
		{"lines", 100, []string{"a\nbb\n"}, false, []framed{{"a", 0, false}, {"bb", 2, false}}},
		{"empty line", 100, []string{"\n\nx\n"}, false, []framed{{"", 0, false}, {"", 1, false}, {"x", 2, false}}},
		{"crlf stripped once", 100, []string{"a\r\n", "b\r\r\n"}, false, []framed{{"a", 0, false}, {"b\r", 3, false}}},
		{"partial held", 100, []string{"abc"}, false, nil},
		{"partial completed across chunks", 100, []string{"ab", "c\nd"}, false, []framed{{"abc", 0, false}}},
		{"partial flushed as is", 100, []string{"x\npartial\r"}, true, []framed{{"x", 0, false}, {"partial\r", 2, false}}},
		{"cr split from lf", 100, []string{"ab\r", "\n"}, false, []framed{{"ab", 0, false}}},
		{"long line truncated", 4, []string{"abcdefgh\nxy\n"}, false, []framed{{"abcd", 0, true}, {"xy", 9, false}}},
		{"long partial truncated early, rest skipped", 4, []string{"abcdef", "ghij", "kl\nok\n"}, false, []framed{{"abcd", 0, true}, {"ok", 13, false}}},
		{"exactly max", 4, []string{"abcd\n"}, false, []framed{{"abcd", 0, false}}},
		{"max plus cr is not long", 4, []string{"ab", "cd\r", "\n"}, false, []framed{{"abcd", 0, false}}},
		{"max plus one across chunks", 4, []string{"ab", "cde\n"}, false, []framed{{"abcd", 0, true}}},
		{"long partial flushed truncated once", 4, []string{"abcdefgh"}, true, []framed{{"abcd", 0, true}}},
		{"long partial under max+1 flushed", 4, []string{"abcde"}, true, []framed{{"abcd", 0, true}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var chunks [][]byte
			for _, c := range tc.chunks {
				chunks = append(chunks, []byte(c))
			}
			assert.Equal(t, tc.want, frameAll(tc.max, chunks, tc.flush))
		})
	}
}

// reference frames a whole stream at once, the obvious way.
func reference(data []byte, max int) []framed {
	var out []framed
	var off int64
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			// An unfinished line is emitted early, truncated, once it is
			// certainly too long (longer than max plus a possible \r).
			if len(data) > max+1 {
				out = append(out, framed{string(data[:max]), off, true})
			}
			return out
		}
		body := data[:i]
		if n := len(body); n > 0 && body[n-1] == '\r' {
			body = body[:n-1]
		}
		if len(body) > max {
			out = append(out, framed{string(body[:max]), off, true})
		} else {
			out = append(out, framed{string(body), off, false})
		}
		off += int64(i + 1)
		data = data[i+1:]
	}
}

// cutAt splits data at the given points.
func cutAt(data []byte, cuts []int) [][]byte {
	var chunks [][]byte
	prev := 0
	for _, c := range cuts {
		if c > prev && c < len(data) {
			chunks = append(chunks, data[prev:c])
			prev = c
		}
	}
	return append(chunks, data[prev:])
}

func TestFramerChunkBoundariesDoNotMatter(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 500 {
		var buf bytes.Buffer
		for range rng.IntN(30) {
			n := rng.IntN(20)
			for range n {
				buf.WriteByte("ab\r\x00é\""[rng.IntN(7)])
			}
			buf.WriteByte('\n')
		}
		data := buf.Bytes()
		max := 1 + rng.IntN(12)
		var cuts []int
		for range rng.IntN(10) {
			cuts = append(cuts, rng.IntN(len(data)+1))
		}
		sortInts(cuts)
		require.Equal(t, reference(data, max), frameAll(max, cutAt(data, cuts), false), "data %q max %d cuts %v", data, max, cuts)
	}
}

func sortInts(a []int) {
	for i := 1; i < len(a); i++ {
		for j := i; j > 0 && a[j] < a[j-1]; j-- {
			a[j], a[j-1] = a[j-1], a[j]
		}
	}
}

func FuzzFramer(f *testing.F) {
	f.Add([]byte("a\nbb\r\nccc"), uint8(3), uint16(2))
	f.Add([]byte("\n\n\n"), uint8(1), uint16(1))
	f.Add([]byte("long line here\nx\n"), uint8(4), uint16(7))
	f.Fuzz(func(t *testing.T, data []byte, max uint8, cut uint16) {
		m := int(max%64) + 1
		want := reference(data, m)
		step := int(cut%32) + 1
		var chunks [][]byte
		for i := 0; i < len(data); i += step {
			chunks = append(chunks, data[i:min(i+step, len(data))])
		}
		got := frameAll(m, chunks, false)
		if fmt.Sprint(want) != fmt.Sprint(got) {
			t.Fatalf("data %q max %d step %d:\nwant %v\ngot  %v", data, m, step, want, got)
		}
	})
}

func TestFramerResume(t *testing.T) {
	f := framer{max: 100}
	at := Position{Index: 3, Offset: 10}
	n, _, ok := f.frame([]byte("abc"), at)
	require.False(t, ok)
	require.Equal(t, 3, n)
	// The unfinished line starts at 10: a restart must read it again.
	assert.Equal(t, at, f.resume(Position{Index: 4, Offset: 0}))
	_, l, ok := f.frame([]byte("d\n"), Position{Index: 4})
	require.True(t, ok)
	assert.Equal(t, "abcd", string(l.data))
	assert.Equal(t, at, l.start, "a line split across files starts in the first one")
	assert.Equal(t, Position{Index: 4, Offset: 2}, f.resume(Position{Index: 4, Offset: 2}))
}
