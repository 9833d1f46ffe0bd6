package forward

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Output makes connections to where lines go.
type Output interface {
	// Dial connects. An error wrapping ErrPermanent ends the writer.
	Dial(ctx context.Context) (io.WriteCloser, error)
	String() string
}

// ErrPermanent marks an output error that no retry can heal.
var ErrPermanent = errors.New("output cannot be reopened")

// ParseOutput understands "stdout" (written to stdout), "tcp://HOST:PORT"
// and "unix:///PATH". It only parses, so it can check --output before
// anything starts.
func ParseOutput(spec string, stdout io.Writer) (Output, error) {
	if spec == "" || spec == "stdout" || spec == "-" {
		return &stdoutOutput{w: stdout}, nil
	}
	if !strings.Contains(spec, "://") {
		// "127.0.0.1:9000" does not parse as a URL and "vector:9000"
		// parses as scheme "vector": say what was meant.
		if host, port, err := net.SplitHostPort(spec); err == nil && isDigits(port) {
			return nil, fmt.Errorf("output %q: a bare HOST:PORT is not an output; did you mean tcp://%s?", spec, net.JoinHostPort(host, port))
		}
	}
	u, err := url.Parse(spec)
	if err != nil {
		return nil, fmt.Errorf("parse output %q: %w", spec, err)
	}
	switch u.Scheme {
	case "tcp":
		if u.Host == "" || u.Port() == "" {
			return nil, fmt.Errorf("output %q: want tcp://HOST:PORT", spec)
		}
		if u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return nil, fmt.Errorf("output %q: a tcp:// output is HOST:PORT and nothing else (no path); want tcp://%s", spec, u.Host)
		}
		if err := checkPort(u.Port()); err != nil {
			return nil, fmt.Errorf("output %q: %w", spec, err)
		}
		return &netOutput{network: "tcp", address: u.Host}, nil
	case "unix":
		path := u.Path
		if u.Host != "" { // unix://relative/path
			path = u.Host + u.Path
		}
		if path == "" {
			return nil, fmt.Errorf("output %q: want unix:///PATH", spec)
		}
		return &netOutput{network: "unix", address: path}, nil
	}
	return nil, fmt.Errorf("output %q: unknown scheme %q (want stdout, tcp://HOST:PORT, unix:///PATH, http://HOST:PORT/PATH or https://HOST:PORT/PATH)", spec, strings.TrimSuffix(u.Scheme, ":"))
}

// checkPort accepts a decimal port in 1-65535 (url.Parse lets any digits
// through, and 0 would dial nothing useful).
func checkPort(port string) error {
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %s is outside 1-65535", port)
	}
	return nil
}

func isDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

type netOutput struct {
	network, address string
}

func (o *netOutput) String() string { return o.network + "://" + o.address }

func (o *netOutput) Dial(ctx context.Context) (io.WriteCloser, error) {
	d := net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	c, err := d.DialContext(ctx, o.network, o.address)
	if err != nil {
		return nil, err
	}
	return watchPeer(c), nil
}

// peerConn is a connection whose peer never sends anything: Vector's socket
// source only reads. A read that returns means the peer closed its side (or
// reset); the connection is then closed at once so that the next write
// fails and its lines are resent, instead of vanishing into a socket
// nobody reads any more.
type peerConn struct {
	net.Conn
	done chan struct{}
}

func watchPeer(c net.Conn) *peerConn {
	p := &peerConn{Conn: c, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		var buf [512]byte
		for {
			if _, err := c.Read(buf[:]); err != nil {
				c.Close()
				return
			}
		}
	}()
	return p
}

// NetConn is the connection itself: writing net.Buffers to a
// *net.TCPConn or *net.UnixConn is one writev, while through the embedded
// interface it is one write per buffer. Writes to it still fail once the
// watcher closed it.
func (p *peerConn) NetConn() net.Conn { return p.Conn }

// Close closes the connection and waits for its watcher.
func (p *peerConn) Close() error {
	err := p.Conn.Close()
	<-p.done
	return err
}

// stdoutOutput writes to the process's stdout, which cannot be reopened:
// once a write to it fails (the reader went away), the writer stops.
type stdoutOutput struct {
	w      io.Writer
	broken bool
}

func (o *stdoutOutput) String() string { return "stdout" }

func (o *stdoutOutput) Dial(context.Context) (io.WriteCloser, error) {
	if o.broken {
		return nil, fmt.Errorf("stdout: %w", ErrPermanent)
	}
	o.broken = true // a second Dial only happens after a failed write
	return nopCloser{o.w}, nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
