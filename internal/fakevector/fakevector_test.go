package fakevector

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func gz(t *testing.T, s string) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	_, err := zw.Write([]byte(s))
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return b.Bytes()
}

func post(ctx context.Context, url string, body []byte, encoding string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Encoding", encoding)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(msg), nil
}

func TestAnswersAndRecords(t *testing.T) {
	s, err := Start(Options{})
	require.NoError(t, err)
	defer s.Close()
	ctx := context.Background()
	body := gz(t, "{\"a\":1}\n\n{\"a\":2}\n")

	code, _, err := post(ctx, s.URL(), body, "gzip")
	require.NoError(t, err)
	assert.Equal(t, 200, code)
	assert.Equal(t, [][]byte{[]byte(`{"a":1}`), []byte(`{"a":2}`)}, s.Lines(), "empty lines are no events")

	s.SetPoison([]byte(`"a":2`))
	code, msg, err := post(ctx, s.URL(), body, "gzip")
	require.NoError(t, err)
	assert.Equal(t, 400, code)
	assert.Contains(t, msg, "Failed decoding body")
	s.SetPoison(nil)

	s.SetMaxBytes(10)
	code, _, err = post(ctx, s.URL(), body, "gzip")
	require.NoError(t, err)
	assert.Equal(t, 413, code)
	s.SetMaxBytes(0)

	code, _, err = post(ctx, s.URL(), []byte("{\"a\":3}\n"), "br")
	require.NoError(t, err)
	assert.Equal(t, 415, code)

	for mode, want := range map[Mode]int{Fail: 500, SinkReject: 400} {
		s.SetMode(mode)
		code, msg, err := post(ctx, s.URL(), body, "gzip")
		require.NoError(t, err)
		assert.Equal(t, want, code)
		if mode == SinkReject {
			assert.Contains(t, msg, "Contents failed to deliver to sink")
		}
	}
	s.SetMode(Reset)
	_, _, err = post(ctx, s.URL(), body, "gzip")
	assert.Error(t, err)
	assert.Len(t, s.Lines(), 2, "only answered 200s are recorded")
}

func TestCrashDropsWhatWasNotAnswered(t *testing.T) {
	s, err := Start(Options{})
	require.NoError(t, err)
	defer s.Close()
	s.SetMode(Hang)
	errs := make(chan error, 1)
	go func() {
		_, _, err := post(context.Background(), s.URL(), gz(t, "{\"a\":1}\n"), "gzip")
		errs <- err
	}()
	require.Eventually(t, func() bool { return s.InFlight() == 1 }, 10*time.Second, time.Millisecond)
	s.Crash()
	select {
	case err := <-errs:
		assert.Error(t, err, "the request is never answered")
	case <-time.After(10 * time.Second):
		t.Fatal("the hung request outlived the crash")
	}
	_, _, err = post(context.Background(), s.URL(), gz(t, "{\"a\":2}\n"), "gzip")
	assert.Error(t, err, "nothing listens until Restart")

	require.NoError(t, s.Restart())
	s.SetMode(OK)
	code, _, err := post(context.Background(), s.URL(), gz(t, "{\"a\":3}\n"), "gzip")
	require.NoError(t, err)
	assert.Equal(t, 200, code)
	assert.Equal(t, [][]byte{[]byte(`{"a":3}`)}, s.Lines())
}
