// Package tailer follows the log files of task streams. A stream is the
// concatenation of <task>.<stream>.0, .1, .2, … in numeric order; the
// package opens each new file the moment it appears (logmon purges old
// ones within milliseconds), reads them in order through descriptors it
// holds, frames lines (carrying a line that logmon split across two files,
// holding a partial last line, truncating overlong ones), renders them with
// enrich's pre-rendered metadata into batches, and hands the batches to the
// output. It never writes to the network.
//
// Who owns what:
//
//	Manager.Run goroutine  the set of streams, their start and retirement, job series
//	stream goroutine       loop and lifecycle (stream.go), its wake-ups and polls
//	                       (wakeups.go); its files: open files, next
//	                       index, gaps and refusals (files.go); its lines (framer.go);
//	                       its window: batch, in-flight slots, epochs, commit (window.go)
//	                       its handling: multiline combiner, rate limit (emit.go,
//	                       throttle.go); what they hold counts in the resume position
//	output goroutine       Written/Failed: commits the batch's position, then acks
//	Watcher.Run goroutine  inotify; tells streams through their notices (notices.go)
//	Budget (mutex)         the descriptors and purged bytes all streams hold
//
// An ack becomes a commit in window.Written, on the output's goroutine,
// before the stream hears of it (commit before ack); a failed batch is a
// verdict (rewind to the commit) that the stream applies at the top of
// its pump, the one place the reader moves back.
//
// Per-task handling (enrich.Handling, from the task's meta) sits between
// the framer and the batch: lines are joined into multiline events,
// dropped over a rate limit, and rendered with their level and JSON
// object. Every key off is the plain path, unchanged. A restart resumes at
// the first line of what is held (an event being built, drops not yet
// reported), so that an event is never split and a gap is always told.
//
// Bounds: the files all streams hold are bounded by a Budget
// (--max-held-files, --max-held-bytes); a stream never follows an index
// beyond the last one it reached plus the task's max_files; memory is
// bounded by the output's batch buffers and one read buffer per stream
// that is actively reading.
//
// Wake-ups come from the Watcher: creations and deletions at once, writes
// in rounds of 25 ms; a slow poll per stream is only the safety net, and
// a folder's streams share one listing of it.
package tailer
