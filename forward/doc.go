// Package forward owns the output: one connection to one Vector socket
// source (TCP or unix stream), or stdout when run by hand. It writes the
// batches that streams submit, in the order they arrive, and reports each
// batch back to the stream that made it: Written once the bytes were
// accepted by the peer's kernel (so the stream may commit them), Failed
// when they were not (so the stream resends from its last commit).
//
// Memory is bounded by a fixed number of batch buffers. A stream must get
// one from NewBatch before it reads, and waits in line for it when all are
// in use: the files on disk are the buffer, never the heap. Because a
// waiting stream is served in turn, a chatty stream cannot starve a quiet
// one. Writer's methods are safe for concurrent use; Run is its only
// goroutine and the only user of the connection.
package forward
