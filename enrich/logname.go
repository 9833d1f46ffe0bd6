package enrich

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// LogDir is the folder of an allocation's log files, relative to the alloc
// dir: <alloc_id>/alloc/logs.
func LogDir(allocID string) string { return allocID + "/alloc/logs" }

// LogFileName is logmon's name for file index of a task stream.
func LogFileName(task, stream string, index int64) string {
	return task + "." + stream + "." + strconv.FormatInt(index, 10)
}

// ParseLogFileName splits "<task>.<stdout|stderr>.<N>". Task names may
// contain dots, so it parses from the right. Hidden files (logmon's
// .<task>.<stream>.fifo) and indexes that logmon would not write (a sign,
// leading zeros, absurd lengths) are not log files.
func ParseLogFileName(name string) (task, stream string, index int64, ok bool) {
	if strings.HasPrefix(name, ".") {
		return "", "", 0, false
	}
	dot := strings.LastIndexByte(name, '.')
	if dot < 0 {
		return "", "", 0, false
	}
	digits := name[dot+1:]
	if len(digits) == 0 || len(digits) > 18 || (len(digits) > 1 && digits[0] == '0') {
		return "", "", 0, false
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return "", "", 0, false
		}
	}
	index, err := strconv.ParseInt(digits, 10, 64)
	if err != nil {
		return "", "", 0, false
	}
	rest := name[:dot]
	switch {
	case strings.HasSuffix(rest, "."+Stdout):
		stream = Stdout
	case strings.HasSuffix(rest, "."+Stderr):
		stream = Stderr
	default:
		return "", "", 0, false
	}
	task = rest[:len(rest)-len(stream)-1]
	if task == "" {
		return "", "", 0, false
	}
	return task, stream, index, true
}

// EachLogFile calls fn for every log file in d, an open log folder (see
// LogDir), in directory order. It reads the folder in chunks, so a folder
// that tasks filled with many thousands of names costs bounded memory.
// Names that are not logmon's (see ParseLogFileName) are skipped; for
// those that are, LogFileName(task, stream, index) is the name again.
func EachLogFile(d *os.File, fn func(task, stream string, index int64)) error {
	for {
		names, err := d.Readdirnames(1024)
		for _, name := range names {
			if task, stream, index, ok := ParseLogFileName(name); ok {
				fn(task, stream, index)
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("list log folder %s: %w", d.Name(), err)
		}
	}
}
