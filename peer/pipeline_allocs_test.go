//go:build !race

package peer

import (
	"context"
	"testing"
)

// TestPipelinedAllocs pins the allocations of a remote hit on a multiplexed connection, client
// and server together: the value only (the call's state is pooled), as without pipelining; a
// cancellable context adds its context.AfterFunc. GetInto, reading into a buffer that fits,
// allocates nothing.
func TestPipelinedAllocs(t *testing.T) {
	_, addr := startServer(t, inlineValueBackend{valueBackend{Value{Data: random(1 << 10)}}})
	c := newClient(t, WithPipelining(1))
	ctx := context.Background()
	key := []byte("k")
	if _, err := c.Get(ctx, addr, "c", key); err != nil { // dial
		t.Fatal(err)
	}
	if st := c.Stats(); st.MuxConns != 1 {
		t.Fatalf("stats %+v", st)
	}
	get := testing.AllocsPerRun(200, func() {
		if _, err := c.Get(ctx, addr, "c", key); err != nil {
			t.Fatal(err)
		}
	})
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	withCancel := testing.AllocsPerRun(200, func() {
		if _, err := c.Get(cctx, addr, "c", key); err != nil {
			t.Fatal(err)
		}
	})
	buf := make([]byte, 0, 2<<10)
	into := testing.AllocsPerRun(200, func() {
		if _, err := c.GetInto(ctx, addr, "c", key, buf); err != nil {
			t.Fatal(err)
		}
	})
	if get > 1 || withCancel > 4 || into != 0 {
		t.Fatalf("Get: %v allocations, with a cancellable context: %v, GetInto: %v", get, withCancel, into)
	}
}
