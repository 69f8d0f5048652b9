package etcd_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine of the sources ends before Watch returns, and the etcd clients' own (gRPC
// connections, watch and lease streams) end with Client.Close, which every test calls: no
// goroutine is ignored here.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
