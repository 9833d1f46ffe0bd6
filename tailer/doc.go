// Package tailer follows the log files of task streams. A stream is the
// concatenation of <task>.<stream>.0, .1, .2, … in numeric order; the
// package opens each new file the moment it appears (logmon purges old
// ones within milliseconds), reads them in order through descriptors it
// holds, frames lines (carrying a line that logmon split across two files,
// holding a partial last line, truncating overlong ones), renders them with
// enrich's pre-rendered metadata into batches, and hands the batches to the
// output. It never writes to the network.
//
// One goroutine per stream owns that stream's files and positions. The
// output reports each batch back (Written or Failed); a Written batch's
// position is committed, a Failed one makes the stream rewind to its last
// commit, so nothing read is lost and the checkpoint only ever holds
// positions the output confirmed.
//
// Bounds: a stream holds at most MaxOpenFiles descriptors (the file being
// read, files kept for uncommitted lines, and files opened ahead); memory
// is bounded by the output's batch buffers and one read buffer per stream
// that is actively reading.
//
// Wake-ups come from one inotify instance per process (one watch per alloc
// logs folder), which the Watcher reads in rounds of 25 ms rather than per
// event; a slow poll per stream is only the safety net.
package tailer
