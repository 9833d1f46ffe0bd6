package enrich

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/hashicorp/nomad/api"
)

// MaxAllocationBytes bounds one allocation of a listing, its job
// included. Real ones are tens of KiB (the captured ones: about 16 KiB);
// decoding one costs a few times its size.
const MaxAllocationBytes = 16 << 20

// ErrAllocationTooLarge is returned for an allocation in a listing beyond
// MaxAllocationBytes.
var ErrAllocationTooLarge = fmt.Errorf("an allocation in the listing exceeds %d MiB", MaxAllocationBytes>>20)

// Allocations lists the allocations of node nodeID, and hands each to fn
// as it is decoded, in the order of the response: memory holds one
// allocation at a time, never the listing (a hostile or broken API sending
// 70 MiB cost 500 MB when it was decoded whole). The listing is bounded
// by ClientConfig.MaxResponseBytes, each allocation by MaxAllocationBytes.
// An error from fn ends the listing with that error. The request honours
// q as the api package's would (index, wait, stale, its context).
func (c *Client) Allocations(nodeID string, q *api.QueryOptions, fn func(*api.Allocation) error) (*api.QueryMeta, error) {
	if err := ValidNodeID(nodeID); err != nil {
		return nil, err
	}
	if q == nil {
		q = &api.QueryOptions{}
	}
	q = q.WithContext(context.WithValue(q.Context(), bodyLimitKey{}, c.maxResponse))
	start := time.Now()
	body, err := c.api.Raw().Response("/v1/node/"+nodeID+"/allocations", q)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	lb, ok := body.(*limitedBody)
	if !ok {
		// Only NewClient's transport makes these.
		return nil, errors.New("the Nomad API client has no bounded transport")
	}
	meta := queryMeta(lb.header)
	meta.RequestTime = time.Since(start)
	if err := decodeEach(lb, fn); err != nil {
		return nil, err
	}
	return meta, nil
}

// bodyLimitKey carries, in a request's context, a bound other than
// maxSmallResponse for its response body.
type bodyLimitKey struct{}

// queryMeta reads Nomad's X-Nomad-* headers as the api package does: a
// header missing or malformed reads as zero.
func queryMeta(h http.Header) *api.QueryMeta {
	m := &api.QueryMeta{}
	m.LastIndex, _ = strconv.ParseUint(h.Get("X-Nomad-Index"), 10, 64)
	if ms, err := strconv.ParseUint(h.Get("X-Nomad-LastContact"), 10, 64); err == nil && ms < 1<<40 {
		m.LastContact = time.Duration(ms) * time.Millisecond
	}
	m.KnownLeader = h.Get("X-Nomad-KnownLeader") == "true"
	return m
}

// decodeEach decodes a JSON array of allocations element by element.
func decodeEach(r io.Reader, fn func(*api.Allocation) error) error {
	w := &window{r: r, limit: MaxAllocationBytes}
	dec := json.NewDecoder(w)
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("decode the allocations listing: %w", err)
	}
	if tok == nil {
		return nil // null: none
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return fmt.Errorf("decode the allocations listing: want a JSON array, got %v", tok)
	}
	for n := 0; dec.More(); n++ {
		// The decoder holds what it read ahead; the window lets it read
		// one allocation's worth beyond where this one starts.
		w.limit = dec.InputOffset() + MaxAllocationBytes
		var a api.Allocation
		if err := dec.Decode(&a); err != nil {
			return fmt.Errorf("decode allocation %d of the listing: %w", n, err)
		}
		if err := fn(&a); err != nil {
			return err
		}
	}
	w.limit = dec.InputOffset() + MaxAllocationBytes
	if _, err := dec.Token(); err != nil {
		return fmt.Errorf("decode the end of the allocations listing: %w", err)
	}
	return nil
}

// window passes on the bytes of r up to the absolute offset limit, and
// fails past it with ErrAllocationTooLarge.
type window struct {
	r     io.Reader
	read  int64
	limit int64
}

func (w *window) Read(p []byte) (int, error) {
	room := w.limit - w.read
	if room <= 0 {
		return 0, ErrAllocationTooLarge
	}
	if int64(len(p)) > room {
		p = p[:room]
	}
	n, err := w.r.Read(p)
	w.read += int64(n)
	return n, err
}
