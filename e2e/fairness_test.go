package e2e_test

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/e2e"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/logmon"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/recv"
)

// One stream writing as fast as it can must not starve 50 quiet ones: the
// quiet streams' lines keep arriving within a second of being written.
func TestAChattyStreamDoesNotStarveQuietOnes(t *testing.T) {
	allocDir := t.TempDir()
	r, err := recv.Listen("")
	require.NoError(t, err)
	defer r.Stop()
	r.KeepOnlyMatching(`"message":"quiet `) // the flood is counted, not kept

	chattyDir, err := logmon.AllocLogDir(allocDir, "cccccccc-0000-0000-0000-000000000000")
	require.NoError(t, err)
	chatty, err := logmon.New(chattyDir, "flood", "stdout", logmon.Options{MaxFiles: 1000, FileSize: 4 << 20})
	require.NoError(t, err)
	defer chatty.Close()
	var quiet []*logmon.Rotator
	for i := range 50 {
		dir, err := logmon.AllocLogDir(allocDir, fmt.Sprintf("dddddddd-0000-0000-0000-%012d", i))
		require.NoError(t, err)
		rot, err := logmon.New(dir, "quiet", "stdout", logmon.Options{})
		require.NoError(t, err)
		defer rot.Close()
		quiet = append(quiet, rot)
	}
	ckpt := filepath.Join(t.TempDir(), "checkpoint.msgpack")
	e2e.Start(t, "run", "--offline", "--alloc-dir", allocDir, "--checkpoint", ckpt, "--output", r.URL(), "--metrics-addr", "")

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		block := []byte(strings.Repeat("flood flood flood flood flood flood flood flood flood flood flood flood\n", 900))
		for {
			select {
			case <-stop:
				return
			default:
				if _, err := chatty.Write(block); err != nil {
					return
				}
			}
		}
	})
	const rounds = 40
	wg.Go(func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for round := range rounds {
			<-tick.C
			for _, q := range quiet {
				fmt.Fprintf(q, "quiet %d %d\n", round, time.Now().UnixNano())
			}
		}
	})
	require.Eventually(t, func() bool { return r.Kept() == rounds*len(quiet) }, 60*time.Second, 10*time.Millisecond)
	close(stop)
	wg.Wait()

	var latencies []time.Duration
	arrivals := r.Arrivals()
	for i, raw := range r.Lines() {
		l := decode(t, [][]byte{raw})[0]
		written, err := strconv.ParseInt(strings.Fields(l.Message)[2], 10, 64)
		require.NoError(t, err)
		latencies = append(latencies, arrivals[i].Sub(time.Unix(0, written)))
	}
	slices.Sort(latencies)
	p99 := latencies[len(latencies)*99/100]
	t.Logf("quiet lines: %d, p50 %v, p99 %v, flood lines delivered meanwhile: %d", len(latencies), latencies[len(latencies)/2], p99, r.Count()-len(latencies))
	assert.Less(t, p99, time.Second)
	assert.Greater(t, r.Count()-len(latencies), 10*len(latencies), "the flood must really compete for the output")
}
