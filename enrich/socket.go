package enrich

import (
	"fmt"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// maxSocketPath is the longest path a unix socket address holds: sun_path
// is 108 bytes, its terminating NUL included.
const maxSocketPath = 107

// socketFix says what to do about a socket path that cannot be dialled.
const socketFix = "give a shorter path to the same socket: a symlink to its folder " +
	"(ln -s <folder> /run/nomad-api, then --nomad-addr unix:///run/nomad-api/api.sock), or a shorter Nomad data_dir"

// socketDialPath returns the path to dial the unix socket at path by. A
// path that fits in a socket address is dialled as it is. A raw_exec task
// sees its Task API socket by its host path,
// <alloc_dir>/<alloc_id>/<task>/secrets/api.sock, which passes 107 bytes
// with an alloc dir of about 50 (nomad-logs.md §9): then the socket's
// folder is opened (O_PATH) and held, and the socket dialled as
// /proc/self/fd/<fd>/<name>, a short path the kernel resolves through the
// open folder. dirFD is that descriptor (-1 when none), for the caller to
// close. Where this cannot work, the error says that the path is too long
// and what to do.
func socketDialPath(path string) (dial string, dirFD int, err error) {
	if len(path) <= maxSocketPath {
		return path, -1, nil
	}
	tooLong := fmt.Sprintf("the socket path is %d bytes, longer than the %d a unix socket address holds", len(path), maxSocketPath)
	dir, name := filepath.Split(path)
	if name == "" {
		return "", -1, fmt.Errorf("%s, and it names a folder, not a socket", tooLong)
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", -1, fmt.Errorf("%s, and its folder cannot be opened to dial it through /proc/self/fd (%w): %s", tooLong, err, socketFix)
	}
	fdPath := "/proc/self/fd/" + strconv.Itoa(fd)
	dial = fdPath + "/" + name
	// /proc/self/fd/<fd> must be the folder just opened: /proc mounted,
	// and a descriptor link the kernel follows.
	var viaProc, opened unix.Stat_t
	switch {
	case len(dial) > maxSocketPath:
		err = fmt.Errorf("%s, and so is its name alone (%d bytes): %s", tooLong, len(name), socketFix)
	case unix.Fstat(fd, &opened) != nil:
		err = fmt.Errorf("%s, and its folder cannot be looked at: %s", tooLong, socketFix)
	case unix.Stat(fdPath, &viaProc) != nil || viaProc.Dev != opened.Dev || viaProc.Ino != opened.Ino:
		err = fmt.Errorf("%s, and it cannot be dialled through /proc/self/fd (is /proc mounted?): %s", tooLong, socketFix)
	}
	if err != nil {
		unix.Close(fd)
		return "", -1, err
	}
	return dial, fd, nil
}
