package bench

import (
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// Result of a row.
const (
	Pass   = "PASS"
	Fail   = "FAIL"
	NotRun = "not run"
	Error  = "ERROR"
)

// Row is one line of the table: a figure, the target it must meet (empty
// for figures given for context), what was measured, the yardstick's
// figure and the ratio to it where there is one.
type Row struct {
	Scenario  string
	Metric    string
	Target    string
	Measured  string
	Yardstick string
	Ratio     string
	Result    string
}

// targetRow is a row whose result is Pass when ok.
func targetRow(scenario, metric, target, measured string, ok bool) Row {
	r := Row{Scenario: scenario, Metric: metric, Target: target, Measured: measured, Result: Fail}
	if ok {
		r.Result = Pass
	}
	return r
}

func infoRow(scenario, metric, measured string) Row {
	return Row{Scenario: scenario, Metric: metric, Measured: measured}
}

// WriteTable prints rows as an aligned Markdown table.
func WriteTable(w io.Writer, rows []Row) error {
	header := []string{"scenario", "metric", "target", "measured", "yardstick", "ratio", "result"}
	cells := [][]string{header}
	for _, r := range rows {
		cells = append(cells, []string{r.Scenario, r.Metric, r.Target, r.Measured, r.Yardstick, r.Ratio, r.Result})
	}
	width := make([]int, len(header))
	for _, row := range cells {
		for i, c := range row {
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	var b strings.Builder
	line := func(row []string) {
		for i, c := range row {
			b.WriteString("| ")
			b.WriteString(c)
			b.WriteString(strings.Repeat(" ", width[i]-utf8.RuneCountInString(c)+1))
		}
		b.WriteString("|\n")
	}
	line(header)
	for i := range header {
		b.WriteString("|")
		b.WriteString(strings.Repeat("-", width[i]+2))
	}
	b.WriteString("|\n")
	for _, row := range cells[1:] {
		line(row)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Failed reports whether any row missed its target or could not be measured.
func Failed(rows []Row) bool {
	for _, r := range rows {
		if r.Result == Fail || r.Result == Error {
			return true
		}
	}
	return false
}

func fmtRate(perSecond float64) string {
	switch {
	case perSecond >= 1e6:
		return fmt.Sprintf("%.2f M/s", perSecond/1e6)
	case perSecond >= 1e3:
		return fmt.Sprintf("%.1f k/s", perSecond/1e3)
	}
	return fmt.Sprintf("%.0f /s", perSecond)
}

func fmtMiB(bytes int64) string { return fmt.Sprintf("%.1f MiB", float64(bytes)/(1<<20)) }

func fmtDuration(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%d µs", d.Microseconds())
}

func fmtRatio(r float64) string { return fmt.Sprintf("%.2fx", r) }
