package discovery

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that no test leaves a goroutine behind: Run and the sources start goroutines.
// It covers the external test package too, which shares this test binary.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
