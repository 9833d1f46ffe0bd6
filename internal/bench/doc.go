// Package bench runs the end-to-end performance scenarios of `make bench`
// against the built forwarder and prints them as one table, one row per
// target. It owns everything around the daemon: the data (log lines on disk,
// live writers that imitate logmon, a saved allocations response, a fake
// Nomad API serving copies of a captured allocation), the peers (a TCP one,
// which counts lines and reads the write time that each line carries, and
// an HTTP one, which gunzips and counts), the daemon's CPU time and peak
// RSS, read from /proc or from the wait status of the child, and what it
// costs the Nomad API (the requests and bytes the fake API served).
//
// CPU figures that depend on the machine are given beside those of the
// yardstick (bench/ideal, the bare read-wrap-write loop), or for the HTTP
// output beside the socket output's, measured in the same invocation, so
// the ratio is what matters on a noisy machine.
//
// Each scenario is one function that returns its rows; adding one is a
// function and a line in scenarios().
package bench
