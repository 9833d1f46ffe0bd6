package scenario

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/logmon"
)

func rendered(node, stream string, seq int, file string, offset int) []byte {
	return fmt.Appendf(nil, `{"message":"%s %07d xx","file":%q,"offset":%d,"nomad":{"node_id":%q}}`, stream, seq, file, offset, node)
}

// The checks the end-to-end tests rely on must see what they claim to.
func TestCheckFindsMissingDuplicatesReordersAndKeyProblems(t *testing.T) {
	streams, err := NewStreams(t.TempDir(), DefaultStreams[:1], logmon.Options{})
	require.NoError(t, err)
	defer streams[0].Close()
	s := streams[0]
	s.SetPoison("P", func(seq int) bool { return seq == 4 })
	require.NoError(t, s.Write(6)) // lines 0..5, line 4 poison
	name := s.Name
	line := func(seq int) []byte { return rendered("n1", name, seq, "/f", seq*10) }

	rep := Check("t", [][]byte{line(0), line(1), line(2), line(3), line(5)}, streams)
	assert.True(t, rep.OK(), rep.Summary())
	assert.Equal(t, 6, rep.Written)
	assert.Equal(t, 5, rep.Expected)

	rep = Check("t", [][]byte{line(0), line(1), line(2), line(1), line(2), line(3), line(5)}, streams)
	assert.True(t, rep.OK(), "going back to resend is fine: %s", rep.Summary())
	assert.Equal(t, 2, rep.Duplicates)

	rep = Check("t", [][]byte{line(0), line(2), line(1), line(3), line(5)}, streams)
	assert.Equal(t, 1, rep.OrderViolations, rep.Summary())
	assert.False(t, rep.OK())

	rep = Check("t", [][]byte{line(0), line(1), line(3), line(5)}, streams)
	assert.Equal(t, 1, rep.Missing)
	assert.Equal(t, 2, rep.PerStream[name].FirstMissing)
	assert.False(t, rep.OK())
	assert.Contains(t, rep.Summary(), "scenario=t written=6 delivered_unique=4 missing=1 duplicates=0 ")

	rep = Check("t", [][]byte{line(0), line(1), line(2), line(3), line(4), line(5)}, streams)
	assert.Equal(t, 1, rep.PoisonAccepted)

	rep = Check("t", [][]byte{line(0), line(1), line(2), rendered("n1", name, 3, "/f", 0), line(5)}, streams)
	assert.Equal(t, 1, rep.KeyCollisions, "line 3 with line 0's key")
	rep = Check("t", [][]byte{line(0), line(1), line(2), line(3), rendered("n2", name, 3, "/f", 30), line(5)}, streams)
	assert.Equal(t, 1, rep.KeyMismatches, "two copies of line 3 with different keys")

	rep = Check("t", [][]byte{[]byte("garbage")}, streams)
	assert.Equal(t, 1, rep.Unparsed)
}

// Fed in pieces, a Tally finds what a single Check finds, and says when
// everything, or each stream's last line, has arrived.
func TestTallyIncrementalCompleteCaughtUpAndGaps(t *testing.T) {
	specs := []StreamSpec{{AllocID: "a", Task: "app", Stream: "stdout", Name: "a.out"}, {AllocID: "b", Task: "app", Stream: "stdout", Name: "b.out"}}
	streams, err := NewStreams(t.TempDir(), specs, logmon.Options{})
	require.NoError(t, err)
	for _, s := range streams {
		defer s.Close()
		require.NoError(t, s.WriteEach(6))
		assert.Equal(t, 0, s.FileOf(5))
		assert.Equal(t, -1, s.FileOf(6))
	}
	a := func(seq int) []byte { return rendered("n", "a.out", seq, "/a.0", seq) }
	b := func(seq int) []byte { return rendered("n", "b.out", seq, "/b.0", seq) }

	tally := NewTally(streams)
	tally.Add([][]byte{a(0), a(1), b(0), b(1)})
	assert.False(t, tally.Complete())
	assert.False(t, tally.CaughtUp())
	tally.Add([][]byte{a(3), a(4), a(5), b(2), b(3), b(4), b(5), b(5)})
	assert.True(t, tally.CaughtUp(), "each stream's last line arrived")
	assert.False(t, tally.Complete(), "a.out 2 is missing")
	assert.Equal(t, map[string]int{"a.out": 1}, tally.Gaps())
	rep := tally.Report("t")
	assert.Equal(t, 1, rep.Missing)
	assert.Equal(t, 1, rep.Duplicates)
	assert.Equal(t, 0, rep.OrderViolations, "a lost line is missing, not out of order")
	assert.Equal(t, 11, rep.DeliveredUnique)
	assert.Len(t, tally.Lines(), 12)
	assert.Equal(t, int64(0), tally.Lines()[0].FileIndex())

	tally.Add([][]byte{a(2)})
	assert.True(t, tally.Complete())
	rep = tally.Report("t")
	assert.Equal(t, 1, rep.OrderViolations, "a.out 2 came after its successors")
	all := append(append([][]byte{a(0), a(1), b(0), b(1)}, a(3), a(4), a(5), b(2), b(3), b(4), b(5), b(5)), a(2))
	assert.Equal(t, rep.Summary()[:60], Check("t", all, streams).Summary()[:60])
	rep.Add("extra_key", 7)
	assert.Contains(t, rep.Summary(), "scenario=t written=12 delivered_unique=12 missing=0 duplicates=1 ")
	assert.Contains(t, rep.Summary(), " extra_key=7 ")
}
