package consul

import (
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/meshfed/meshfed/internal/untrusted"
)

// ErrAnswerTooLarge is an answer of Consul over export.maxAnswerBytes.
var ErrAnswerTooLarge = errors.New("over export.maxAnswerBytes")

// boundedTransport bounds the body of every answer, as decoded (after
// gzip): the API client decodes a whole answer into memory, and a Consul,
// or whatever answers in its place, may send any amount. A larger answer
// fails its query, which the watch retries with a backoff while the last
// result stays.
type boundedTransport struct {
	next http.RoundTripper
	max  int64
}

func (t boundedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	if resp.ContentLength > t.max {
		_ = resp.Body.Close()
		return nil, t.tooLarge(r, fmt.Sprintf("%d bytes", resp.ContentLength))
	}
	resp.Body = &boundedBody{rc: resp.Body, left: t.max, err: t.tooLarge(r, "more than that")}
	return resp, nil
}

func (t boundedTransport) tooLarge(r *http.Request, size string) error {
	return fmt.Errorf("consul answered %s %s with %s, %w (%d bytes)", r.Method, untrusted.Quote(r.URL.Path), size, ErrAnswerTooLarge, t.max)
}

// boundedBody reads at most left bytes of rc, and fails with err on the
// next one.
type boundedBody struct {
	rc   io.ReadCloser
	left int64
	err  error
}

func (b *boundedBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, b.err
	}
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1] // one byte past the bound tells a larger body
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return n + int(b.left), b.err
	}
	return n, err
}

func (b *boundedBody) Close() error { return b.rc.Close() }
