package forward

import (
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// --output is checked before anything starts: every mistake gets an
// error that says what is wrong, and a bare HOST:PORT gets the fix.
func TestParseOutputRefusesMistakes(t *testing.T) {
	for spec, want := range map[string]string{
		"tcp://127.0.0.1:0":           "outside 1-65535",
		"tcp://127.0.0.1:65536":       "outside 1-65535",
		"tcp://127.0.0.1:99999999999": "outside 1-65535",
		"tcp://127.0.0.1:9000/vector": "no path",
		"tcp://127.0.0.1:9000/":       "no path",
		"tcp://127.0.0.1:9000?x=1":    "no path",
		"127.0.0.1:9000":              "did you mean tcp://127.0.0.1:9000?",
		"localhost:9000":              "did you mean tcp://localhost:9000?",
		"vector.service.consul:9000":  "did you mean tcp://vector.service.consul:9000?",
		"[::1]:9000":                  "did you mean tcp://[::1]:9000?",
	} {
		_, err := ParseOutput(spec, io.Discard)
		require.Error(t, err, spec)
		assert.Contains(t, err.Error(), want, spec)
	}
	for spec, want := range map[string]string{
		"tcp://127.0.0.1:1":         "tcp://127.0.0.1:1",
		"tcp://127.0.0.1:65535":     "tcp://127.0.0.1:65535",
		"tcp://[::1]:9000":          "tcp://[::1]:9000",
		"unix:///alloc/vector.sock": "unix:///alloc/vector.sock",
		"unix:/alloc/vector.sock":   "unix:///alloc/vector.sock",
	} {
		o, err := ParseOutput(spec, io.Discard)
		require.NoError(t, err, spec)
		assert.Equal(t, want, o.String())
	}
}

func TestParseHTTPURLChecksThePort(t *testing.T) {
	for _, bad := range []string{"http://127.0.0.1:0/", "https://127.0.0.1:65536/", "http://127.0.0.1:/"} {
		_, err := ParseHTTPURL(bad)
		assert.Error(t, err, bad)
	}
	for _, good := range []string{"http://127.0.0.1:8080/", "https://vector.example.com/", "http://[::1]:1/x"} {
		_, err := ParseHTTPURL(good)
		assert.NoError(t, err, good)
	}
	_, err := ParseHTTPURL("https://user:hunter2@127.0.0.1:70000/")
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "hunter2", "the URL's password is redacted")
}
