// Package checkpoint persists, per task stream, the position up to which
// lines were confirmed written by the output: never a position that was only
// read, and per task how far the records of its Nomad task events were
// confirmed (an EventMark, in an entry keyed by the task's Events stream).
// The file is msgpack with a format version and a checksum, replaced
// atomically (temp file in the same folder, fsync, rename, fsync of the
// folder), so a crash at any instant leaves the old file or the new one.
//
// A Store is safe for concurrent use: outputs commit positions from their
// own goroutine while an owner goroutine (Run) saves the file every
// interval and once more when it stops; the daemon saves once more after
// its output drained. Saves are serialized from snapshot to rename, so the
// file always ends up with the newest snapshot. A corrupt file is an error
// that names the file and how to proceed; it is never overwritten
// silently.
//
// The checkpoint, its lock and its temp files are opened with O_NOFOLLOW,
// only regular files of at most MaxFileBytes are read, and a rewrite keeps
// the owner and mode of the file it replaces: the offsets CLI runs as root
// in a folder the daemon's user can write (safefile.go). Lock, Open and
// Read create the folder or treat a missing file as empty, for the daemon;
// their *Existing variants, for the CLI, create nothing and report a
// missing checkpoint as a *NotFoundError.
package checkpoint
