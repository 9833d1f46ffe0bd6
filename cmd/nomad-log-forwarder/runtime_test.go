package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTheSoftMemoryLimitFollowsTheTasksLimit(t *testing.T) {
	env := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }
	cases := []struct {
		name  string
		env   map[string]string
		limit int64
		ok    bool
		err   bool
	}{
		{name: "outside Nomad", env: nil},
		{name: "memory", env: map[string]string{"NOMAD_MEMORY_LIMIT": "256"}, limit: 256 << 20 * 9 / 10, ok: true},
		{name: "memory_max is the hard limit", env: map[string]string{"NOMAD_MEMORY_LIMIT": "256", "NOMAD_MEMORY_MAX_LIMIT": "512"}, limit: 512 << 20 * 9 / 10, ok: true},
		{name: "memory_max unset reads 0", env: map[string]string{"NOMAD_MEMORY_LIMIT": "256", "NOMAD_MEMORY_MAX_LIMIT": "0"}, limit: 256 << 20 * 9 / 10, ok: true},
		{name: "GOMEMLIMIT wins", env: map[string]string{"NOMAD_MEMORY_LIMIT": "256", "GOMEMLIMIT": "100MiB"}},
		{name: "garbage", env: map[string]string{"NOMAD_MEMORY_LIMIT": "lots"}, err: true},
		{name: "negative", env: map[string]string{"NOMAD_MEMORY_LIMIT": "-5"}, err: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			limit, ok, err := nomadMemoryLimit(env(c.env))
			if c.err {
				require.Error(t, err)
				assert.Contains(t, err.Error(), "NOMAD_MEMORY_LIMIT")
				assert.False(t, ok)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, c.ok, ok)
			assert.InDelta(t, c.limit, limit, 1<<10)
		})
	}
}

func TestOneSpareProcessorUnlessGOMAXPROCSIsSet(t *testing.T) {
	n, ok := spareProcessor(func(string) string { return "" }, 2)
	assert.True(t, ok)
	assert.Equal(t, 3, n)
	_, ok = spareProcessor(func(k string) string {
		if k == "GOMAXPROCS" {
			return "2"
		}
		return ""
	}, 2)
	assert.False(t, ok, "an operator's GOMAXPROCS is kept")
}
