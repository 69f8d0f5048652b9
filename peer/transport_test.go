package peer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestGetHits(t *testing.T) {
	b := newMapBackend()
	vals := map[string]Value{
		"empty":      {Data: []byte{}},
		"one":        {Data: []byte("x")},
		"1k":         {Data: random(1 << 10)},
		"100k":       {Data: random(100 << 10)}, // written with writev
		"compressed": Compress(compressible(64<<10), 0),
		"expires":    {Data: []byte("e"), Expires: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()},
	}
	for k, v := range vals {
		b.set(k, v)
	}
	s, addr := startServer(t, b)
	c := newClient(t)
	ctx := context.Background()
	for k, want := range vals {
		got, err := c.Get(ctx, addr, "c", []byte(k))
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		if !bytes.Equal(got.Data, want.Data) || got.Compressed != want.Compressed || got.Expires != want.Expires {
			t.Fatalf("%s: got %d bytes compressed=%v expires=%d", k, len(got.Data), got.Compressed, got.Expires)
		}
	}
	raw, err := mustGet(t, c, addr, "compressed").Raw(0)
	if err != nil || !bytes.Equal(raw, compressible(64<<10)) {
		t.Fatalf("Raw of the compressed value: %v", err)
	}

	// The returned data is the caller's: it does not change under later requests.
	v1 := mustGet(t, c, addr, "1k")
	keep := bytes.Clone(v1.Data)
	for range 10 {
		mustGet(t, c, addr, "100k")
		v2 := mustGet(t, c, addr, "1k")
		if &v2.Data[0] == &v1.Data[0] {
			t.Fatal("two Gets returned the same memory")
		}
	}
	if !bytes.Equal(v1.Data, keep) {
		t.Fatal("returned value changed under later requests")
	}

	cs, ss := c.Stats(), s.Stats()
	if cs.Dials != 1 || cs.OpenConns != 1 || cs.Errors != 0 || cs.Requests != int64(len(vals))+22 {
		t.Errorf("client stats %+v", cs)
	}
	if ss.Requests != cs.Requests || ss.OK != ss.Requests || ss.ActiveConns != 1 || ss.Upgrades != 1 {
		t.Errorf("server stats %+v", ss)
	}
	if ss.BytesIn != cs.BytesSent || ss.BytesOut != cs.BytesReceived {
		t.Errorf("bytes: client %+v, server %+v", cs, ss)
	}
}

func mustGet(t testing.TB, c *Client, addr, key string) Value {
	t.Helper()
	v, err := c.Get(context.Background(), addr, "c", []byte(key))
	if err != nil {
		t.Fatalf("Get %q: %v", key, err)
	}
	return v
}

// checkErr checks that err is an *Error for peer that matches want and no other status sentinel.
func checkErr(t testing.TB, err error, peer string, want error) *Error {
	t.Helper()
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatalf("%v (%T) is not an *Error", err, err)
	}
	if !matches(err, want) {
		t.Fatalf("%v does not match %v", err, want)
	}
	for _, other := range []error{ErrNotFound, ErrUnknownCache, ErrOverloaded, ErrInternal, ErrVersion, ErrClosed} {
		if other != want && matches(err, other) {
			t.Fatalf("%v also matches %v", err, other)
		}
	}
	if pe.Peer != peer || pe.Op != OpGet {
		t.Fatalf("%v: peer %q op %v", err, pe.Peer, pe.Op)
	}
	if !strings.HasPrefix(err.Error(), "peer: ") {
		t.Fatalf("message %q", err)
	}
	return pe
}

func TestGetErrorStatuses(t *testing.T) {
	b := newMapBackend()
	b.errs["notfound"] = fmt.Errorf("user 7: %w", ErrNotFound)
	b.errs["toolarge"] = ErrTooLarge
	b.errs["overloaded"] = ErrOverloaded
	b.errs["badrequest"] = fmt.Errorf("undecodable key: %w", ErrBadRequest)
	b.errs["internal"] = errors.New("database down")
	b.errs["long"] = errors.New(strings.Repeat("é", 3000))
	b.hook = func(_ context.Context, key string) {
		if key == "panic" {
			panic("backend bug")
		}
	}
	s, addr := startServer(t, b)
	c := newClient(t)
	ctx := context.Background()
	cases := []struct {
		cache, key string
		status     Status
		want       error
		msg        string
	}{
		{"c", "notfound", StatusNotFound, ErrNotFound, ""},
		{"c", "missing", StatusNotFound, ErrNotFound, ""},
		{"other", "k", StatusUnknownCache, ErrUnknownCache, "peer: unknown cache"},
		{"c", "toolarge", StatusTooLarge, ErrTooLarge, "peer: too large"},
		{"c", "overloaded", StatusOverloaded, ErrOverloaded, "peer: overloaded"},
		{"c", "badrequest", StatusBadRequest, ErrBadRequest, "undecodable key: peer: bad request"},
		{"c", "internal", StatusInternal, ErrInternal, "database down"},
		{"c", "panic", StatusInternal, ErrInternal, "backend panicked: backend bug"},
	}
	for _, tc := range cases {
		_, err := c.Get(ctx, addr, tc.cache, []byte(tc.key))
		pe := checkErr(t, err, addr, tc.want)
		if pe.Status != tc.status || pe.Msg != tc.msg {
			t.Errorf("%s: status %v msg %q, want %v %q", tc.key, pe.Status, pe.Msg, tc.status, tc.msg)
		}
	}
	_, err := c.Get(ctx, addr, "c", []byte("long"))
	pe := checkErr(t, err, addr, ErrInternal)
	if len(pe.Msg) > MaxMessageBytes || !strings.HasPrefix(pe.Msg, "éé") {
		t.Errorf("long message of %d bytes", len(pe.Msg))
	}
	// Errors are answers: the connection stays in use.
	if st := c.Stats(); st.Dials != 1 || st.Errors != int64(len(cases))+1 {
		t.Errorf("client stats %+v", st)
	}
	ss := s.Stats()
	if ss.NotFound != 2 || ss.UnknownCache != 1 || ss.TooLarge != 1 || ss.Overloaded != 1 || ss.BadRequest != 1 ||
		ss.Internal != 3 || ss.Panics != 1 || ss.Errors != 9 || ss.OK != 0 {
		t.Errorf("server stats %+v", ss)
	}
}

func TestLimitsClientSide(t *testing.T) {
	b := newMapBackend()
	b.set("small", Value{Data: make([]byte, 2000)})
	b.set("big", Value{Data: make([]byte, 20000)})
	_, addr := startServer(t, b)
	c := newClient(t, WithClientLimits(Limits{MaxKeyBytes: 8, MaxCacheName: 4, MaxValueBytes: 1000}))
	ctx := context.Background()

	_, err := c.Get(ctx, addr, "c", []byte("123456789"))
	checkErr(t, err, addr, ErrBadRequest)
	_, err = c.Get(ctx, addr, "cache", []byte("k"))
	checkErr(t, err, addr, ErrBadRequest)
	_, err = c.Get(ctx, addr, "", []byte("k"))
	checkErr(t, err, addr, ErrBadRequest)
	if st := c.Stats(); st.Dials != 0 || st.Requests != 0 {
		t.Fatalf("refused requests reached the network: %+v", st)
	}

	// A value over the limit in a frame within it.
	_, err = c.Get(ctx, addr, "c", []byte("small"))
	checkErr(t, err, addr, ErrTooLarge)
	// A frame over the limit: refused from its length prefix; the connection is closed.
	_, err = c.Get(ctx, addr, "c", []byte("big"))
	checkErr(t, err, addr, ErrTooLarge)
	if !errors.Is(err, ErrProtocol) {
		t.Errorf("frame over the limit: %v does not match ErrProtocol", err)
	}
	if st := c.Stats(); st.OpenConns != 0 {
		t.Errorf("connections left open after refused replies: %+v", st)
	}
	// The client goes on working.
	_, err = c.Get(ctx, addr, "c", []byte("none"))
	checkErr(t, err, addr, ErrNotFound)
}

func TestLimitsServerSide(t *testing.T) {
	b := newMapBackend()
	b.set("big", Value{Data: make([]byte, 2000)})
	b.set("bomb", Compress(make([]byte, 1<<20), 1))
	b.set("badc", Value{Data: []byte{0xff}, Compressed: true})
	_, addr := startServer(t, b, WithServerLimits(Limits{MaxKeyBytes: 8, MaxCacheName: 4, MaxValueBytes: 1000}))
	c := newClient(t)
	ctx := context.Background()
	for _, tc := range []struct {
		cache, key string
		want       error
	}{
		{"c", "123456789", ErrBadRequest},
		{"cache", "k", ErrBadRequest},
		{"c", "big", ErrTooLarge},
		{"c", "bomb", ErrTooLarge}, // small on the wire, too large once inflated
		{"c", "badc", ErrInternal},
	} {
		_, err := c.Get(ctx, addr, tc.cache, []byte(tc.key))
		pe := checkErr(t, err, addr, tc.want)
		if pe.Status == StatusOK {
			t.Errorf("%s: not the server's answer: %v", tc.key, err)
		}
	}
	if st := c.Stats(); st.Dials != 1 {
		t.Errorf("refusals closed the connection: %+v", st)
	}
}

func TestDecompressionBomb(t *testing.T) {
	// A server that serves an 8 MiB value compressed to a few hundred bytes to a client whose
	// limit is 1 MiB: the client refuses it from the header, without inflating it.
	bomb := Compress(make([]byte, 8<<20), 1)
	if len(bomb.Data) > 1<<10 {
		t.Fatalf("bomb of %d bytes", len(bomb.Data))
	}
	_, addr := startServer(t, valueBackend{bomb})
	c := newClient(t, WithClientLimits(Limits{MaxValueBytes: 1 << 20}))
	_, err := c.Get(context.Background(), addr, "c", []byte("warm-up")) // dial outside the measurement
	checkErr(t, err, addr, ErrTooLarge)
	c2 := newClient(t)
	if v := mustGet(t, c2, addr, "ok"); !v.Compressed {
		t.Fatal("not compressed")
	}

	var before, after runtimeMem
	before.read()
	_, err = c.Get(context.Background(), addr, "c", []byte("k"))
	after.read()
	checkErr(t, err, addr, ErrTooLarge)
	if d := after.total - before.total; d > 1<<20 {
		t.Fatalf("refusing the bomb allocated %d bytes", d)
	}
	if st := c.Stats(); st.Dials != 1 {
		t.Fatalf("a well-formed reply over the limit cost the connection: %+v", st)
	}
	// A value from a hostile peer that claims a huge length in its S2 header.
	addr2 := hostile(t, func(h *hostileConn) {
		if !h.upgrade() {
			return
		}
		for h.readFrame() == nil {
			h.writeFrame(AppendResponse(nil, &Response{Value: Value{Data: []byte{0xff, 0xff, 0xff, 0xff, 0x0f, 0}, Compressed: true}}))
		}
	})
	_, err = c2.Get(context.Background(), addr2, "c", []byte("k"))
	checkErr(t, err, addr2, ErrTooLarge)
}

func TestVersionFromClient(t *testing.T) {
	_, addr := startServer(t, newMapBackend())
	nc, br := rawUpgrade(t, addr)
	frame := AppendRequest(nil, &Request{Op: OpGet, Cache: "c", Key: []byte("k")})
	frame[0] = Version + 1
	writeFrame(t, nc, frame)
	r := readReply(t, br)
	if r.Status != StatusBadVersion || !strings.Contains(r.Msg, "speaks 1") {
		t.Fatalf("reply %+v", r)
	}
	// The connection goes on with frames of the right version.
	frame[0] = Version
	writeFrame(t, nc, frame)
	if r := readReply(t, br); r.Status != StatusNotFound {
		t.Fatalf("reply %+v", r)
	}
}

func TestCancelMidRequest(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 10)
	b := newMapBackend()
	b.set("k", Value{Data: []byte("v")})
	b.hook = func(ctx context.Context, key string) {
		if key == "slow" {
			entered <- struct{}{}
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
	}
	_, addr := startServer(t, b)
	defer close(release)
	c := framing1Client(t)
	mustGet(t, c, addr, "k")

	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-entered
		cancel()
	}()
	start := time.Now()
	_, err := c.Get(ctx, addr, "c", []byte("slow"))
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("cancelled Get returned after %v", d)
	}
	checkErr(t, err, addr, ErrUnavailable)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("%v does not match context.Canceled", err)
	}
	if st := c.Stats(); st.OpenConns != 0 {
		t.Fatalf("the interrupted connection was kept: %+v", st)
	}

	// A context deadline.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	_, err = c.Get(ctx2, addr, "c", []byte("slow"))
	checkErr(t, err, addr, ErrUnavailable)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("%v does not match context.DeadlineExceeded", err)
	}

	// The next request gets a new connection.
	mustGet(t, c, addr, "k")
	if st := c.Stats(); st.Dials != 3 || st.OpenConns != 1 {
		t.Fatalf("stats %+v", st)
	}

	// An already cancelled context fails before anything is sent.
	cancelled, cancel3 := context.WithCancel(context.Background())
	cancel3()
	_, err = c.Get(cancelled, addr, "c", []byte("k"))
	checkErr(t, err, addr, ErrUnavailable)
	if !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Dials != 3 || st.OpenConns != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestClientTimeout(t *testing.T) {
	release := make(chan struct{})
	b := newMapBackend()
	b.hook = func(ctx context.Context, key string) {
		select {
		case <-release:
		case <-ctx.Done():
		}
	}
	_, addr := startServer(t, b)
	defer close(release)
	c := newClient(t, WithTimeout(150*time.Millisecond))
	start := time.Now()
	_, err := c.Get(context.Background(), addr, "c", []byte("k"))
	if d := time.Since(start); d < 100*time.Millisecond || d > 2*time.Second {
		t.Fatalf("timed out after %v", d)
	}
	checkErr(t, err, addr, ErrUnavailable)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("%v is not a timeout", err)
	}
}

// TestLazyDeadline covers a connection whose deadline, armed by an earlier request, comes before
// the deadline of the request it carries: the reply that arrives after the earlier deadline is
// still read, and a request that gets no reply times out at its own deadline.
func TestLazyDeadline(t *testing.T) {
	const timeout = time.Second
	var slowUntil atomic.Int64 // unix nanoseconds; the backend answers "slow" no sooner
	b := newMapBackend()
	b.set("fast", Value{Data: []byte("f")})
	b.set("slow", Value{Data: []byte("s")})
	b.hook = func(ctx context.Context, key string) {
		switch key {
		case "slow":
			select {
			case <-time.After(time.Until(time.Unix(0, slowUntil.Load()))):
			case <-ctx.Done():
			}
		case "hang":
			<-ctx.Done()
		}
	}
	_, addr := startServer(t, b)
	c := newClient(t, WithTimeout(timeout), WithMaxConnsPerPeer(1))
	start := time.Now()
	if _, err := c.Get(context.Background(), addr, "c", []byte("fast")); err != nil {
		t.Fatal(err)
	}
	// The connection's deadline is now at least start+timeout. 400ms later a request runs past
	// it (the deadline stays where it is while that is in the second half of the time left).
	time.Sleep(timeout * 2 / 5)
	slowUntil.Store(start.Add(timeout + timeout/10).UnixNano())
	v, err := c.Get(context.Background(), addr, "c", []byte("slow"))
	if err != nil || string(v.Data) != "s" {
		t.Fatalf("%q, %v", v.Data, err)
	}
	// Same again, with no reply: the request must time out after its own timeout.
	if _, err := c.Get(context.Background(), addr, "c", []byte("fast")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(timeout * 2 / 5)
	hangStart := time.Now()
	_, err = c.Get(context.Background(), addr, "c", []byte("hang"))
	if d := time.Since(hangStart); d < timeout-timeout/20 || d > 3*timeout {
		t.Fatalf("timed out after %v, want %v", d, timeout)
	}
	checkErr(t, err, addr, ErrUnavailable)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("%v is not a timeout", err)
	}
	// And a context cancelled while the request waits past an early deadline still ends it.
	if _, err := c.Get(context.Background(), addr, "c", []byte("fast")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(timeout * 2 / 5)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(timeout*4/5, cancel) // after the early deadline, before the request's
	defer cancel()
	cancelStart := time.Now()
	_, err = c.Get(ctx, addr, "c", []byte("hang"))
	if d := time.Since(cancelStart); d > timeout*19/20 {
		t.Fatalf("cancelled after %v", d)
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("%v does not match context.Canceled", err)
	}
}

func TestMaxConcurrent(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	b := newMapBackend()
	b.set("k", Value{Data: []byte("v")})
	b.hook = func(ctx context.Context, key string) {
		if key == "slow" {
			entered <- struct{}{}
			<-release
		}
	}
	s, addr := startServer(t, b, WithMaxConcurrent(1))
	c := newClient(t)
	done := make(chan error, 1)
	go func() {
		_, err := c.Get(context.Background(), addr, "c", []byte("slow"))
		done <- err
	}()
	<-entered
	start := time.Now()
	_, err := c.Get(context.Background(), addr, "c", []byte("k"))
	pe := checkErr(t, err, addr, ErrOverloaded)
	if pe.Status != StatusOverloaded || time.Since(start) > time.Second {
		t.Fatalf("%v after %v", err, time.Since(start))
	}
	close(release)
	if err := <-done; StatusOf(err) != StatusNotFound {
		t.Fatal(err)
	}
	mustGet(t, c, addr, "k")
	if st := s.Stats(); st.Overloaded != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestConnectionReuse(t *testing.T) {
	b := newMapBackend()
	b.set("k", Value{Data: []byte("v")})
	s, addr := startServer(t, b)
	c := newClient(t)
	for range 200 {
		mustGet(t, c, addr, "k")
	}
	if st := c.Stats(); st.Dials != 1 || st.OpenConns != 1 {
		t.Fatalf("sequential: %+v", st)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				mustGet(t, c, addr, "k")
			}
		})
	}
	wg.Wait()
	if st := c.Stats(); st.Dials > 8 || st.OpenConns > 8 || st.Requests != 600 {
		t.Fatalf("parallel: %+v", st)
	}
	if st := s.Stats(); st.Upgrades != c.Stats().Dials {
		t.Fatalf("server %+v", st)
	}
}

func TestMaxConnsPerPeer(t *testing.T) {
	var inflight, peak atomic.Int64
	b := newMapBackend()
	b.set("k", Value{Data: []byte("v")})
	b.hook = func(ctx context.Context, key string) {
		n := inflight.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
		inflight.Add(-1)
	}
	_, addr := startServer(t, b)
	c := framing1Client(t, WithMaxConnsPerPeer(2), WithMaxIdlePerPeer(1))
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() { mustGet(t, c, addr, "k") })
	}
	wg.Wait()
	st := c.Stats()
	if peak.Load() > 2 || st.Dials > 6 || st.Waits == 0 {
		t.Fatalf("peak %d, stats %+v", peak.Load(), st)
	}
	if st.OpenConns > 1 {
		t.Fatalf("idle connections over the idle bound: %+v", st)
	}

	// Waiting for a connection is bounded by the caller's context.
	c1 := framing1Client(t, WithMaxConnsPerPeer(1))
	release := make(chan struct{})
	b.hook = func(ctx context.Context, key string) {
		if key == "slow" {
			<-release
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c1.Get(context.Background(), addr, "c", []byte("slow"))
	}()
	for c1.Stats().OpenConns == 0 {
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	_, err := c1.Get(ctxTimeout(t, 100*time.Millisecond), addr, "c", []byte("k"))
	checkErr(t, err, addr, ErrUnavailable)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Fatalf("%v after %v", err, time.Since(start))
	}
	close(release)
	<-done
	mustGet(t, c1, addr, "k") // the request that gave up did not keep a token
}

// TestTokenHandOff races requests that wait for a connection, and give up, against the requests
// that hand their tokens over: no token is lost or duplicated.
func TestTokenHandOff(t *testing.T) {
	b := newMapBackend()
	b.set("k", Value{Data: []byte("v")})
	b.hook = func(ctx context.Context, key string) { time.Sleep(time.Millisecond) }
	_, addr := startServer(t, b)
	c := newClient(t, WithMaxConnsPerPeer(2))
	var wg sync.WaitGroup
	var ok, gaveUp atomic.Int64
	for g := range 16 {
		wg.Go(func() {
			for i := range 20 {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration((g+i)%4)*time.Millisecond)
				_, err := c.Get(ctx, addr, "c", []byte("k"))
				cancel()
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, ErrUnavailable):
					gaveUp.Add(1)
				default:
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if ok.Load() == 0 || gaveUp.Load() == 0 || c.Stats().Waits == 0 {
		t.Fatalf("%d ok, %d gave up, stats %+v", ok.Load(), gaveUp.Load(), c.Stats())
	}
	p := c.pool(addr)
	p.mu.Lock()
	inFlight, waiters := p.inFlight, len(p.waiters)
	p.mu.Unlock()
	if inFlight != 0 || waiters != 0 {
		t.Fatalf("%d tokens held and %d waiters after every request returned", inFlight, waiters)
	}
	mustGet(t, c, addr, "k")
}

func TestStaleConnectionRetried(t *testing.T) {
	b := newMapBackend()
	b.set("k", Value{Data: []byte("v")})
	s, addr := startServer(t, b, WithIdleTimeout(50*time.Millisecond))
	c := newClient(t)
	mustGet(t, c, addr, "k")
	for s.Stats().ActiveConns != 0 {
		time.Sleep(5 * time.Millisecond) // the server closes the idle connection
	}
	mustGet(t, c, addr, "k")
	if st := c.Stats(); st.Dials != 2 || st.Retries != 1 || st.Errors != 0 {
		t.Fatalf("stats %+v", st)
	}

	// A client that drops idle connections before the server does needs no retry.
	c2 := newClient(t, WithIdleConnTimeout(10*time.Millisecond))
	mustGet(t, c2, addr, "k")
	time.Sleep(20 * time.Millisecond)
	mustGet(t, c2, addr, "k")
	if st := c2.Stats(); st.Dials != 2 || st.Retries != 0 || st.OpenConns != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSlowBackendOutlastsIdleTimeout(t *testing.T) {
	b := newMapBackend()
	b.set("k", Value{Data: []byte("v")})
	b.hook = func(ctx context.Context, key string) { time.Sleep(150 * time.Millisecond) }
	_, addr := startServer(t, b, WithIdleTimeout(50*time.Millisecond))
	c := newClient(t)
	if v := mustGet(t, c, addr, "k"); string(v.Data) != "v" {
		t.Fatal(v)
	}
}

func TestServerClose(t *testing.T) {
	entered := make(chan struct{}, 1)
	b := newMapBackend()
	b.set("k", Value{Data: []byte("v")})
	b.hook = func(ctx context.Context, key string) {
		if key == "slow" {
			entered <- struct{}{}
			<-ctx.Done() // released by Close
		}
	}
	s, addr := startServer(t, b)
	c := newClient(t)
	mustGet(t, c, addr, "k")
	done := make(chan error, 1)
	go func() {
		_, err := c.Get(context.Background(), addr, "c", []byte("slow"))
		done <- err
	}()
	<-entered
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.ActiveConns != 0 {
		t.Fatalf("stats after Close %+v", st)
	}
	if err := <-done; err == nil {
		t.Fatal("Get in flight at Close succeeded")
	}
	_, err := c.Get(context.Background(), addr, "c", []byte("k"))
	checkErr(t, err, addr, ErrUnavailable)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("Serve after Close: %v", err)
	}
	// Through a user's own http.Server, a closed server answers 503, and the client reports
	// ErrUnavailable.
	ts := httptest.NewServer(s)
	defer ts.Close()
	addr2 := ts.Listener.Addr().String()
	_, err = c.Get(context.Background(), addr2, "c", []byte("k"))
	checkErr(t, err, addr2, ErrUnavailable)
	resp, err := ts.Client().Post(ts.URL+DefaultBasePath, ContentType,
		bytes.NewReader(AppendRequest(nil, &Request{Op: OpGet, Cache: "c", Key: []byte("k")})))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("POST after Close: %s", resp.Status)
	}
}

func TestClientClose(t *testing.T) {
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	b := newMapBackend()
	b.set("k", Value{Data: []byte("v")})
	b.hook = func(ctx context.Context, key string) {
		if key == "slow" {
			entered <- struct{}{}
			<-release
		}
	}
	_, addr := startServer(t, b)
	defer close(release)
	c := newClient(t)
	mustGet(t, c, addr, "k")
	done := make(chan error, 1)
	go func() {
		_, err := c.Get(context.Background(), addr, "c", []byte("slow"))
		done <- err
	}()
	<-entered
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		checkErr(t, err, addr, ErrClosed)
	case <-time.After(2 * time.Second):
		t.Fatal("Get in flight did not end at Close")
	}
	_, err := c.Get(context.Background(), addr, "c", []byte("k"))
	checkErr(t, err, addr, ErrClosed)
	if st := c.Stats(); st.OpenConns != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestMountedOnMux(t *testing.T) {
	b := newMapBackend()
	b.set("k", Value{Data: []byte("v")})
	s, err := NewServer(b, WithBasePath("/cache/peers"), WithServerLogger(quietLogger))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(s.BasePath(), s)
	mux.HandleFunc("/other", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("other")) })
	ts := httptest.NewServer(mux)
	defer ts.Close()
	defer s.Close() // before ts.Close: ends the upgraded connections
	addr := ts.Listener.Addr().String()

	c := newClient(t, WithBasePath("/cache/peers/"))
	if v := mustGet(t, c, addr, "k"); string(v.Data) != "v" {
		t.Fatal(v)
	}
	// A client at another path is refused by the mux.
	c2 := newClient(t)
	_, err = c2.Get(context.Background(), addr, "c", []byte("k"))
	pe := checkErr(t, err, addr, ErrProtocol)
	if !strings.Contains(pe.Msg, "404") {
		t.Fatalf("%v", err)
	}
}

func TestOptions(t *testing.T) {
	b := newMapBackend()
	for _, o := range []ServerOption{
		WithBasePath("relative"), WithServerLimits(Limits{MaxKeyBytes: -1}), WithMaxConcurrent(-1),
		WithServerLogger(nil), WithIdleTimeout(-time.Second),
	} {
		if _, err := NewServer(b, o); !errors.Is(err, ErrInvalidOption) {
			t.Errorf("server option accepted: %v", err)
		}
	}
	if _, err := NewServer(nil); !errors.Is(err, ErrInvalidOption) {
		t.Error("nil backend accepted")
	}
	for _, o := range [][]ClientOption{
		{WithBasePath("")}, // empty is the default: accepted
		{WithBasePath("x")}, {WithTimeout(-1)}, {WithDialTimeout(-1)}, {WithMaxConnsPerPeer(-1)},
		{WithMaxConnsPerPeer(1 << 20)}, {WithMaxIdlePerPeer(-1)}, {WithMaxConnsPerPeer(2), WithMaxIdlePerPeer(3)},
		{WithIdleConnTimeout(-1)}, {WithClientLimits(Limits{MaxValueBytes: 2 << 30})},
	} {
		c, err := NewClient(o...)
		if len(o) == 1 && o[0] == WithBasePath("") {
			if err != nil {
				t.Errorf("default base path refused: %v", err)
			}
		} else if !errors.Is(err, ErrInvalidOption) {
			t.Errorf("client options accepted: %v", err)
		}
		if c != nil {
			c.Close()
		}
	}
	s, err := NewServer(b, WithBasePath("/p"), nil)
	if err != nil || s.BasePath() != "/p/" {
		t.Fatal(s, err)
	}
	s.Close()
}
