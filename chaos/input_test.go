package chaos_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/nomad/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/logmon"
)

// maxLineBytes is the daemon's default --max-line-bytes.
const maxLineBytes = 102400

// shown is the message the daemon renders for a raw line: cut to
// maxLineBytes, every byte of invalid UTF-8 replaced by U+FFFD.
func shown(raw []byte) (msg string, truncated bool) {
	if len(raw) > maxLineBytes {
		raw, truncated = raw[:maxLineBytes], true
	}
	var b strings.Builder
	for len(raw) > 0 {
		r, size := utf8.DecodeRune(raw)
		b.WriteRune(r) // utf8.RuneError for an invalid byte, as the daemon
		raw = raw[size:]
	}
	return b.String(), truncated
}

// expectedLines splits what a stream wrote into the lines the daemon must
// emit: one trailing \r stripped from complete lines, and the partial last
// line as it is (emitted when the allocation ends).
func expectedLines(data []byte) (msgs []string, truncated []bool) {
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		line := data
		if i >= 0 {
			line = bytes.TrimSuffix(data[:i], []byte("\r"))
			data = data[i+1:]
		} else {
			data = nil
		}
		m, tr := shown(line)
		msgs, truncated = append(msgs, m), append(truncated, tr)
	}
	return msgs, truncated
}

// outLine is an output line as bad-input checks it.
type outLine struct {
	Message   string `json:"message"`
	Stream    string `json:"stream"`
	Truncated bool   `json:"truncated"`
	Nomad     struct {
		AllocID  string `json:"alloc_id"`
		TaskName string `json:"task_name"`
	} `json:"nomad"`
}

// bad-input: invalid UTF-8, NUL bytes, ANSI escapes, a 10 MiB line, a file
// of random binary, an empty file that never gets a line, and a partial
// last line when the allocation ends. Every output line is valid JSON, the
// long line is truncated and flagged, nothing else is lost, and the daemon
// keeps running.
func TestBadInput(t *testing.T) {
	w := newWorld(t, worldConfig{streams: specs("ok", 2), logmon: logmon.Options{MaxFiles: 50, FileSize: 1 << 20}})
	const badAlloc = "bad00000-0000-4000-8000-000000000001"
	tasks := []string{"weird", "binary", "empty", "partial"}
	w.api.Put(allocation(w.template, badAlloc, 7, w.logmon, tasks...))
	dir := w.allocDir + "/" + badAlloc + "/alloc/logs"
	content := map[string][]byte{}
	for _, task := range tasks {
		for _, stream := range []string{"stdout", "stderr"} {
			rot, err := logmon.New(dir, task, stream, w.logmon)
			require.NoError(t, err)
			t.Cleanup(func() { rot.Close() })
			var data []byte
			switch task + "." + stream {
			case "weird.stdout":
				for _, l := range []string{
					"plain line",
					"invalid utf-8 \xff\xfe here \xc3( and a cut rune \xe2\x82",
					"nul \x00 in \x00 the middle",
					"\x1b[31mred\x1b[0m ansi \x1b]0;title\x07 and \x1b[2J",
					"crlf line\r",
					"tab\tand\vcontrol \x01\x02\x7f chars",
					"\"quotes\" and \\backslashes\\ and </script>",
					"emoji 🙂 and ü",
					strings.Repeat("y", 10<<20), // the 10 MiB line
					"after the long line",
					strings.Repeat("z", maxLineBytes), // exactly the limit: whole
					strings.Repeat("é", maxLineBytes/2+1),
					"",
					"last weird line",
				} {
					data = fmt.Appendf(data, "%s\n", l)
				}
			case "binary.stdout":
				data = make([]byte, 1<<20)
				rng := rand.New(rand.NewPCG(1, 2))
				for i := range data {
					data[i] = byte(rng.Uint32())
				}
			case "partial.stdout":
				data = []byte("first\nsecond\nlast words without a newline")
			case "partial.stderr":
				data = []byte("err one\n")
			}
			if len(data) > 0 {
				_, err := rot.Write(data)
				require.NoError(t, err)
			}
			content[task+"."+stream] = data
		}
	}
	for _, s := range w.streams {
		require.NoError(t, s.Write(100))
	}

	p := w.startDaemon()
	decoded := func() (lines []outLine, invalid int) {
		for _, raw := range w.recv.Lines() {
			var l outLine
			if !json.Valid(raw) || json.Unmarshal(raw, &l) != nil {
				invalid++
				continue
			}
			lines = append(lines, l)
		}
		return lines, invalid
	}
	waitFor(t, 30*time.Second, "the weird stream's last line and the numbered lines", func() bool {
		lines, _ := decoded()
		for _, l := range lines {
			if l.Message == "last weird line" {
				return w.complete()
			}
		}
		return false
	})
	// The allocation ends: partial last lines go out, streams retire.
	require.True(t, w.api.SetClientStatus(badAlloc, api.AllocClientStatusComplete))
	waitFor(t, 30*time.Second, "the ended allocation's streams to retire", func() bool {
		return countLogs(p.Stderr(), "stream drained and retired") == 2*len(tasks)
	})
	// Still running and shipping.
	for _, s := range w.streams {
		require.NoError(t, s.Write(100))
	}
	waitFor(t, 30*time.Second, "lines written after the bad input", w.complete)
	resp, err := http.Get("http://" + w.metrics + "/healthz")
	require.NoError(t, err)
	health, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode, "%s", health)
	select {
	case <-p.Done():
		t.Fatal("the daemon exited")
	default:
	}
	truncatedMetric := w.metric("nlf_lines_truncated_total")
	w.stopDaemon(p)

	rep := w.report("bad-input")
	lines, invalid := decoded()
	got := map[string][]outLine{}
	for _, l := range lines {
		if l.Nomad.AllocID == badAlloc {
			got[l.Nomad.TaskName+"."+l.Stream] = append(got[l.Nomad.TaskName+"."+l.Stream], l)
		}
	}
	flagged := 0
	for name, data := range content {
		want, wantTrunc := expectedLines(data)
		have := got[name]
		counts := map[string]int{}
		for _, l := range have {
			counts[l.Message]++
			if l.Truncated {
				flagged++
			}
		}
		rep.Unparsed -= len(have) // the tally knows only numbered lines
		wanted := map[string]bool{}
		for _, m := range want {
			wanted[m] = true
			rep.Written++
			rep.Expected++
			if counts[m] > 0 {
				rep.DeliveredUnique++
				counts[m]--
			} else {
				rep.Missing++
			}
		}
		for m, n := range counts {
			if wanted[m] {
				rep.Duplicates += n
			} else {
				rep.Unparsed += n // lines nobody wrote
			}
		}
		require.Len(t, have, len(want), "%s: lines out", name)
		for i := range want {
			assert.Equal(t, want[i], have[i].Message, "%s line %d", name, i)
			assert.Equal(t, wantTrunc[i], have[i].Truncated, "%s line %d: truncated flag", name, i)
		}
	}
	rep.Add("invalid_json", invalid)
	rep.Add("torn_lines", w.recv.Partial())
	rep.Add("truncated_flagged", flagged)
	rep.Add("truncated_metric", truncatedMetric)
	rep.Add("longest_input_line_mib", 10)
	fmt.Println(rep.Summary())
	require.True(t, rep.OK(), "%s\n%+v", rep.Summary(), rep.PerStream)
	assert.Zero(t, invalid, "every output line is valid JSON")
	assert.Zero(t, rep.Duplicates)
	assert.Equal(t, 2, flagged, "the 10 MiB line and the line of two-byte runes over the limit")
	assert.Equal(t, float64(flagged), truncatedMetric)
	assert.Empty(t, got["empty.stdout"], "an empty file gives no line")
}
