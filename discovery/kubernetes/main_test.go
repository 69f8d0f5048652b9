package kubernetes_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Watch stops its informer and waits for it (reflector, processor and handlers) before it
// returns, and the fake clientset starts no goroutine, so no goroutine is ignored here.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
