package forward

// Batch is a run of rendered lines from one stream. Its buffer belongs to
// the Writer: after Written or Failed returns, the source must not touch it.
type Batch struct {
	// Data holds newline-delimited JSON, only whole lines.
	Data []byte
	// Lines is how many lines Data holds.
	Lines int
	// Source is told what became of the batch.
	Source Source
	// Epoch is Source.Epoch() when the batch was made; a batch whose epoch
	// is no longer current is void and is failed instead of written.
	Epoch uint64
	// Seq is the source's own sequence number, echoed back.
	Seq uint64
}

// Source is what made a batch. Both methods are called from the writer's
// goroutine, in the order the batches were submitted, and must not block.
type Source interface {
	// Epoch changes every time the source rewinds; batches of an older
	// epoch are not written.
	Epoch() uint64
	// Written: the batch's bytes were accepted by the peer.
	Written(b *Batch)
	// Failed: the batch was not (wholly) written; nothing after it from
	// the same source is written until the source rewinds.
	Failed(b *Batch)
}

// pool hands out a fixed number of batch buffers, first come first served.
type pool struct {
	free chan *Batch
}

func newPool(buffers, size int) *pool {
	p := &pool{free: make(chan *Batch, buffers)}
	for range buffers {
		p.free <- &Batch{Data: make([]byte, 0, size)}
	}
	return p
}

func (p *pool) put(b *Batch) {
	*b = Batch{Data: b.Data[:0]}
	p.free <- b
}
