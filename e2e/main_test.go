package e2e_test

import (
	"os"
	"testing"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/internal/e2e"
)

// TestMain removes the binaries the tests built once they are done.
func TestMain(m *testing.M) { os.Exit(e2e.Main(m)) }
