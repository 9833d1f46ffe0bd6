// Package enrich knows everything about Nomad: which task streams exist on
// this node (from the HTTP API, or offline from the alloc dir and a saved
// allocations response), what metadata each one carries, and how a line of
// a stream is rendered as one JSON object.
//
// Metadata is rendered once per target into bytes; rendering a line only
// escapes the message and appends the pre-rendered parts, so the per-line
// path allocates nothing. Nothing here touches log files or sockets.
package enrich
