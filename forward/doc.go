// Package forward owns the output, in one of two forms with the same
// methods:
//
//   - Writer: one connection to one Vector socket source (TCP or unix
//     stream), or stdout when run by hand. It writes the batches that
//     streams submit, in the order they arrive, and reports each batch
//     back to the stream that made it: Written once the local kernel
//     accepted the bytes into the connection's send buffer (so the stream
//     may commit them; what the kernels still hold when the connection
//     breaks is lost, see the README's Guarantees), Failed when they were
//     not (so the stream resends from its last commit).
//   - HTTPWriter: POSTs of gzipped newline-delimited JSON to Vector's
//     http_server source. Written comes only once the request that
//     carried the batch was answered 2xx, which with acknowledgements on
//     Vector's sinks means the sinks have the lines: delivery is
//     at-least-once end to end. Requests the receiver does not take are
//     resent forever; Failed happens only on a hard stop.
//
// Memory is bounded by a fixed number of batch buffers. A stream must get
// one from Free before it reads, and waits in line for it when all are
// in use: the files on disk are the buffer, never the heap. Because a
// waiting stream is served in turn, a chatty stream cannot starve a quiet
// one. The writers' methods are safe for concurrent use; Run owns their
// goroutines and is the only caller of the streams' Written and Failed.
package forward
