package forward

// batches is what both writers share with the streams: the fixed pool of
// batch buffers the streams take from (Free) and give back (Release), and
// the queue of submitted batches the writer's Run takes from. A writer
// embeds it and keeps only how it sends and acknowledges. Its methods are
// safe for concurrent use.
type batches struct {
	pool       *pool
	queue      chan *Batch
	closing    chan struct{}
	batchBytes int
}

func newBatches(buffers, batchBytes int) batches {
	return batches{
		// A batch may run past its size by one line, a little more in a
		// buffer spares the append a copy.
		pool:       newPool(buffers, batchBytes+batchBytes/4),
		queue:      make(chan *Batch, buffers),
		closing:    make(chan struct{}),
		batchBytes: batchBytes,
	}
}

// BatchBytes is the size at which a stream should submit its batch.
func (q *batches) BatchBytes() int { return q.batchBytes }

// Free hands out free batch buffers; receive from it to get one. Waiting
// receivers are served in turn.
func (q *batches) Free() <-chan *Batch { return q.pool.free }

// Release returns a batch that will not be submitted.
func (q *batches) Release(b *Batch) { q.pool.put(b) }

// Submit queues b for sending. It never blocks: every batch came from the
// pool, and the queue holds as many as the pool has.
func (q *batches) Submit(b *Batch) { q.queue <- b }

// Close says no more batches will be submitted: Run sends what is queued
// and returns.
func (q *batches) Close() { close(q.closing) }

// fail reports b failed to its source and gives its buffer back.
func (q *batches) fail(b *Batch) {
	b.Source.Failed(b)
	q.pool.put(b)
}

// failQueued fails every batch still queued.
func (q *batches) failQueued() {
	for {
		select {
		case b := <-q.queue:
			q.fail(b)
		default:
			return
		}
	}
}
