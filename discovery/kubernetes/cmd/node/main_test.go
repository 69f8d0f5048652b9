package main

import (
	"testing"

	"go.uber.org/goleak"
)

// run stops every goroutine it starts (discovery, the HTTP server) before it returns, and the
// informers of the sources stop with their Watch: no goroutine is ignored here.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
