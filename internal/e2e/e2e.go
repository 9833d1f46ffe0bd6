// Package e2e runs the built nomad-log-forwarder binary the way a user
// does, for the end-to-end tests, the fault suite and the benchmarks.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildMu sync.Mutex
	built   = map[string]*buildResult{}
)

type buildResult struct {
	path string
	err  error
}

// Binary builds the forwarder once per test process and returns its path.
// NLF_BINARY, when set, names a binary to use instead.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("NLF_BINARY"); p != "" {
		return p
	}
	return Build(t, "./cmd/nomad-log-forwarder")
}

// Build builds the main package pkg (relative to the module root, like
// "./bench/ideal") once per test process and returns the binary's path.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	r, ok := built[pkg]
	if !ok {
		r = build(pkg)
		built[pkg] = r
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.path
}

// Main runs a package's tests and then removes the binaries Build made, so
// that no build folder is left in $TMPDIR. A package whose tests use Build
// or Binary calls it from TestMain: os.Exit(e2e.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	buildMu.Lock()
	defer buildMu.Unlock()
	for pkg, r := range built {
		if r.path != "" {
			os.RemoveAll(filepath.Dir(r.path))
		}
		delete(built, pkg)
	}
	return code
}

func build(pkg string) *buildResult {
	dir, err := os.MkdirTemp("", "nlf-bin-")
	if err != nil {
		return &buildResult{err: err}
	}
	// Tests may run the binary as another user.
	if err := os.Chmod(dir, 0o755); err != nil {
		return &buildResult{err: err}
	}
	path := filepath.Join(dir, filepath.Base(pkg))
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	cmd := exec.Command("go", "build", "-o", path, pkg)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return &buildResult{err: fmt.Errorf("go build %s: %v\n%s", pkg, err, out)}
	}
	return &buildResult{path: path}
}

// Process is one run of the binary.
type Process struct {
	cmd    *exec.Cmd
	stdout *syncBuffer
	stderr *syncBuffer
	done   chan struct{}
	err    error
}

// Start runs the binary with args.
func Start(t testing.TB, args ...string) *Process {
	t.Helper()
	return StartAs(t, nil, args...)
}

// StartAs runs the binary with args as the user cred names (nil: as this
// process).
func StartAs(t testing.TB, cred *syscall.Credential, args ...string) *Process {
	t.Helper()
	p := &Process{stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(Binary(t), args...)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if cred != nil {
		p.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("stderr of %v:\n%s", args, tail(p.stderr.String(), 4000))
		}
	})
	return p
}

// Run runs the binary to completion and returns its exit code, stdout and
// stderr; it fails the test if the run takes longer than timeout.
func Run(t testing.TB, timeout time.Duration, args ...string) (int, string, string) {
	t.Helper()
	p := Start(t, args...)
	code, err := p.Wait(timeout)
	if err != nil {
		t.Fatalf("%v: %v\nstderr:\n%s", args, err, tail(p.Stderr(), 4000))
	}
	return code, p.Stdout(), p.Stderr()
}

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Signal sends sig.
func (p *Process) Signal(sig syscall.Signal) error { return p.cmd.Process.Signal(sig) }

// Kill sends SIGKILL and waits for the process to be gone.
func (p *Process) Kill() {
	p.cmd.Process.Kill()
	<-p.done
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Wait waits up to timeout for the exit and returns the exit code.
func (p *Process) Wait(timeout time.Duration) (int, error) {
	select {
	case <-p.done:
	case <-time.After(timeout):
		return -1, fmt.Errorf("still running after %s", timeout)
	}
	if p.err == nil {
		return 0, nil
	}
	if ee, ok := p.err.(*exec.ExitError); ok {
		return ee.ExitCode(), nil
	}
	return -1, p.err
}

// Stdout and Stderr return what the process printed so far.
func (p *Process) Stdout() string { return p.stdout.String() }
func (p *Process) Stderr() string { return p.stderr.String() }

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// Eventually polls cond until it holds or timeout passes.
func Eventually(ctx context.Context, timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(5 * time.Millisecond):
		}
	}
	return cond()
}

// CopyDir copies a folder tree (regular files and folders only).
func CopyDir(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if info.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}
