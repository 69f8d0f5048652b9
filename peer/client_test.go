package peer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/typedcache/groupcache/internal/wire"
)

// TestClientOps sends every op through a Client to a Server and checks what the Backend got and
// what the Client got back.
func TestClientOps(t *testing.T) {
	t.Parallel()
	b := newBackend()
	big := Compress(bytes.Repeat([]byte("abcd"), 1000), 0)
	b.set("c", "k", Value{Data: []byte("v"), TTL: 99})
	b.set("c", "big", big)
	_, addr := startServer(t, b)
	c := newClient(t)
	ctx := context.Background()
	for key, want := range map[string]Value{"k": {Data: []byte("v"), TTL: 99}, "big": big} {
		if v, err := c.Get(ctx, addr, "c", []byte(key)); err != nil || !sameValue(v, want) {
			t.Fatalf("Get %s: %+v %v", key, v, err)
		}
		if v, err := c.Peek(ctx, addr, "c", []byte(key)); err != nil || !sameValue(v, want) {
			t.Fatalf("Peek %s: %+v %v", key, v, err)
		}
	}
	checkErr(t, get(c, addr, "missing"), addr, OpGet, ErrNotFound)
	_, err := c.Peek(ctx, addr, "c", []byte("missing"))
	checkErr(t, err, addr, OpPeek, ErrNotFound)
	for _, op := range []Op{OpGetMany, OpPeekMany} {
		f := map[Op]func(context.Context, string, string, [][]byte) ([]Result, error){OpGetMany: c.GetMany, OpPeekMany: c.PeekMany}[op]
		rs, err := f(ctx, addr, "c", keysOf("k", "missing", "big", "k"))
		if err != nil || len(rs) != 4 || !sameValue(rs[0].Value, b.mustGet("k")) || !sameValue(rs[2].Value, big) ||
			!sameValue(rs[3].Value, rs[0].Value) || rs[0].Err != nil {
			t.Fatalf("%v: %+v %v", op, rs, err)
		}
		checkErr(t, rs[1].Err, addr, op, ErrNotFound)
	}
	if err := c.Set(ctx, addr, "c", []byte("new"), Value{Data: []byte("x"), TTL: 7}); err != nil || !sameValue(b.mustGet("new"), Value{Data: []byte("x"), TTL: 7}) {
		t.Fatalf("Set: %v", err)
	}
	if err := c.Set(ctx, addr, "c", []byte("new2"), big); err != nil || !sameValue(b.mustGet("new2"), big) {
		t.Fatalf("Set compressed: %v", err)
	}
	// An offer reaches the Backend's Offer, which here keeps what it holds.
	if err := c.Offer(ctx, addr, "c", []byte("new2"), Value{Data: []byte("o")}); err != nil || !sameValue(b.mustGet("new2"), big) {
		t.Fatalf("Offer of a key held: %v", err)
	}
	if err := c.Offer(ctx, addr, "c", []byte("offered"), Value{Data: []byte("o"), TTL: 5}); err != nil ||
		!sameValue(b.mustGet("offered"), Value{Data: []byte("o"), TTL: 5}) || b.ops[OpOffer].Load() != 2 {
		t.Fatalf("Offer: %v", err)
	}
	if err := c.Remove(ctx, addr, "c", keysOf("new", "absent")); err != nil || b.has("new") || !b.has("new2") {
		t.Fatalf("Remove: %v", err)
	}
	if err := c.Clear(ctx, addr, "c", 42); err != nil || b.has("k") || len(b.gens) != 1 || b.gens[0] != 42 {
		t.Fatalf("Clear: %v %v", err, b.gens)
	}
	if st := c.Stats(); st.Requests != 14 || st.Errors != 2 || st.Dials != 1 || st.OpenConns != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// mustGet returns the value the Backend holds under key of cache "c".
func (b *testBackend) mustGet(key string) Value {
	v, _ := b.get("c", []byte(key))
	return v
}

func (b *testBackend) has(key string) bool {
	_, err := b.get("c", []byte(key))
	return err == nil
}

func get(c *Client, addr, key string) error {
	_, err := c.Get(context.Background(), addr, "c", []byte(key))
	return err
}

// TestClientErrorStatuses: what a Backend answers reaches the caller as the status of an *Error,
// with its message, for every op; a status holds for the whole batch or for one entry.
func TestClientErrorStatuses(t *testing.T) {
	t.Parallel()
	b := newBackend()
	b.hook = func(_ context.Context, op Op, key []byte) error {
		switch string(key) {
		case "unknown":
			return fmt.Errorf("cache x: %w", &Error{Status: StatusUnknownCache})
		case "overloaded":
			return &Error{Status: StatusOverloaded, Msg: "busy"}
		case "internal":
			return errors.New("database down")
		case "panic":
			panic("backend bug")
		}
		if op == OpGetMany {
			return &Error{Status: StatusBadRequest, Msg: "undecodable key"}
		}
		return nil
	}
	_, addr := startServer(t, b)
	c := newClient(t)
	for _, tc := range []struct {
		key  string
		want Status
		msg  string
	}{
		{"unknown", StatusUnknownCache, "cache x: peer: unknown cache"},
		{"overloaded", StatusOverloaded, "busy"},
		{"internal", StatusInternal, "database down"},
		{"panic", StatusInternal, "backend panicked: backend bug"},
		{"missing", StatusNotFound, ""},
	} {
		pe := checkErr(t, get(c, addr, tc.key), addr, OpGet, &Error{Status: tc.want})
		if pe.Msg != tc.msg || pe.Status != tc.want {
			t.Errorf("%s: %+v", tc.key, pe)
		}
		err := c.Set(context.Background(), addr, "c", []byte(tc.key), Value{})
		if tc.want != StatusNotFound {
			checkErr(t, err, addr, OpSet, &Error{Status: tc.want})
		}
	}
	_, err := c.GetMany(context.Background(), addr, "c", keysOf("a"))
	if pe := checkErr(t, err, addr, OpGetMany, ErrBadRequest); pe.Msg != "undecodable key" {
		t.Errorf("%+v", pe)
	}
	if st := c.Stats(); st.OpenConns != 1 || st.Dials != 1 {
		t.Fatalf("the statuses cost the connection: %+v", st)
	}
}

// TestClientLimits: a request over the client's limits is refused before anything is sent; a
// value over them fails its call (or batch entry) alone, and the connection goes on.
func TestClientLimits(t *testing.T) {
	t.Parallel()
	b := newBackend()
	b.set("c", "big", Value{Data: make([]byte, 2000)})
	b.set("c", "bomb", bombOf(1<<20))
	b.set("c", "k", Value{Data: []byte("v")})
	_, addr := startServer(t, b)
	refuse := newClient(t, WithLimits(Limits{MaxKeyBytes: 4, MaxValueBytes: 100, MaxBatchKeys: 3}))
	ctx := context.Background()
	for _, tc := range []struct {
		op   Op
		err  error
		want error
	}{
		{OpGet, get(refuse, addr, "toolong"), ErrBadRequest},
		{OpGet, func() error { _, err := refuse.Get(ctx, addr, "", nil); return err }(), ErrBadRequest},
		{OpGetMany, func() error { _, err := refuse.GetMany(ctx, addr, "c", nil); return err }(), ErrBadRequest},
		{OpPeekMany, func() error { _, err := refuse.PeekMany(ctx, addr, "c", keysOf("a", "b", "c", "d")); return err }(), ErrBadRequest},
		{OpRemove, refuse.Remove(ctx, addr, "c", keysOf("bbbbb")), ErrBadRequest},
		{OpSet, refuse.Set(ctx, addr, "c", []byte("k"), Value{Data: make([]byte, 101)}), ErrTooLarge},
		{OpSet, refuse.Set(ctx, addr, "c", []byte("k"), Compress(make([]byte, 1000), 1)), ErrTooLarge},
		{OpSet, refuse.Set(ctx, addr, "c", []byte("k"), Value{Data: []byte{0xff}, Compressed: true}), ErrBadRequest},
		{OpClear, refuse.Clear(ctx, addr, "c", 0), ErrBadRequest},
	} {
		checkErr(t, tc.err, addr, tc.op, tc.want)
	}
	if st := refuse.Stats(); st.Requests != 0 || st.Dials != 0 {
		t.Fatalf("refused requests reached the network: %+v", st)
	}

	c := newClient(t, WithLimits(Limits{MaxValueBytes: 1000}))
	checkErr(t, get(c, addr, "big"), addr, OpGet, ErrTooLarge)
	checkErr(t, get(c, addr, "bomb"), addr, OpGet, ErrTooLarge)
	rs, err := c.GetMany(ctx, addr, "c", keysOf("big", "k", "bomb"))
	if err != nil || string(rs[1].Value.Data) != "v" {
		t.Fatalf("%+v %v", rs, err)
	}
	checkErr(t, rs[0].Err, addr, OpGetMany, ErrTooLarge)
	checkErr(t, rs[2].Err, addr, OpGetMany, ErrTooLarge)
	if v, err := c.Get(ctx, addr, "c", []byte("k")); err != nil || string(v.Data) != "v" {
		t.Fatalf("%+v %v", v, err)
	}
	if st := c.Stats(); st.Dials != 1 {
		t.Fatalf("a value over the limit cost the connection: %+v", st)
	}
}

// TestGetInto: a value is read into the memory lent when it fits, into new memory otherwise, and
// a compressed one is read as it came (RawInto inflates it).
func TestGetInto(t *testing.T) {
	t.Parallel()
	b := newBackend()
	b.set("c", "small", Value{Data: []byte("0123456789")})
	b.set("c", "large", Value{Data: bytes.Repeat([]byte("L"), 100)})
	_, addr := startServer(t, b)
	c := newClient(t)
	buf := make([]byte, 0, 64)
	v, err := c.GetInto(context.Background(), addr, "c", []byte("small"), buf)
	if err != nil || string(v.Data) != "0123456789" || &v.Data[0] != &buf[:1][0] {
		t.Fatalf("%q %v: not read into the buffer lent", v.Data, err)
	}
	v, err = c.GetInto(context.Background(), addr, "c", []byte("large"), buf)
	if err != nil || len(v.Data) != 100 || &v.Data[0] == &buf[:1][0] {
		t.Fatalf("%d bytes %v", len(v.Data), err)
	}
	_, err = c.GetInto(context.Background(), addr, "c", []byte("missing"), buf)
	checkErr(t, err, addr, OpGet, ErrNotFound)
}

// TestClientConcurrentCallers: many callers on one connection each get their own reply.
func TestClientConcurrentCallers(t *testing.T) {
	t.Parallel()
	b := newBackend()
	b.inline = true
	for i := range 50 {
		b.set("c", fmt.Sprint(i), Value{Data: bytes.Repeat([]byte{byte(i)}, i*300)})
	}
	_, addr := startServer(t, b)
	c := newClient(t)
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 200 {
				k := (g*7 + i) % 60
				v, err := c.Get(context.Background(), addr, "c", []byte(fmt.Sprint(k)))
				switch {
				case k >= 50:
					if StatusOf(err) != StatusNotFound {
						t.Errorf("key %d: %v", k, err)
					}
				case err != nil || len(v.Data) != k*300 || (k > 0 && v.Data[k*300-1] != byte(k)):
					t.Errorf("key %d: %d bytes, %v", k, len(v.Data), err)
				}
			}
		})
	}
	wg.Wait()
	if st := c.Stats(); st.Dials != 1 || st.Requests != 16*200 {
		t.Fatalf("stats %+v", st)
	}
}

// TestClientWritesCombine: the frames of callers that arrive while a write is in progress go out
// together in the next write.
func TestClientWritesCombine(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := newBackend()
		b.inline = true
		b.set("c", "k", Value{Data: []byte("v")})
		pn := newPipeNet()
		serveOn(t, pn, b)
		c := pipeClient(t, pn)
		if err := get(c, "peer:1", "k"); err != nil { // dial
			t.Fatal(err)
		}
		// Hold the next write of the connection until 9 more callers have queued their frames.
		cc := c.pool("peer:1").live()[0]
		hold := make(chan struct{})
		held := &gatedConn{Conn: cc.nc, gate: hold}
		cc.nc = held
		var wg sync.WaitGroup
		for range 10 {
			wg.Go(func() {
				if err := get(c, "peer:1", "k"); err != nil {
					t.Error(err)
				}
			})
		}
		synctest.Wait()
		close(hold)
		wg.Wait()
		if st := c.Stats(); st.SharedWrites != 9 || held.writes != 2 {
			t.Fatalf("%d writes for 10 frames; stats %+v", held.writes, st)
		}
	})
}

// TestClientReplyDuringOwnWrite: a caller whose reply is read and handed to it by another reader
// while its own write is still returning, the other reader then leaving, does not start reading
// for a reply that has come already (it used to wait for its deadline, then succeed).
func TestClientReplyDuringOwnWrite(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := newBackend()
		b.inline = true
		b.set("c", "k", Value{Data: []byte("v")})
		b.set("c", "slow", Value{Data: []byte("v")})
		release := make(chan struct{})
		b.hook = func(_ context.Context, _ Op, key []byte) error {
			<-release
			return nil
		}
		pn := newPipeNet()
		serveOn(t, pn, b)
		c := pipeClient(t, pn)
		if err := get(c, "peer:1", "k"); err != nil { // dial
			t.Fatal(err)
		}
		cc := c.pool("peer:1").live()[0]
		gate := make(chan struct{})
		cc.nc = &stallAfterWrite{Conn: cc.nc, nth: 2, gate: gate}
		b.inline = false // "slow" is served by a goroutine, which waits for release
		var wg sync.WaitGroup
		wg.Go(func() { // the reader, until its own reply comes
			if _, err := c.Get(context.Background(), "peer:1", "c", []byte("slow")); err != nil {
				t.Error(err)
			}
		})
		synctest.Wait()
		b.inline = true
		var took time.Duration
		wg.Go(func() { // its frame is written; the return from the write waits for gate
			start := time.Now()
			if err := get(c, "peer:1", "k"); err != nil {
				t.Error(err)
			}
			took = time.Since(start)
		})
		synctest.Wait() // the reader has handed over the reply to "k"
		close(release)
		synctest.Wait() // the reader has its own reply and has left
		close(gate)
		wg.Wait()
		if took != 0 {
			t.Fatalf("the Get whose reply had come took %v", took)
		}
	})
}

// stallAfterWrite makes its nth Write wait for gate once the bytes are written.
type stallAfterWrite struct {
	net.Conn
	nth, writes int
	gate        chan struct{}
}

func (s *stallAfterWrite) Write(b []byte) (int, error) {
	n, err := s.Conn.Write(b)
	if s.writes++; s.writes == s.nth {
		<-s.gate
	}
	return n, err
}

// gatedConn holds its first Write until gate is closed, and counts writes.
type gatedConn struct {
	net.Conn
	gate   chan struct{}
	writes int // the writer's
}

func (g *gatedConn) Write(b []byte) (int, error) {
	if g.writes++; g.writes == 1 {
		<-g.gate
	}
	return g.Conn.Write(b)
}

// TestClientTimeoutAndCancel: a caller leaves at its timeout, its context's deadline or its
// context's cancellation, with an error that says which; the late reply is dropped, and the
// connection carries on.
func TestClientTimeoutAndCancel(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		g := newGate()
		b := newBackend()
		b.hook = g.hook
		pn := newPipeNet()
		serveOn(t, pn, b)
		c := pipeClient(t, pn, WithTimeout(time.Second))
		start := time.Now()
		err := get(c, "peer:1", "slow1")
		if pe := checkErr(t, err, "peer:1", OpGet, ErrUnavailable); !errors.Is(err, os.ErrDeadlineExceeded) ||
			time.Since(start) != time.Second || !strings.Contains(pe.Msg, "timed out") {
			t.Fatalf("after %v: %v", time.Since(start), err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_, err = c.Get(ctx, "peer:1", "c", []byte("slow2"))
		if checkErr(t, err, "peer:1", OpGet, ErrUnavailable); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("ctx deadline: %v", err)
		}
		ctx, cancel = context.WithCancel(context.Background())
		go func() {
			time.Sleep(10 * time.Millisecond)
			cancel()
		}()
		start = time.Now()
		_, err = c.Get(ctx, "peer:1", "c", []byte("slow3"))
		if checkErr(t, err, "peer:1", OpGet, ErrUnavailable); !errors.Is(err, context.Canceled) || time.Since(start) != 10*time.Millisecond {
			t.Fatalf("cancel: %v", err)
		}
		g.release()
		synctest.Wait() // the late replies arrive and are dropped
		if err := get(c, "peer:1", "k"); StatusOf(err) != StatusNotFound {
			t.Fatal(err)
		}
		cc := c.pool("peer:1").live()[0]
		cc.mu.Lock()
		n, abandoned := len(cc.calls), cc.abandoned
		cc.mu.Unlock()
		if st := c.Stats(); st.Dials != 1 || st.Errors != 4 || n != 0 || abandoned != 0 {
			t.Fatalf("%d in flight, %d abandoned, stats %+v", n, abandoned, st)
		}
	})
}

// TestGetIntoAbandoned: the late reply to a GetInto whose caller left is dropped, not read into
// the memory the caller lent.
func TestGetIntoAbandoned(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		g := newGate()
		b := newBackend()
		b.hook = g.hook
		b.set("c", "slow", Value{Data: []byte("late value")})
		pn := newPipeNet()
		serveOn(t, pn, b)
		c := pipeClient(t, pn, WithTimeout(time.Second))
		buf := make([]byte, 0, 64)
		if _, err := c.GetInto(context.Background(), "peer:1", "c", []byte("slow"), buf); !errors.Is(err, ErrUnavailable) {
			t.Fatal(err)
		}
		g.release()
		synctest.Wait()
		if got := buf[:10]; !bytes.Equal(got, make([]byte, 10)) {
			t.Fatalf("the late reply was read into the memory lent: %q", got)
		}
	})
}

// TestClientDrainsUnansweredConnection: a connection on which more than half of the slots hold
// requests whose callers left (a peer that does not answer) takes no new request; the next one
// goes to a new connection, and the old one is closed once nobody waits on it.
func TestClientDrainsUnansweredConnection(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		g := newGate()
		b := newBackend()
		b.hook = g.hook
		pn := newPipeNet()
		serveOn(t, pn, b)
		c := pipeClient(t, pn, WithTimeout(time.Second))
		var wg sync.WaitGroup
		for range MaxConnRequests/2 + 1 {
			wg.Go(func() {
				if err := get(c, "peer:1", "slow"); !errors.Is(err, ErrUnavailable) {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if live := c.pool("peer:1").live(); len(live) != 0 {
			t.Fatalf("the unanswered connection is not closed: %d live", len(live))
		}
		g.release()
		if err := get(c, "peer:1", "k"); StatusOf(err) != StatusNotFound {
			t.Fatal(err)
		}
		if st := c.Stats(); st.Dials != 2 || st.OpenConns != 1 {
			t.Fatalf("stats %+v", st)
		}
	})
}

// TestClientWaitsForRoom: a caller that finds every connection full waits for room, then goes.
func TestClientWaitsForRoom(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		g := newGate()
		b := newBackend()
		b.hook = g.hook
		pn := newPipeNet()
		serveOn(t, pn, b)
		c := pipeClient(t, pn)
		get(c, "peer:1", "k") // dial first: the calls below wait for room, not for the dial
		var wg sync.WaitGroup
		for range MaxConnRequests + 1 {
			wg.Go(func() {
				if err := get(c, "peer:1", "slow"); StatusOf(err) != StatusNotFound {
					t.Error(err)
				}
			})
		}
		synctest.Wait()
		if st := c.Stats(); st.Waits != 1 || b.ops[OpGet].Load() != MaxConnRequests+1 {
			t.Errorf("%d requests at the server; stats %+v", b.ops[OpGet].Load(), st)
		}
		g.release()
		wg.Wait()
		if st := c.Stats(); st.Dials != 1 || b.ops[OpGet].Load() != MaxConnRequests+2 {
			t.Fatalf("stats %+v", st)
		}
	})
}

// TestConnsPerPeer: with WithConnsPerPeer(n), a call that finds every connection busy dials
// another, up to n; one connection is the default, however many callers.
func TestConnsPerPeer(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		g := newGate()
		b := newBackend()
		b.hook = g.hook
		pn := newPipeNet()
		serveOn(t, pn, b)
		one, three := pipeClient(t, pn), pipeClient(t, pn, WithConnsPerPeer(3))
		var wg sync.WaitGroup
		for range 5 {
			for _, c := range []*Client{one, three} {
				wg.Go(func() { get(c, "peer:1", "slow") })
				synctest.Wait()
			}
		}
		g.release()
		wg.Wait()
		if d1, d3 := one.Stats().Dials, three.Stats().Dials; d1 != 1 || d3 != 3 {
			t.Fatalf("dials %d and %d", d1, d3)
		}
	})
}

// TestClientIdleConnectionClosed: a connection no call has used for the idle connection timeout
// is closed by the next call, which dials a new one.
func TestClientIdleConnectionClosed(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := newBackend()
		pn := newPipeNet()
		serveOn(t, pn, b)
		c := pipeClient(t, pn, WithIdleConnTimeout(time.Minute))
		get(c, "peer:1", "k")
		time.Sleep(59 * time.Second)
		get(c, "peer:1", "k")
		time.Sleep(61 * time.Second)
		get(c, "peer:1", "k")
		if st := c.Stats(); st.Dials != 2 || st.OpenConns != 1 {
			t.Fatalf("stats %+v", st)
		}
	})
}

// TestClientClose: Close fails the calls in flight and the later ones with ErrUnavailable, and
// waits for the connections' readers.
func TestClientClose(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		g := newGate()
		b := newBackend()
		b.hook = g.hook
		pn := newPipeNet()
		serveOn(t, pn, b)
		c := pipeClient(t, pn)
		errc := make(chan error, 1)
		go func() { errc <- get(c, "peer:1", "slow") }()
		synctest.Wait()
		c.Close()
		for _, err := range []error{<-errc, get(c, "peer:1", "k")} {
			if pe := checkErr(t, err, "peer:1", OpGet, ErrUnavailable); !errors.Is(err, net.ErrClosed) || pe.Msg != "client closed" {
				t.Fatalf("%v", err)
			}
		}
		if st := c.Stats(); st.OpenConns != 0 {
			t.Fatalf("stats %+v", st)
		}
		g.release()
	})
}

func TestUnreachablePeer(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c := newClient(t)
	checkErr(t, get(c, addr, "k"), addr, OpGet, ErrUnavailable)
	if st := c.Stats(); st.Dials != 0 || st.Errors != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestOptions(t *testing.T) {
	t.Parallel()
	for _, o := range []ClientOption{WithTimeout(-1), WithDialTimeout(-1), WithIdleConnTimeout(-1), WithConnsPerPeer(65),
		WithConnsPerPeer(-1), WithLimits(Limits{MaxKeyBytes: 1 << 30}), WithBasePath("no-slash")} {
		if _, err := NewClient(o); !errors.Is(err, ErrInvalidOption) {
			t.Errorf("NewClient: %v", err)
		}
	}
	for _, o := range []ServerOption{WithMaxConcurrent(-1), WithIdleTimeout(-1), WithServerLogger(nil),
		WithLimits(Limits{MaxValueBytes: -1 + 1<<31}), WithBasePath("/a b")} {
		if _, err := NewServer(newBackend(), o); !errors.Is(err, ErrInvalidOption) {
			t.Errorf("NewServer: %v", err)
		}
	}
	if _, err := NewServer(nil); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("nil Backend: %v", err)
	}
	s, err := NewServer(newBackend(), WithBasePath("/cache"))
	if err != nil || s.BasePath() != "/cache/" {
		t.Fatalf("%v %q", err, s.BasePath())
	}
}

func TestReadBufferHoldsResponseHead(t *testing.T) {
	// The client parses a reply's head from its read buffer.
	if clientReadBuffer < wire.MaxResponseHead {
		t.Fatalf("read buffer of %d bytes, head up to %d", clientReadBuffer, wire.MaxResponseHead)
	}
}

type traceKey struct{}

// TestTraceContext: with WithTraceContext on both sides, the Backend sees, in its context, the
// trace context the caller's context held, for every op that reaches it with one; a caller
// without one, or with one over MaxTraceBytes, sends none.
func TestTraceContext(t *testing.T) {
	t.Parallel()
	inject := func(ctx context.Context) []byte { b, _ := ctx.Value(traceKey{}).([]byte); return b }
	extract := func(ctx context.Context, b []byte) context.Context {
		return context.WithValue(ctx, traceKey{}, string(b)) // a copy: b aliases the request
	}
	b := newBackend()
	b.set("c", "k", Value{Data: []byte("v")})
	var mu sync.Mutex
	seen := map[Op][]string{}
	b.hook = func(ctx context.Context, op Op, _ []byte) error {
		got, _ := ctx.Value(traceKey{}).(string)
		mu.Lock()
		seen[op] = append(seen[op], got)
		mu.Unlock()
		return nil
	}
	_, addr := startServer(t, b, WithTraceContext(inject, extract))
	c := newClient(t, WithTraceContext(inject, extract))
	tp := []byte("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	ctx := context.WithValue(context.Background(), traceKey{}, tp)
	if _, err := c.Get(ctx, addr, "c", []byte("k")); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, addr, "c", []byte("k2"), Value{Data: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetMany(ctx, addr, "c", keysOf("k", "k2")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(context.Background(), addr, "c", []byte("k")); err != nil {
		t.Fatal(err)
	}
	long := context.WithValue(context.Background(), traceKey{}, bytes.Repeat([]byte("t"), MaxTraceBytes+1))
	if _, err := c.Get(long, addr, "c", []byte("k")); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := map[Op][]string{OpGet: {string(tp), "", ""}, OpSet: {string(tp)}, OpGetMany: {string(tp)}}
	for op, w := range want {
		if !slices.Equal(seen[op], w) {
			t.Errorf("%v: the Backend saw trace contexts %q, want %q", op, seen[op], w)
		}
	}
}
