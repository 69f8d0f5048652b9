//go:build !race

package peer

import (
	"context"
	"testing"
)

// TestAllocs pins the allocations of a remote hit, client and server together (both run in this
// process): Get allocates the value only; GetMany of 100 values allocates the reply frame and the
// Results on the client, and the Backend's Results and the batch body on the server; GetInto
// into a buffer that fits allocates nothing.
func TestAllocs(t *testing.T) {
	_, addr := startServer(t, valueBackend{Value{Data: random(1 << 10)}})
	c := newClient(t)
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
	if get > 1 || many > 7 || into > 0 {
		t.Fatalf("Get: %v allocations, GetMany: %v, GetInto: %v", get, many, into)
	}
}
