// Package enrich knows everything about Nomad: which task streams exist on
// this node (from the HTTP API, or offline from the alloc dir and a saved
// allocations response), what metadata each one carries, and how a line of
// a stream is rendered as one JSON object.
//
// The API client (NewClient) is the api package's over an HTTP client of
// ours: every response is bounded (the allocations listing is decoded one
// allocation at a time, Client.Allocations), redirects to another origin
// are refused (the token would go along), and a Task API socket whose path
// is too long for a socket address is dialled through its opened folder.
//
// Discovery through the API (Watcher) sends snapshots: after
// every successful listing of the node's allocations, the complete set of
// targets wanted now. The tailer works out what started, stopped or
// vanished; a failed request sends nothing, so an unreachable API changes
// nothing. A Watcher's state belongs to the one goroutine that runs it;
// only LastSync may be called from others. The offline Scanner sends the
// same snapshots from what the alloc dir holds, rescanning on inotify
// events (and on the watch's errors: an overflow lost events) and every
// interval; the refusals it makes are logged and counted once each.
//
// Each target carries its task's TaskInfo (shared by the task's two
// streams): what the listing says of the task beyond its files, its events
// among them. A task event is rendered as a record of its own
// (Renderer.AppendEvent), with stream "event" and no file; which events
// were sent is the tailer's and the checkpoint's business, not this
// package's.
//
// Each target also carries its Handling: the log_forwarder_multiline,
// _format, _rate_limit and _level meta keys (nearest of task, group, job)
// over the CLI defaults; a value that does not parse keeps the default and
// is logged once per task. AppendRecord renders a line or a multiline
// event with its level and JSON object, AppendThrottle the record of lines
// dropped over a rate limit.
//
// Metadata is rendered once per target into bytes; rendering a line only
// escapes the message and appends the pre-rendered parts, so the per-line
// path allocates nothing. Nothing here reads log files or writes to
// sockets; it only looks at which folders and file names exist.
package enrich
