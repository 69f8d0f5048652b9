package memberlist_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every memberlist goroutine ends after Shutdown (the listeners are waited for; the schedulers
// and handlers stop on its shutdown channel), so no goroutine is ignored here.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
