// Package safefs opens the files and folders below Nomad's alloc dir without
// ever leaving it. The daemon runs as root and reads folders that tasks can
// write (alloc/ and alloc/logs/ are mode 0777), so every open refuses a
// symlink at any component below the root, and refuses anything but a
// regular file where a log file should be. The check is made on the
// descriptor that is then read, so a file swapped for a symlink or a FIFO
// between two looks is caught too.
//
// On Linux 5.6+ this is one openat2 call with RESOLVE_BENEATH and
// RESOLVE_NO_SYMLINKS; on older kernels each component is opened with
// O_NOFOLLOW relative to its parent. Opens use O_NONBLOCK so a FIFO can
// never block; the flag is cleared once fstat proved the file regular.
// Size answers how big a file is without opening it (fstatat with
// AT_SYMLINK_NOFOLLOW in a folder opened as above), with the same
// refusals: cheap enough to look at every file of a folder at each
// metrics scrape.
package safefs
