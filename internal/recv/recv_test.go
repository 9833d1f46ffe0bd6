package recv

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestResetMidLineRecordsWholeLinesAndTearsOne(t *testing.T) {
	r, err := Listen("")
	require.NoError(t, err)
	defer r.Stop()
	c, err := net.Dial("tcp", strings.TrimPrefix(r.URL(), "tcp://"))
	require.NoError(t, err)
	defer c.Close()
	_, err = fmt.Fprintf(c, "one\ntwo\n")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return r.Count() == 2 }, 5*time.Second, time.Millisecond)

	done := make(chan bool)
	go func() { done <- r.ResetMidLine(5 * time.Second) }()
	require.Eventually(t, func() bool { return r.midLine.Load() != nil }, 5*time.Second, time.Millisecond)
	// The read already waiting takes this line whole; the next ones are
	// short.
	_, err = fmt.Fprintf(c, "three\n")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return r.Count() == 3 }, 5*time.Second, time.Millisecond)
	// A line long enough that a read of at most 200 bytes ends inside it.
	_, err = fmt.Fprintf(c, "%s\n", strings.Repeat("x", 1000))
	require.NoError(t, err)
	require.True(t, <-done, "the reset came")
	require.Eventually(t, func() bool { return r.Open() == 0 }, 5*time.Second, time.Millisecond)
	assert.Equal(t, 3, r.Count(), "the torn line is not recorded")
	assert.Equal(t, 1, r.Partial())
	assert.GreaterOrEqual(t, r.HeldAtResets(), int64(800), "the rest of the line was still in the kernel")
	_, err = c.Read(make([]byte, 1))
	assert.Error(t, err, "the sender sees the reset")
}

func TestPauseHoldsReadsUntilResume(t *testing.T) {
	r, err := Listen("")
	require.NoError(t, err)
	defer r.Stop()
	c, err := net.Dial("tcp", strings.TrimPrefix(r.URL(), "tcp://"))
	require.NoError(t, err)
	defer c.Close()
	_, err = fmt.Fprintf(c, "before\n")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return r.Count() == 1 }, 5*time.Second, time.Millisecond)
	r.Pause()
	// The read already waiting completes; the next one waits.
	_, err = fmt.Fprintf(c, "first\n")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return r.Count() == 2 }, 5*time.Second, time.Millisecond)
	_, err = fmt.Fprintf(c, "held\n")
	require.NoError(t, err)
	assert.Never(t, func() bool { return r.Count() > 2 }, 100*time.Millisecond, 5*time.Millisecond)
	r.Resume()
	require.Eventually(t, func() bool { return r.Count() == 3 }, 5*time.Second, time.Millisecond)
	assert.Equal(t, "held", string(r.LinesFrom(2)[0]))
	assert.Nil(t, r.LinesFrom(3))
}
