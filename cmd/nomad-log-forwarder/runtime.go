package main

import (
	"fmt"
	"strconv"
)

// memoryLimitShare is the part of the task's memory limit given to Go's
// heap as a soft limit: the rest covers what the runtime does not count
// (the binary, thread stacks, the kernel's page cache is not ours).
const memoryLimitShare = 0.9

// nomadMemoryLimit reads the memory limit Nomad gives the task, in bytes:
// NOMAD_MEMORY_MAX_LIMIT (memory_max, the cgroup's hard limit under
// oversubscription) when set, else NOMAD_MEMORY_LIMIT, both in MiB. Go's
// collector knows nothing of the cgroup: without a soft limit it lets the
// heap grow to twice what is live before it collects, and a forwarder on
// a node with thousands of streams is killed for memory instead of
// collecting a little more often. ok is false when neither is set, or
// GOMEMLIMIT is (the runtime reads that one itself).
func nomadMemoryLimit(getenv func(string) string) (limit int64, ok bool, err error) {
	if getenv("GOMEMLIMIT") != "" {
		return 0, false, nil
	}
	for _, name := range []string{"NOMAD_MEMORY_MAX_LIMIT", "NOMAD_MEMORY_LIMIT"} {
		v := getenv(name)
		if v == "" || v == "0" {
			continue
		}
		mib, err := strconv.ParseInt(v, 10, 64)
		if err != nil || mib < 0 || mib > 1<<30 {
			return 0, false, fmt.Errorf("%s=%q is not a memory size in MiB; no soft memory limit is set", name, v)
		}
		return int64(float64(mib<<20) * memoryLimitShare), true, nil
	}
	return 0, false, nil
}

// spareProcessor gives the runtime one processor more than it chose (the
// CPUs, or the cgroup's CPU limit), unless GOMAXPROCS is set. Under a
// burst logmon can create and purge a 1 MiB file within 15 ms; the
// watcher that opens it must get a processor at once, and with every one
// busy reading (and the writer's thread) it waited for a preemption: run
// alone, the chaos suite's burst-fast lost a file or two in 3 runs of 10.
// With a spare one it lost none in 6, for 4-7% more CPU in make bench's
// many-streams.
func spareProcessor(getenv func(string) string, current int) (int, bool) {
	if getenv("GOMAXPROCS") != "" {
		return 0, false
	}
	return current + 1, true
}
