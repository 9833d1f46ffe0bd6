package enrich

import (
	"bytes"
	"encoding/binary"
	"testing"
	"unicode/utf8"
)

// appendEscapedByteWise is AppendEscaped as it was before its eight-byte
// fast path: the reference the fast path must match exactly.
func appendEscapedByteWise(dst, s []byte) []byte {
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

// Every byte value, at every position of a word of plain bytes: the word
// test says plain exactly when the byte is.
func TestAWordIsPlainExactlyWhenEachByteIs(t *testing.T) {
	for pos := range 8 {
		for v := range 256 {
			word := []byte("abcdefgh")
			word[pos] = byte(v)
			want := v < utf8.RuneSelf && plain[v]
			if got := plainWord(binary.LittleEndian.Uint64(word)); got != want {
				t.Fatalf("byte %#x at %d: plainWord = %v, want %v", v, pos, got, want)
			}
		}
	}
	// Two bytes that need a look, side by side: borrows between bytes
	// must not hide either.
	for a := range 256 {
		for b := range 256 {
			word := []byte("ab\x00\x00efgh")
			word[2], word[3] = byte(a), byte(b)
			want := a < utf8.RuneSelf && plain[a] && b < utf8.RuneSelf && plain[b]
			if got := plainWord(binary.LittleEndian.Uint64(word)); got != want {
				t.Fatalf("bytes %#x %#x: plainWord = %v, want %v", a, b, got, want)
			}
		}
	}
}

func FuzzEscapingMatchesTheByteWiseReference(f *testing.F) {
	f.Add([]byte("plain ascii text, longer than a word"))
	f.Add([]byte("0123456\"89abcdef\\x\ty\nz"))
	f.Add([]byte("caf\xc3\xa9 \xe2\x82\xac \xff\xfe bytes, then \x00\x1f\x7f"))
	f.Fuzz(func(t *testing.T, s []byte) {
		if got, want := AppendEscaped([]byte("pre"), s), appendEscapedByteWise([]byte("pre"), s); !bytes.Equal(got, want) {
			t.Fatalf("escaping %q: got %q, want %q", s, got, want)
		}
	})
}
