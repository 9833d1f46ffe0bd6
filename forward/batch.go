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
	// Dropped is how many of the batch's lines the output skipped instead
	// of delivering them (poison lines the receiver refused), set before
	// Written.
	Dropped int
}

// Source is what made a batch. Both methods are called from the writer's
// goroutine, in the order the batches were submitted, and must not block.
type Source interface {
	// Epoch changes every time the source rewinds; batches of an older
	// epoch are not written.
	Epoch() uint64
	// Written: the output took the batch's bytes. For a socket that is
	// the local kernel accepting them into the connection's send buffer,
	// not the peer reading them; for HTTP it is a 2xx answer.
	Written(b *Batch)
	// Failed: the batch was not (wholly) written; nothing after it from
	// the same source is written until the source rewinds.
	Failed(b *Batch)
}

// pool hands out a fixed number of batch buffers, first come first served.
type pool struct {
	free chan *Batch
	size int
}

// maxGrowth is how far past its size a buffer may have grown and still go
// back to the pool as it is. A batch holding one huge line (a 10 MiB line
// escapes to about 60 MiB) grows its buffer once; kept, 32 of them would
// pin gigabytes for good.
const maxGrowth = 4

func newPool(buffers, size int) *pool {
	p := &pool{free: make(chan *Batch, buffers), size: size}
	for range buffers {
		p.free <- &Batch{Data: make([]byte, 0, size)}
	}
	return p
}

func (p *pool) put(b *Batch) {
	data := b.Data[:0]
	if cap(data) > maxGrowth*p.size {
		data = make([]byte, 0, p.size)
	}
	*b = Batch{Data: data}
	p.free <- b
}
