// Package checkpoint persists, per task stream, the position up to which
// lines were confirmed written by the output: never a position that was only
// read. The file is msgpack with a format version and a checksum, replaced
// atomically (temp file in the same folder, fsync, rename, fsync of the
// folder), so a crash at any instant leaves the old file or the new one.
//
// A Store is safe for concurrent use: outputs commit positions from their
// own goroutine while one owner goroutine (Run) saves the file every
// interval. A corrupt file is an error that names the file and how to
// proceed; it is never overwritten silently.
package checkpoint
