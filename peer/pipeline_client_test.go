package peer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// echoBackend answers every op with replies derived from the request, so a client can check that
// it got the reply to its own request: Get of k is "get:k", Peek "peek:k", the entries of GetMany
// and PeekMany likewise; a key starting with "nf" is not found, one starting with "e-" fails with
// StatusInternal and the key as message; Set, Remove and Clear succeed when the key (the first key, the generation) is
// even-numbered and fail with StatusInternal and the key as message otherwise. hook, if set, is
// called first with the (first) key of every request.
type echoBackend struct {
	hook func(ctx context.Context, key string)
}

func (b *echoBackend) enter(ctx context.Context, key string) {
	if b.hook != nil {
		b.hook(ctx, key)
	}
}

func echoValue(prefix string, key []byte) (Value, error) {
	if bytes.HasPrefix(key, []byte("nf")) {
		return Value{}, fmt.Errorf("%s: %w", key, ErrNotFound)
	}
	if bytes.HasPrefix(key, []byte("e-")) {
		return Value{}, errors.New(string(key))
	}
	return Value{Data: append([]byte(prefix), key...)}, nil
}

func (b *echoBackend) Get(ctx context.Context, _ string, key []byte) (Value, error) {
	b.enter(ctx, string(key))
	return echoValue("get:", key)
}

func (b *echoBackend) Peek(ctx context.Context, _ string, key []byte) (Value, error) {
	b.enter(ctx, string(key))
	return echoValue("peek:", key)
}

func (b *echoBackend) many(ctx context.Context, prefix string, keys [][]byte) ([]Result, error) {
	b.enter(ctx, string(keys[0]))
	rs := make([]Result, len(keys))
	for i, k := range keys {
		rs[i].Value, rs[i].Err = echoValue(prefix, k)
	}
	return rs, nil
}

func (b *echoBackend) GetMany(ctx context.Context, _ string, keys [][]byte) ([]Result, error) {
	return b.many(ctx, "get:", keys)
}

func (b *echoBackend) PeekMany(ctx context.Context, _ string, keys [][]byte) ([]Result, error) {
	return b.many(ctx, "peek:", keys)
}

// evenKey reports whether a key ends with an even number.
func evenKey(key string) bool {
	n, _ := strconv.Atoi(key[strings.LastIndexAny(key, "-:")+1:])
	return n%2 == 0
}

func (b *echoBackend) ack(ctx context.Context, key string) error {
	b.enter(ctx, key)
	if evenKey(key) {
		return nil
	}
	return errors.New(key)
}

func (b *echoBackend) Set(ctx context.Context, _ string, key []byte, v Value) error {
	if string(v.Data) != "set:"+string(key) {
		return fmt.Errorf("value %q for %q: %w", v.Data, key, ErrBadRequest)
	}
	return b.ack(ctx, string(key))
}

func (b *echoBackend) Remove(ctx context.Context, _ string, keys [][]byte) error {
	return b.ack(ctx, string(keys[0]))
}

func (b *echoBackend) Clear(ctx context.Context, _ string, gen uint64) error {
	return b.ack(ctx, "gen-"+strconv.FormatUint(gen, 10))
}

var (
	_ BatchPeekBackend = (*echoBackend)(nil)
	_ BatchBackend     = (*echoBackend)(nil)
	_ PeekBackend      = (*echoBackend)(nil)
	_ WriteBackend     = (*echoBackend)(nil)
)

// echoOp sends one request of op (0..6: Get, Peek, GetMany, PeekMany, Set, Remove, Clear) for
// key number n on c, and checks that the outcome is the reply to that request. It returns the
// error of the call when it is not an answer of the peer (ErrUnavailable, ...), nil otherwise.
func echoOp(ctx context.Context, c *Client, addr string, op, n int) error {
	key := fmt.Sprintf("k-%d", n)
	switch n % 7 {
	case 3:
		key = fmt.Sprintf("nf-%d", n)
	case 5:
		key = fmt.Sprintf("e-%d", n)
	}
	answered := func(err error) bool {
		var pe *Error
		return errors.As(err, &pe) && pe.Status != StatusOK
	}
	// check checks the value (or error) v, err for key k.
	check := func(prefix, k string, v Value, err error) error {
		if err != nil && !answered(err) {
			return err // not an answer: the caller decides
		}
		if strings.HasPrefix(k, "nf") {
			if StatusOf(err) != StatusNotFound {
				return fmt.Errorf("%s%s: got %q, %v; want not found", prefix, k, v.Data, err)
			}
			return nil
		}
		if strings.HasPrefix(k, "e-") {
			var pe *Error
			if StatusOf(err) != StatusInternal || !errors.As(err, &pe) || pe.Msg != k {
				return fmt.Errorf("%s%s: got %q, %v; want the error %q", prefix, k, v.Data, err, k)
			}
			return nil
		}
		if err != nil || string(v.Data) != prefix+k {
			return fmt.Errorf("%s%s: got %q, %v", prefix, k, v.Data, err)
		}
		return nil
	}
	wantValue := func(prefix string, v Value, err error) error { return check(prefix, key, v, err) }
	wantBatch := func(prefix string, rs []Result, err error) error {
		if err != nil {
			if answered(err) {
				return fmt.Errorf("%s many %s: %v", prefix, key, err)
			}
			return err
		}
		want := []string{key, "b" + key, "nf" + key}
		if len(rs) != len(want) {
			return fmt.Errorf("%s many %s: %d results", prefix, key, len(rs))
		}
		for i, k := range want {
			if err := check(prefix, k, rs[i].Value, rs[i].Err); err != nil {
				return fmt.Errorf("many, entry %d: %w", i, err)
			}
		}
		return nil
	}
	wantAck := func(what, key string, err error) error {
		if evenKey(key) {
			if err != nil && answered(err) {
				return fmt.Errorf("%s %s: %v", what, key, err)
			}
			return err
		}
		var pe *Error
		if StatusOf(err) != StatusInternal || !errors.As(err, &pe) || pe.Msg != key {
			if err == nil || answered(err) {
				return fmt.Errorf("%s %s: %v, want the peer's error %q", what, key, err, key)
			}
			return err
		}
		return nil
	}
	switch op % 7 {
	case 0:
		v, err := c.Get(ctx, addr, "c", []byte(key))
		return wantValue("get:", v, err)
	case 1:
		v, err := c.Peek(ctx, addr, "c", []byte(key))
		return wantValue("peek:", v, err)
	case 2:
		rs, err := c.GetMany(ctx, addr, "c", keysOf(key, "b"+key, "nf"+key))
		return wantBatch("get:", rs, err)
	case 3:
		rs, err := c.PeekMany(ctx, addr, "c", keysOf(key, "b"+key, "nf"+key))
		return wantBatch("peek:", rs, err)
	case 4:
		return wantAck("set", key, c.Set(ctx, addr, "c", []byte(key), Value{Data: []byte("set:" + key)}))
	case 5:
		return wantAck("remove", key, c.Remove(ctx, addr, "c", keysOf(key, "x")))
	default:
		return wantAck("clear", fmt.Sprintf("gen-%d", n+1), c.Clear(ctx, addr, "c", uint64(n+1)))
	}
}

// pipelinedOps are the ops of echoOp (all of them: with pipelining, every op goes on the
// multiplexed connections).
var pipelinedOps = []int{0, 1, 2, 3, 4, 5, 6}

// pipeOp returns the i-th of pipelinedOps, round robin.
func pipeOp(i int) int { return pipelinedOps[i%len(pipelinedOps)] }

// inlineEcho is an echoBackend that answers Gets inline (InlineBackend), as the root package's
// nodes answer hits, without calling its hook, unless the key starts with "slow": those are served
// by Get, on a goroutine of their own on a multiplexed connection.
type inlineEcho struct{ echoBackend }

func (b *inlineEcho) GetInline(_ string, key []byte) (Value, bool, error) {
	if bytes.HasPrefix(key, []byte("slow")) {
		return Value{}, false, nil
	}
	v, err := echoValue("get:", key)
	return v, true, err
}

var _ InlineBackend = (*inlineEcho)(nil)

// connCounter counts the Write and Read calls on the connections it wraps, and the bytes read;
// beforeWrite, when set, is called before each Write.
type connCounter struct {
	writes, reads, bytesRead atomic.Int64
	beforeWrite              atomic.Value // func()
}

type countedConn struct {
	net.Conn
	n *connCounter
}

func (c *countedConn) Write(b []byte) (int, error) {
	c.n.writes.Add(1)
	if f, ok := c.n.beforeWrite.Load().(func()); ok {
		f()
	}
	return c.Conn.Write(b)
}

func (c *countedConn) Read(b []byte) (int, error) {
	c.n.reads.Add(1)
	n, err := c.Conn.Read(b)
	c.n.bytesRead.Add(int64(n))
	return n, err
}

// countedListener wraps the connections it accepts in countedConns.
type countedListener struct {
	net.Listener
	n *connCounter
}

func (l countedListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countedConn{Conn: nc, n: l.n}, nil
}

// startCountedServer serves b like startServer, counting the reads and writes of its
// connections (the upgrade handshake's included).
func startCountedServer(t testing.TB, b Backend) (*Server, *connCounter, string) {
	t.Helper()
	s, err := NewServer(b, WithServerLogger(quietLogger))
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &connCounter{}
	done := make(chan error, 1)
	go func() { done <- s.Serve(countedListener{Listener: l, n: n}) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
	})
	return s, n, l.Addr().String()
}

// pipelined returns a client with one multiplexed connection per peer whose connections are
// counted.
func pipelined(t testing.TB, opts ...ClientOption) (*Client, *connCounter) {
	t.Helper()
	c := newClient(t, append([]ClientOption{WithPipelining(1)}, opts...)...)
	n := &connCounter{}
	c.wrapConn = func(nc net.Conn) net.Conn { return &countedConn{Conn: nc, n: n} }
	return c, n
}

// waitUntil waits, yielding, until cond holds (it fails the test after 10 s). cond reads state
// that other goroutines change without telling the test.
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting until %s", what)
		}
		runtime.Gosched()
		time.Sleep(100 * time.Microsecond)
	}
}

// liveMuxes returns the multiplexed connections of the client to addr that are open.
func liveMuxes(c *Client, addr string) []*muxClientConn {
	p := c.pool(addr)
	p.mu.Lock()
	defer p.mu.Unlock()
	var live []*muxClientConn
	for _, pc := range p.muxes {
		if !pc.dead.Load() {
			live = append(live, pc)
		}
	}
	return live
}

// onlyMux returns the single multiplexed connection of the client to addr.
func onlyMux(t testing.TB, c *Client, addr string) *muxClientConn {
	t.Helper()
	live := liveMuxes(c, addr)
	if len(live) != 1 {
		t.Fatalf("%d multiplexed connections", len(live))
	}
	return live[0]
}

// queued returns the number of ids in flight on pc, and how many of their callers still wait.
func (pc *muxClientConn) queued() (n, live int) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return pc.n, pc.live
}

// holdsRole reports whether pc's reader role is held by a call.
func (pc *muxClientConn) holdsRole() bool {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return pc.reader != nil
}

// checkIdle checks that nothing is left on pc but abandoned ids: no caller waits, nobody holds
// the reader role or writes, and the count of calls given the connection is that of its ids.
func (pc *muxClientConn) checkIdle(t testing.TB) {
	t.Helper()
	pc.mu.Lock()
	defer pc.mu.Unlock()
	inTable := 0
	for _, c := range pc.calls {
		if c != nil {
			inTable++
		}
	}
	if pc.live != 0 || pc.reader != nil || pc.writing || int(pc.inflight.Load()) != pc.n || inTable != pc.n ||
		len(pc.free)+pc.n != len(pc.calls) && !pc.dead.Load() {
		t.Errorf("connection left with %d waiting, reader %v, writing %v, %d in flight for %d ids (%d in the table, %d free)",
			pc.live, pc.reader != nil, pc.writing, pc.inflight.Load(), pc.n, inTable, len(pc.free))
	}
}

// gate blocks the backend's requests for chosen keys until released.
type gate struct {
	mu      sync.Mutex
	keys    map[string]chan struct{}
	entered chan string
}

func newGate(keys ...string) *gate {
	g := &gate{keys: map[string]chan struct{}{}, entered: make(chan string, 64)}
	for _, k := range keys {
		g.keys[k] = make(chan struct{})
	}
	return g
}

func (g *gate) hook(ctx context.Context, key string) {
	g.mu.Lock()
	ch := g.keys[key]
	g.mu.Unlock()
	if ch == nil {
		return
	}
	g.entered <- key
	select {
	case <-ch:
	case <-ctx.Done():
	}
}

func (g *gate) release(key string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if ch := g.keys[key]; ch != nil {
		close(ch)
		delete(g.keys, key)
	}
}

func (g *gate) releaseAll() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for k, ch := range g.keys {
		close(ch)
		delete(g.keys, k)
	}
}

// TestPipelinedOpsManyCallers: many goroutines send every op through one multiplexed connection
// and each gets the reply to its own request; requests share writes and reads, on both sides.
func TestPipelinedOpsManyCallers(t *testing.T) {
	s, srv, addr := startCountedServer(t, &inlineEcho{})
	c, cli := pipelined(t)
	const goroutines, each = 32, 70
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				n := g*each + i
				if err := echoOp(context.Background(), c, addr, pipeOp(n), n/5); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	st := c.Stats()
	const requests = goroutines * each
	t.Logf("%d requests: client %d writes, %d reads; server %d reads, %d writes; %+v",
		requests, cli.writes.Load(), cli.reads.Load(), srv.reads.Load(), srv.writes.Load(), st)
	if st.Dials != 1 || st.Requests != requests || st.Retries != 0 || st.OpenConns != 1 || st.MuxConns != 1 ||
		st.Framing1Fallbacks != 0 {
		t.Fatalf("stats %+v", st)
	}
	if sst := s.Stats(); sst.Multiplexed != 1 || sst.Requests != requests {
		t.Fatalf("server stats %+v", sst)
	}
	if st.SharedWrites == 0 || st.SharedReads == 0 || cli.writes.Load() >= requests || srv.reads.Load() >= requests ||
		srv.writes.Load() >= requests {
		t.Fatalf("no sharing: client %d writes; server %d reads, %d writes; %+v",
			cli.writes.Load(), srv.reads.Load(), srv.writes.Load(), st)
	}
}

// TestPipelinedWritesCombine holds a write in progress while requests queue up: they go out
// together in the next write, the server answers them (inline) with one write, and the replies
// are read by few callers.
func TestPipelinedWritesCombine(t *testing.T) {
	_, srv, addr := startCountedServer(t, &inlineEcho{})
	c, cli := pipelined(t)
	if err := echoOp(context.Background(), c, addr, 0, 0); err != nil {
		t.Fatal(err)
	}
	pc := onlyMux(t, c, addr)
	held, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	cli.beforeWrite.Store(func() {
		once.Do(func() {
			close(held)
			<-release
		})
	})
	const n = 20
	errs := make(chan error, n+1)
	go func() { errs <- echoOp(context.Background(), c, addr, 0, 1000) }()
	<-held // the first request's write is in progress
	for i := range n {
		go func() { errs <- echoOp(context.Background(), c, addr, 0, i) }()
	}
	waitUntil(t, "all the requests are queued", func() bool { q, _ := pc.queued(); return q == n+1 })
	w0, sw0, sr0, r0 := cli.writes.Load(), srv.writes.Load(), srv.reads.Load(), cli.reads.Load()
	close(release)
	for range n + 1 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	st := c.Stats()
	t.Logf("client %d writes, %d reads; server %d reads, %d writes; %+v", cli.writes.Load()-w0,
		cli.reads.Load()-r0, srv.reads.Load()-sr0, srv.writes.Load()-sw0, st)
	// The write held (counted before it was held), then one write for the n requests.
	if got := cli.writes.Load() - w0; got != 1 || st.SharedWrites != n {
		t.Fatalf("%d writes after the held one, %d shared writes; want 1 and %d", got, st.SharedWrites, n)
	}
	// The server reads the n requests at once (a few reads at most) and answers them together.
	if got := srv.writes.Load() - sw0; got > 4 {
		t.Fatalf("server: %d writes for %d requests", got, n+1)
	}
	if st.SharedReads < n/2 {
		t.Fatalf("%d replies read by another caller", st.SharedReads)
	}
}

// TestPipelinedSlowRequestHoldsUpNone: a request that the peer serves slowly (its backend holds
// it) holds up none of the requests sent after it on the same connection: they are all answered,
// of every op, while it is still pending; then it gets its own reply.
func TestPipelinedSlowRequestHoldsUpNone(t *testing.T) {
	g := newGate("slow")
	defer g.releaseAll()
	_, addr := startServer(t, &echoBackend{hook: g.hook})
	c, _ := pipelined(t)
	slow := goEchoGet(c, addr, "slow")
	<-g.entered
	pc := onlyMux(t, c, addr)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 30 {
				n := g*30 + i
				if err := echoOp(ctxTimeout(t, 5*time.Second), c, addr, pipeOp(n), n); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	select {
	case err := <-slow:
		t.Fatalf("the slow request returned before its backend let it go: %v", err)
	default:
	}
	if q, live := pc.queued(); q != 1 || live != 1 {
		t.Fatalf("%d ids in flight, %d waiting; want the slow one only", q, live)
	}
	g.release("slow")
	if err := <-slow; err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Dials != 1 || st.MuxConns != 1 || st.Requests != 241 || st.Retries != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestPipelinedPeek: Peek and PeekMany go on the multiplexed connection like every op, and are
// answered while a slow request is pending on it (the server answers them from memory at once).
func TestPipelinedPeek(t *testing.T) {
	g := newGate("slow")
	defer g.releaseAll()
	s, addr := startServer(t, &echoBackend{hook: g.hook})
	c, _ := pipelined(t)
	slow := make(chan error, 1)
	go func() { _, err := c.Get(context.Background(), addr, "c", []byte("slow")); slow <- err }()
	<-g.entered
	pc := onlyMux(t, c, addr)
	for i := range 10 {
		if err := echoOp(ctxTimeout(t, 2*time.Second), c, addr, 1+2*(i%2), i); err != nil { // Peek, PeekMany
			t.Fatal(err)
		}
	}
	if q, _ := pc.queued(); q != 1 {
		t.Fatalf("%d requests on the connection", q)
	}
	if st := c.Stats(); st.Dials != 1 || st.Requests != 11 {
		t.Fatalf("stats %+v", st)
	}
	if st := s.Stats(); st.ByOp[OpPeek] != 5 || st.ByOp[OpPeekMany] != 5 || st.Multiplexed != 1 {
		t.Fatalf("server stats %+v", st)
	}
	g.release("slow")
	if err := <-slow; err != nil {
		t.Fatal(err)
	}
}

// TestPipelinedTimeout: with WithTimeout, a request that gets no reply fails at its deadline with
// a timeout; its id stays in flight and the connection goes on carrying the next requests. When
// the late reply comes, it is read and dropped.
func TestPipelinedTimeout(t *testing.T) {
	g := newGate("slow")
	defer g.releaseAll()
	_, addr := startServer(t, &echoBackend{hook: g.hook})
	c, _ := pipelined(t, WithTimeout(200*time.Millisecond))
	if err := echoOp(context.Background(), c, addr, 0, 0); err != nil {
		t.Fatal(err)
	}
	pc := onlyMux(t, c, addr)
	start := time.Now()
	_, err := c.Get(context.Background(), addr, "c", []byte("slow"))
	if d := time.Since(start); d < 150*time.Millisecond || d > 2*time.Second {
		t.Errorf("timed out after %v", d)
	}
	checkErr(t, err, addr, ErrUnavailable)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("%v is not a timeout", err)
	}
	if q, live := pc.queued(); q != 1 || live != 0 {
		t.Fatalf("%d ids in flight, %d waiting; want the abandoned one", q, live)
	}
	if err := echoOp(context.Background(), c, addr, 0, 2); err != nil {
		t.Fatal(err)
	}
	g.release("slow")
	// The next request's reader reads the late reply too (or it is already in).
	settle(t, c, pc, addr, 4)
}

// TestPipelinedCancel cancels requests in flight: the reader (the first request, whose reply the
// backend holds) and another one held. Both return at once with the context's error; the others
// get their replies on the same connection without waiting for the held ones.
func TestPipelinedCancel(t *testing.T) {
	g := newGate("slow", "slow-2")
	defer g.releaseAll()
	_, addr := startServer(t, &echoBackend{hook: g.hook})
	c, _ := pipelined(t)
	if err := echoOp(context.Background(), c, addr, 0, 0); err != nil {
		t.Fatal(err)
	}
	pc := onlyMux(t, c, addr)
	readerCtx, cancelReader := context.WithCancel(context.Background())
	defer cancelReader()
	readerErr := make(chan error, 1)
	go func() {
		_, err := c.Get(readerCtx, addr, "c", []byte("slow"))
		readerErr <- err
	}()
	<-g.entered
	waitUntil(t, "the first request reads", pc.holdsRole)
	otherCtx, cancelOther := context.WithCancel(context.Background())
	defer cancelOther()
	otherErr := make(chan error, 1)
	go func() {
		_, err := c.Get(otherCtx, addr, "c", []byte("slow-2"))
		otherErr <- err
	}()
	<-g.entered
	for _, tc := range []struct {
		cancel func()
		done   chan error
	}{{cancelReader, readerErr}, {cancelOther, otherErr}} {
		start := time.Now()
		tc.cancel()
		err := <-tc.done
		if d := time.Since(start); d > time.Second {
			t.Errorf("cancelled request returned after %v", d)
		}
		checkErr(t, err, addr, ErrUnavailable)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("%v does not match context.Canceled", err)
		}
	}
	if q, live := pc.queued(); q != 2 || live != 0 {
		t.Fatalf("%d ids in flight, %d waiting; want 2 and 0", q, live)
	}
	// The others go on while the cancelled ones' ids are in flight.
	for i := range 20 {
		if err := echoOp(context.Background(), c, addr, pipeOp(i), i); err != nil {
			t.Fatal(err)
		}
	}
	if q, _ := pc.queued(); q != 2 {
		t.Fatalf("%d ids in flight; want the 2 abandoned ones", q)
	}
	g.releaseAll()
	settle(t, c, pc, addr, 0)
}

// settle sends requests (echoOp from n on) on the client's only connection pc until no id is in
// flight on it (the late replies were read and dropped), then checks that pc is idle and that the
// client kept it: one dial, one open connection, no retry.
func settle(t *testing.T, c *Client, pc *muxClientConn, addr string, n int) {
	t.Helper()
	for i := n; ; i += 2 {
		if err := echoOp(context.Background(), c, addr, 0, i); err != nil {
			t.Fatal(err)
		}
		if q, _ := pc.queued(); q == 0 {
			break
		}
	}
	pc.checkIdle(t)
	if st := c.Stats(); st.Dials != 1 || st.OpenConns != 1 || st.Retries != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestPipelinedDepth: a connection carries at most pipeDepth requests; beyond it, requests use
// another connection (up to WithPipelining's number) or wait for room, within their deadline.
func TestPipelinedDepth(t *testing.T) {
	g := newGate("slow-0", "slow-1", "slow-2", "slow-3")
	defer g.releaseAll()
	_, addr := startServer(t, &echoBackend{hook: g.hook})
	c, _ := pipelined(t, WithPipelining(2))
	c.pipeDepth = 2
	errs := make(chan error, 8)
	get := func(ctx context.Context, key string) {
		v, err := c.Get(ctx, addr, "c", []byte(key))
		if err == nil && string(v.Data) != "get:"+key {
			err = fmt.Errorf("%s: got %q", key, v.Data)
		}
		errs <- err
	}
	inFlight := func() (n int) {
		for _, pc := range liveMuxes(c, addr) {
			q, _ := pc.queued()
			n += q
		}
		return n
	}
	// Two requests held by the backend: each on a connection of its own (the one with the
	// fewest requests in flight, while there may be more connections).
	go get(context.Background(), "slow-0")
	<-g.entered
	go get(context.Background(), "slow-1")
	<-g.entered
	if st := c.Stats(); st.Dials != 2 || st.MuxConns != 2 {
		t.Fatalf("stats %+v", st)
	}
	// Two more fill both connections to the depth.
	go get(context.Background(), "slow-2")
	go get(context.Background(), "slow-3")
	for range 2 {
		<-g.entered
	}
	// The next one waits, and gives up at its deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	get(ctx, "k-0")
	err := <-errs
	checkErr(t, err, addr, ErrUnavailable)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("%v does not match context.DeadlineExceeded", err)
	}
	// Another waits until a reply makes room.
	go get(context.Background(), "k-2")
	waitUntil(t, "a request waits", func() bool { return c.Stats().Waits == 2 })
	g.release("slow-0")
	for range 2 { // slow-0, and k-2 in the room it made
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := inFlight(); n != 3 {
		t.Fatalf("%d requests in flight, want 3", n)
	}
	g.releaseAll()
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if st := c.Stats(); st.Dials != 2 || st.OpenConns != 2 || st.Waits != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// TestPipelinedValueOverLimit: a value over the client's limit fails its request alone; the
// connection goes on carrying the others.
func TestPipelinedValueOverLimit(t *testing.T) {
	_, addr := startServer(t, &inlineEcho{})
	c, _ := pipelined(t, WithClientLimits(Limits{MaxValueBytes: 100}))
	big := strings.Repeat("b", 200)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				key := fmt.Sprintf("k-%d", g*50+i)
				if i%5 == 0 {
					key = big
				}
				v, err := c.Get(context.Background(), addr, "c", []byte(key))
				switch {
				case key == big && StatusOf(err) != StatusTooLarge:
					t.Errorf("big value: %v", err)
				case key != big && (err != nil || string(v.Data) != "get:"+key):
					t.Errorf("%s: %q, %v", key, v.Data, err)
				}
			}
		})
	}
	wg.Wait()
	if st := c.Stats(); st.Dials != 1 || st.OpenConns != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestPipelinedClientClose: Close ends the requests in flight with ErrClosed.
func TestPipelinedClientClose(t *testing.T) {
	g := newGate("slow-0", "slow-1", "slow-2", "slow-3", "slow-4")
	defer g.releaseAll()
	_, addr := startServer(t, &echoBackend{hook: g.hook})
	c, _ := pipelined(t)
	errs := make(chan error, 5)
	for i := range 5 {
		go func() { _, err := c.Get(context.Background(), addr, "c", []byte(fmt.Sprint("slow-", i))); errs <- err }()
	}
	for range 5 {
		<-g.entered
	}
	c.Close()
	for range 5 {
		select {
		case err := <-errs:
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("%v does not match ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a request in flight did not end at Close")
		}
	}
	if st := c.Stats(); st.OpenConns != 0 || st.MuxConns != 0 {
		t.Fatalf("stats %+v", st)
	}
	if _, err := c.Get(context.Background(), addr, "c", []byte("k")); !errors.Is(err, ErrUnavailable) {
		t.Fatal(err)
	}
}

// TestPipelinedIdleAndStale: an idle multiplexed connection is closed by the client's sweep; one
// that the server closed is replaced, and the request sent again.
func TestPipelinedIdleAndStale(t *testing.T) {
	s, addr := startServer(t, &echoBackend{}, WithIdleTimeout(50*time.Millisecond))
	c, _ := pipelined(t)
	if err := echoOp(context.Background(), c, addr, 0, 0); err != nil {
		t.Fatal(err)
	}
	c.sweep(time.Now().Add(DefaultIdleConnTimeout + time.Second))
	if st := c.Stats(); st.OpenConns != 0 || st.Dials != 1 || st.MuxConns != 0 {
		t.Fatalf("after the sweep: %+v", st)
	}
	if err := echoOp(context.Background(), c, addr, 0, 2); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the server closes the idle connection", func() bool { return s.Stats().ActiveConns == 0 })
	if err := echoOp(context.Background(), c, addr, 0, 4); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Dials != 3 || st.Retries != 1 || st.OpenConns != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestPipelinedStress: 64 goroutines send random ops through two multiplexed connections of small
// depth to a server that delays some requests, and cancel some requests or give them short
// deadlines (so connections also fill with abandoned ids and are replaced). Every reply is the
// one to its request, and every other failure is ErrUnavailable.
func TestPipelinedStress(t *testing.T) {
	b := &echoBackend{hook: func(ctx context.Context, key string) {
		if h := len(key); h > 0 && key[h-1]%4 == 0 {
			// Latency of the backend, as a real one has.
			time.Sleep(time.Duration(key[h-1]%3) * time.Millisecond)
		}
	}}
	_, addr := startServer(t, b)
	c, _ := pipelined(t, WithPipelining(2), WithTimeout(time.Second))
	c.pipeDepth = 8
	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	for g := range 64 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for i := range 60 {
				ctx, cancel := context.Background(), context.CancelFunc(func() {})
				switch rng.IntN(6) {
				case 0:
					ctx, cancel = context.WithTimeout(context.Background(), time.Duration(rng.IntN(3000))*time.Microsecond)
				case 1:
					ctx, cancel = context.WithCancel(context.Background())
					time.AfterFunc(time.Duration(rng.IntN(2000))*time.Microsecond, cancel)
				}
				err := echoOp(ctx, c, addr, rng.IntN(7), g*100+i)
				cancel()
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, ErrUnavailable):
					failed.Add(1)
				default:
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	st := c.Stats()
	t.Logf("%d ok, %d unavailable; %+v", ok.Load(), failed.Load(), st)
	if ok.Load() < 64*60/2 {
		t.Fatalf("only %d requests succeeded", ok.Load())
	}
	// Nothing is left behind: every connection holds abandoned ids only.
	p := c.pool(addr)
	p.mu.Lock()
	for _, pc := range p.muxes {
		pc.checkIdle(t)
	}
	waiters := len(p.muxWaiters)
	p.mu.Unlock()
	if waiters != 0 {
		t.Fatalf("%d waiters left", waiters)
	}
	for i := range 20 {
		if err := echoOp(context.Background(), c, addr, i, i); err != nil {
			t.Fatal(err)
		}
	}
}

func TestPipeliningOption(t *testing.T) {
	for _, n := range []int{-1, 1025} {
		if _, err := NewClient(WithPipelining(n)); !errors.Is(err, ErrInvalidOption) {
			t.Errorf("WithPipelining(%d): %v", n, err)
		}
	}
	for _, n := range []int{0, 1, 1024} {
		c, err := NewClient(WithPipelining(n))
		if err != nil || c.pipeConns != n {
			t.Errorf("WithPipelining(%d): %v", n, err)
		}
		c.Close()
	}
	c, err := NewClient()
	if err != nil || c.pipeConns != DefaultPipelining {
		t.Fatalf("default: %d, %v", c.pipeConns, err)
	}
	c.Close()
}
