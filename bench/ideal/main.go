// Command ideal is the yardstick of `make bench`, copied unchanged (but for
// this paragraph) from the project's shared benchmark folder so that a clone
// can run the benchmarks on its own.
//
// ideal: the simplest read-wrap-write loop, the throughput yardstick for log shippers.
//
// It reads one file line by line with a large buffer, wraps every line in the same
// JSON object the peers produce (message, file, static Nomad metadata; message and
// file correctly JSON-escaped, invalid UTF-8 replaced by U+FFFD) and writes the
// newline-delimited JSON to a TCP address through a large buffered writer. It does
// not follow the file: it stops at EOF. On one core this is about as fast as a
// tailer/forwarder of this shape can go.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"unicode/utf8"
)

func main() {
	file := flag.String("file", "", "log file to read")
	addr := flag.String("addr", "127.0.0.1:9000", "tcp host:port of the receiver")
	alloc := flag.String("alloc-id", "6b1f2c3d-0000-4000-8000-000000000001", "alloc_id to put in the metadata")
	bufSize := flag.Int("buf", 1<<20, "read and write buffer size in bytes")
	flag.Parse()
	if *file == "" {
		fmt.Fprintln(os.Stderr, "usage: ideal -file PATH -addr HOST:PORT")
		os.Exit(2)
	}
	f, err := os.Open(*file)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer f.Close()
	conn, err := net.Dial("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer conn.Close()

	// Everything after the message is the same for every line: build it once.
	suffix := []byte(`","file":"`)
	suffix = appendJSONString(suffix, []byte(*file))
	suffix = append(suffix, `","nomad":{"namespace":"default","job_name":"bench","group_name":"g","task_name":"app","alloc_id":"`...)
	suffix = appendJSONString(suffix, []byte(*alloc))
	suffix = append(suffix, "\"}}\n"...)
	prefix := []byte(`{"message":"`)

	r := bufio.NewReaderSize(f, *bufSize)
	w := bufio.NewWriterSize(conn, *bufSize)
	var out []byte
	var long []byte // a line longer than the read buffer, assembled here
	var lines int64
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			long = append(long[:0], line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = r.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		if len(line) > 0 {
			if line[len(line)-1] == '\n' {
				line = line[:len(line)-1]
			}
			out = append(out[:0], prefix...)
			out = appendJSONString(out, line)
			out = append(out, suffix...)
			if _, werr := w.Write(out); werr != nil {
				fmt.Fprintln(os.Stderr, werr)
				os.Exit(1)
			}
			lines++
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	if err := w.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "ideal: sent %d lines\n", lines)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s, escaped for use inside a JSON string (without the quotes).
// Plain printable ASCII is copied in runs; quotes, backslashes and control characters
// are escaped; invalid UTF-8 becomes U+FFFD, as encoding/json does.
func appendJSONString(dst, s []byte) []byte {
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
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
