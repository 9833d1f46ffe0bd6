// Package chaos is the fault suite: each scenario runs the built binary end
// to end against the logmon imitation, the fake Nomad API and a receiver
// that records every line, injects one kind of fault at moments chosen by
// progress, prints one summary line
//
//	scenario=<name> written=N delivered_unique=N missing=N duplicates=N ...
//
// and fails where the scenario's promise is broken. `go test ./chaos` (and
// so `make test`) runs the short form; `make chaos` (-chaos.full, or
// NLF_CHAOS=full) runs the sizes the issue names. The package holds only
// tests.
package chaos
