package tailer

import (
	"github.com/nomad-log-forwarder/nomad-log-forwarder/checkpoint"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/enrich"
	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/safefs"
)

// LagBytes is how many bytes of e's stream are on disk past its committed
// position: the rest of file e.FileIndex and every newer file. Files that
// cannot be opened safely count as nothing.
func LagBytes(root *safefs.Root, e checkpoint.Entry) int64 {
	if enrich.ValidPathComponent(e.AllocID) != nil || enrich.ValidPathComponent(e.Task) != nil {
		return 0
	}
	dir := enrich.LogDir(e.AllocID)
	d, err := root.OpenDir(dir)
	if err != nil {
		return 0
	}
	defer d.Close()
	var lag int64
	for {
		names, err := d.Readdirnames(1024)
		for _, name := range names {
			task, stream, idx, ok := enrich.ParseLogFileName(name)
			if !ok || task != e.Task || stream != e.Stream || idx < e.FileIndex {
				continue
			}
			f, err := root.OpenFile(dir + "/" + name)
			if err != nil {
				continue
			}
			size := fileSize(f)
			f.Close()
			if idx == e.FileIndex {
				size -= e.Offset
			}
			lag += max(size, 0)
		}
		if err != nil {
			break
		}
	}
	return lag
}
