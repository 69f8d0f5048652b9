//go:build !race

package peer

import (
	"context"
	"testing"
)

// TestAllocs pins the allocations of a remote hit, client and server together (both run in this
// process): Get allocates the value only; GetMany of 100 values allocates the reply frame and the
// Results on the client and the Backend's Results, the batch body coming from the server's pool;
// GetInto into a buffer that fits allocates nothing.
func TestAllocs(t *testing.T) {
	_, addr := startServer(t, batchValueBackend{valueBackend{Value{Data: random(1 << 10)}}})
	c := framing1Client(t)
	ctx := context.Background()
	keys := benchKeys(benchBatch)
	if _, err := c.GetMany(ctx, addr, "c", keys); err != nil { // dial, and fill the pool
		t.Fatal(err)
	}
	get := testing.AllocsPerRun(200, func() {
		if _, err := c.Get(ctx, addr, "c", keys[0]); err != nil {
			t.Fatal(err)
		}
	})
	many := testing.AllocsPerRun(200, func() {
		if _, err := c.GetMany(ctx, addr, "c", keys); err != nil {
			t.Fatal(err)
		}
	})
	buf := make([]byte, 0, 2<<10)
	into := testing.AllocsPerRun(200, func() {
		if _, err := c.GetInto(ctx, addr, "c", keys[0], buf); err != nil {
			t.Fatal(err)
		}
	})
	// A sync.Pool may drop its buffers at a garbage collection: allow for a body now and then.
	if get > 1 || many > 4 || into > 0 {
		t.Fatalf("Get: %v allocations, GetMany: %v, GetInto: %v", get, many, into)
	}
}
