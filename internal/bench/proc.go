package bench

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// child is a process under measurement: the forwarder or the yardstick.
type child struct {
	name    string
	cmd     *exec.Cmd
	started time.Time
	output  *lockedBuffer
	done    chan struct{}
	err     error
	// peak is the highest VmHWM seen; rssDone closes when trackRSS ends.
	peak    atomic.Int64
	rssDone chan struct{}
}

func startChild(bin string, args ...string) (*child, error) {
	c := &child{name: bin, output: &lockedBuffer{}, done: make(chan struct{}), rssDone: make(chan struct{})}
	c.cmd = exec.Command(bin, args...)
	c.cmd.Stdout, c.cmd.Stderr = c.output, c.output
	c.started = time.Now()
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() {
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	go c.trackRSS()
	return c, nil
}

// trackRSS samples the process's peak RSS until it exits. The wait status
// cannot tell it: os/exec starts a child with vfork, so the child's
// ru_maxrss includes the harness's own RSS at the time of the exec.
func (c *child) trackRSS() {
	defer close(c.rssDone)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if rss, err := peakRSS(c.pid()); err == nil && rss > c.peak.Load() {
			c.peak.Store(rss)
		}
		select {
		case <-c.done:
			return
		case <-tick.C:
		}
	}
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// wait waits for the exit, which must be clean.
func (c *child) wait(timeout time.Duration) error {
	defer func() { <-c.rssDone }()
	select {
	case <-c.done:
	case <-time.After(timeout):
		c.kill()
		return fmt.Errorf("%s still running after %s; killed. Its output ends with:\n%s", c.name, timeout, c.output.tail(2000))
	}
	if c.err != nil {
		return fmt.Errorf("%s: %w. Its output ends with:\n%s", c.name, c.err, c.output.tail(2000))
	}
	return nil
}

// stop sends SIGTERM and waits for a clean exit.
func (c *child) stop() error {
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("stop %s: %w", c.name, err)
	}
	return c.wait(10 * time.Second)
}

// kill ends the process (on a failed scenario) and waits for it.
func (c *child) kill() {
	c.cmd.Process.Kill()
	<-c.done
	<-c.rssDone
}

// usage is the CPU time (user+sys, from the wait status) and the peak RSS
// (sampled every 5 ms) of the exited process.
func (c *child) usage() (cpu time.Duration, peakRSS int64) {
	ru := c.cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), c.peak.Load()
}

// cpuTime is the CPU time (user+sys, all threads) the running process has
// used so far, from /proc/<pid>/stat.
func cpuTime(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read CPU time: %w", err)
	}
	// The command name (field 2) may hold spaces: count from its ")".
	rest := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	if len(rest) < 13 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat: %q", pid, data)
	}
	// rest[0] is field 3 (state); utime and stime are fields 14 and 15.
	utime, err1 := strconv.ParseInt(rest[11], 10, 64)
	stime, err2 := strconv.ParseInt(rest[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("unexpected /proc/%d/stat: %q", pid, data)
	}
	// /proc counts in USER_HZ, which Linux fixes at 100 for user space.
	return time.Duration(utime+stime) * (time.Second / 100), nil
}

// peakRSS is the running process's peak resident set (VmHWM) in bytes.
func peakRSS(pid int) (int64, error) { return procStatus(pid, "VmHWM:") }

// procStatus reads a size in kB from /proc/<pid>/status, in bytes.
func procStatus(pid int, key string) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read %s of process %d: %w", key, pid, err)
	}
	for l := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(l, key); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parse %s %q: %w", key, rest, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", key, pid)
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.b.String()
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
