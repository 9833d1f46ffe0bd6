package enrich

import (
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// errorBodyCap is how much of an error response's body is read: enough
// for Nomad's one-line messages ("Permission denied", "No cluster
// leader") in the log; a hostile 300 MiB error body costs no more.
const errorBodyCap = 4 << 10

// truncatedMark ends an error body that was cut at errorBodyCap.
const truncatedMark = " … (error body cut at 4 KiB)"

// limitedTransport bounds response bodies (after decompression; error
// bodies to errorBodyCap), keeps the response headers within reach of the
// streamed listing (see Client.eachAllocation) and, on the Task API
// socket, also sends the token as a bearer token, the form Nomad's Task
// API documentation shows.
type limitedTransport struct {
	next   http.RoundTripper
	max    int64
	bearer bool
}

func (t *limitedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.bearer {
		if tok := req.Header.Get("X-Nomad-Token"); tok != "" && req.Header.Get("Authorization") == "" {
			req = req.Clone(req.Context())
			req.Header.Set("Authorization", "Bearer "+tok)
		}
	}
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body := resp.Body
	var r io.Reader = body
	if strings.EqualFold(resp.Header.Get("Content-Encoding"), "gzip") {
		// Decompress here rather than in the api package, so that the
		// limit applies to what is decoded, not to what was sent.
		zr, err := gzip.NewReader(body)
		if err != nil {
			body.Close()
			return nil, fmt.Errorf("gzip response from %s: %w", req.URL.Path, err)
		}
		r = zr
		resp.Header.Del("Content-Encoding")
		resp.ContentLength = -1
	}
	limit := t.max
	if v, ok := req.Context().Value(bodyLimitKey{}).(int64); ok {
		limit = v
	}
	lb := &limitedBody{r: r, c: body, left: limit, header: resp.Header}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		// The api package reads an error body whole into its error: read
		// only what the log can use, then say it was cut.
		lb.left, lb.cut = errorBodyCap, truncatedMark
	}
	resp.Body = lb
	return resp, nil
}

// limitedBody reads at most left bytes of r. Past them it fails with
// ErrResponseTooLarge or, for an error body, ends with the cut mark.
type limitedBody struct {
	r     io.Reader
	c     io.Closer
	left  int64
	cut   string // "" fails past the limit; else the mark that ends a cut body
	ended bool   // the cut mark was handed out: nothing more
	// header is the response's, for the streamed listing: the api
	// package hands out only the body of a raw request.
	header http.Header
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		if b.ended {
			return 0, io.EOF
		}
		// One byte more tells a body of exactly the limit from a longer one.
		var one [1]byte
		if _, err := io.ReadFull(b.r, one[:]); err != nil {
			return 0, err // io.EOF: the body ended right at the limit
		}
		if b.cut == "" {
			return 0, ErrResponseTooLarge
		}
		b.ended = true
		b.r, b.left = strings.NewReader(b.cut), int64(len(b.cut))
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.c.Close() }
