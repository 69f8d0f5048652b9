package peer

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The client's multiplexed connections against raw test servers, which answer in the order and
// with the bytes a test chooses.

// muxReq is a request read by a raw test server, with its id.
type muxReq struct {
	id uint32
	Request
}

// muxPeerConn is a connection of a raw test server.
type muxPeerConn struct {
	*hostileConn
	offer string     // the Upgrade header of the client's request
	wmu   sync.Mutex // serializes writes of whole frames
}

// muxHostile starts a raw test server whose connections handle runs (see hostile); handle
// upgrades the connection itself (accept).
func muxHostile(t *testing.T, handle func(m *muxPeerConn)) string {
	t.Helper()
	return hostile(t, func(h *hostileConn) { handle(&muxPeerConn{hostileConn: h}) })
}

// accept reads the client's upgrade request and answers 101 switching to proto.
func (m *muxPeerConn) accept(proto string) bool { return m.readUpgrade() && m.switchTo(proto) }

// readUpgrade reads the client's upgrade request and records what it offered.
func (m *muxPeerConn) readUpgrade() bool {
	req, err := http.ReadRequest(m.br)
	if err != nil {
		return false
	}
	m.offer = req.Header.Get("Upgrade")
	return true
}

// switchTo answers an upgrade request with 101 switching to proto.
func (m *muxPeerConn) switchTo(proto string) bool {
	_, err := io.WriteString(m.nc, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+proto+"\r\n\r\n")
	return err == nil
}

// read reads one multiplexed request frame.
func (m *muxPeerConn) read() (muxReq, error) {
	hdr := make([]byte, muxPrefixLen)
	if _, err := io.ReadFull(m.br, hdr); err != nil {
		return muxReq{}, err
	}
	n, id := parseMuxPrefix(hdr)
	frame := make([]byte, n)
	if _, err := io.ReadFull(m.br, frame); err != nil {
		return muxReq{}, err
	}
	req, err := ParseRequest(frame, Limits{})
	return muxReq{id: id, Request: req}, err
}

// readN reads n multiplexed request frames.
func (m *muxPeerConn) readN(n int) ([]muxReq, error) {
	var qs []muxReq
	for len(qs) < n {
		q, err := m.read()
		if err != nil {
			return nil, err
		}
		qs = append(qs, q)
	}
	return qs, nil
}

// write writes one multiplexed frame with the given id.
func (m *muxPeerConn) write(id uint32, frame []byte) {
	m.wmu.Lock()
	defer m.wmu.Unlock()
	m.nc.Write(append(appendMuxPrefix(nil, len(frame), id), frame...))
}

// serve answers every request as echoBackend b would, each on a goroutine of its own (so in the
// order they finish), until the connection ends.
func (m *muxPeerConn) serve(b *echoBackend) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	for {
		q, err := m.read()
		if err != nil {
			return
		}
		wg.Go(func() {
			r := echoReply(ctx, b, q.Request)
			if ctx.Err() == nil {
				m.write(q.id, r)
			}
		})
	}
}

// serveFraming1 answers the requests of a framing-1 connection one after the other, as echoBackend
// b would, until the connection ends.
func (m *muxPeerConn) serveFraming1(b *echoBackend) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for {
		req, err := m.readRequest()
		if err != nil {
			return
		}
		m.writeFrame(echoReply(ctx, b, req))
	}
}

// echoReply is the reply frame a Server over b sends to req.
func echoReply(ctx context.Context, b *echoBackend, req Request) []byte {
	var v Value
	var err error
	switch req.Op {
	case OpGet:
		v, err = b.Get(ctx, req.Cache, req.Key)
	case OpPeek:
		v, err = b.Peek(ctx, req.Cache, req.Key)
	case OpGetMany, OpPeekMany:
		var rs []Result
		if req.Op == OpGetMany {
			rs, err = b.GetMany(ctx, req.Cache, req.Keys)
		} else {
			rs, err = b.PeekMany(ctx, req.Cache, req.Keys)
		}
		v.Data = AppendBatch(nil, rs)
	case OpSet:
		err = b.Set(ctx, req.Cache, req.Key, req.Value)
	case OpRemove:
		err = b.Remove(ctx, req.Cache, req.Keys)
	case OpClear:
		err = b.Clear(ctx, req.Cache, req.Generation)
	}
	if err != nil {
		r := errorResponse(err)
		return AppendResponse(nil, &r)
	}
	return AppendResponse(nil, &Response{Value: v})
}

// sharedFirst sends n requests from n goroutines with send(i), so that they share the client's
// first multiplexed connection to addr: the first one dials, the others wait for the dial. It
// returns their errors.
func sharedFirst(t *testing.T, c *Client, addr string, n int, send func(i int) error) []error {
	t.Helper()
	errs := make([]error, n)
	var wg sync.WaitGroup
	first := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			if i > 0 {
				<-first
			}
			errs[i] = send(i)
		})
		if i == 0 {
			p := c.pool(addr)
			waitUntil(t, "the first request dials", func() bool {
				p.mu.Lock()
				defer p.mu.Unlock()
				return p.muxDialing == 1 || len(p.muxes) == 1
			})
			close(first)
		}
	}
	wg.Wait()
	return errs
}

// muxHostileFirst starts a raw server whose first connection reads n requests and then runs bad
// (the connection is closed when it returns); later connections answer honestly.
func muxHostileFirst(t *testing.T, n int, bad func(m *muxPeerConn, qs []muxReq)) string {
	var conns atomic.Int64
	return muxHostile(t, func(m *muxPeerConn) {
		if !m.accept(UpgradeMultiplexed) {
			return
		}
		if conns.Add(1) > 1 {
			m.serve(&echoBackend{})
			return
		}
		qs, err := m.readN(n)
		if err != nil {
			return
		}
		bad(m, qs)
	})
}

// TestMuxOutOfOrder: the peer answers the requests of a connection in reverse order in one write,
// then in a random order frame by frame: every caller gets the reply to its own request, of
// every op.
func TestMuxOutOfOrder(t *testing.T) {
	const n = 24
	addr := muxHostile(t, func(m *muxPeerConn) {
		if !m.accept(UpgradeMultiplexed) {
			return
		}
		rng := rand.New(rand.NewPCG(1, 2))
		for round := 0; ; round++ {
			qs, err := m.readN(n)
			if err != nil {
				return
			}
			if round == 0 {
				var all []byte
				for _, q := range slices.Backward(qs) {
					f := echoReply(context.Background(), &echoBackend{}, q.Request)
					all = append(appendMuxPrefix(all, len(f), q.id), f...)
				}
				m.nc.Write(all)
				continue
			}
			rng.Shuffle(len(qs), func(i, j int) { qs[i], qs[j] = qs[j], qs[i] })
			for _, q := range qs {
				m.write(q.id, echoReply(context.Background(), &echoBackend{}, q.Request))
			}
		}
	})
	c, _ := pipelined(t)
	for round := range 2 {
		errs := sharedFirst(t, c, addr, n, func(i int) error {
			return echoOp(context.Background(), c, addr, i, round*n+i)
		})
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	st := c.Stats()
	t.Logf("%+v", st)
	if st.Dials != 1 || st.MuxConns != 1 || st.Requests != 2*n || st.SharedReads == 0 || st.Retries != 0 {
		t.Fatalf("stats %+v", st)
	}
	onlyMux(t, c, addr).checkIdle(t)
}

// TestMuxAbandonedBound: a peer that never answers some requests. Their callers leave at their
// deadlines and their ids stay in flight; once more than half of the connection's ids are
// abandoned, it takes no new call (the next ones go to a new connection), and it is closed when
// the last call waiting on it has its reply.
func TestMuxAbandonedBound(t *testing.T) {
	slowIn, releaseSlow := make(chan struct{}), make(chan struct{})
	firstClosed := make(chan struct{})
	var conns atomic.Int64
	addr := muxHostile(t, func(m *muxPeerConn) {
		if !m.accept(UpgradeMultiplexed) {
			return
		}
		first := conns.Add(1) == 1
		if first {
			defer close(firstClosed)
		}
		var wg sync.WaitGroup
		defer wg.Wait()
		for {
			q, err := m.read()
			if err != nil {
				return
			}
			switch k := string(q.Key); {
			case strings.HasPrefix(k, "hole"): // never answered
			case k == "slow":
				close(slowIn)
				wg.Go(func() {
					<-releaseSlow
					m.write(q.id, echoReply(context.Background(), &echoBackend{}, q.Request))
				})
			default:
				m.write(q.id, echoReply(context.Background(), &echoBackend{}, q.Request))
			}
		}
	})
	var once sync.Once
	release := func() { once.Do(func() { close(releaseSlow) }) }
	t.Cleanup(release) // before the server's cleanup, which waits for its goroutines
	c, _ := pipelined(t)
	c.pipeDepth = 8
	slow := goEchoGet(c, addr, "slow")
	<-slowIn
	pc := onlyMux(t, c, addr)
	hole := func(i int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancel()
		_, err := c.Get(ctx, addr, "c", []byte(fmt.Sprint("hole-", i)))
		checkErr(t, err, addr, ErrUnavailable)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%v does not match context.DeadlineExceeded", err)
		}
	}
	for i := range pc.p.c.pipeDepth / 2 {
		hole(i)
	}
	// Half of the ids abandoned: the connection still takes calls.
	if q, live := pc.queued(); q != 5 || live != 1 || pc.draining.Load() {
		t.Fatalf("%d ids in flight, %d waiting, draining %v", q, live, pc.draining.Load())
	}
	if err := echoOp(context.Background(), c, addr, 0, 0); err != nil {
		t.Fatal(err)
	}
	hole(4)
	if !pc.draining.Load() || pc.dead.Load() {
		t.Fatalf("with 5 of 8 ids abandoned: draining %v, closed %v", pc.draining.Load(), pc.dead.Load())
	}
	// New calls go to a new connection.
	if err := echoOp(context.Background(), c, addr, 0, 2); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Dials != 2 || st.MuxConns != 2 {
		t.Fatalf("stats %+v", st)
	}
	// The slow call gets its reply, and then nobody waits on the old connection: closed.
	release()
	if err := <-slow; err != nil {
		t.Fatal(err)
	}
	if !pc.dead.Load() {
		t.Fatal("the connection of the abandoned ids is still open")
	}
	<-firstClosed
	if st := c.Stats(); st.Dials != 2 || st.MuxConns != 1 || st.OpenConns != 1 || st.Retries != 0 {
		t.Fatalf("stats %+v", st)
	}
	if err := echoOp(context.Background(), c, addr, 0, 4); err != nil {
		t.Fatal(err)
	}
}

// TestMuxUnknownID: a reply whose id is not that of a request in flight on the connection (never
// sent, a slot out of range, an earlier generation of a slot, or a request already answered)
// fails every request waiting on the connection with ErrProtocol, and closes it; the next request
// gets a new connection.
func TestMuxUnknownID(t *testing.T) {
	hit := AppendResponse(nil, &Response{Value: Value{Data: []byte("value")}})
	cases := []struct {
		name string
		id   func(qs []muxReq) uint32
		ok   int // requests answered first
	}{
		{"slot out of range", func([]muxReq) uint32 { return 1<<muxSlotBits | maxMuxDepth - 1 }, 0},
		{"free slot", func(qs []muxReq) uint32 {
			used := map[uint32]bool{}
			for _, q := range qs {
				used[q.id&muxSlotMask] = true
			}
			for s := uint32(0); ; s++ {
				if !used[s] {
					return 1<<muxSlotBits | s
				}
			}
		}, 0},
		{"another generation", func(qs []muxReq) uint32 { return qs[0].id + 1<<muxSlotBits }, 0},
		{"answered twice", func(qs []muxReq) uint32 { return qs[0].id }, 1},
	}
	const n = 4
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			addr := muxHostileFirst(t, n, func(m *muxPeerConn, qs []muxReq) {
				if tc.ok > 0 {
					m.write(qs[0].id, hit)
				}
				m.write(tc.id(qs), hit)
				m.drain()
			})
			c, _ := pipelined(t)
			errs := sharedFirst(t, c, addr, n, func(i int) error {
				_, err := c.Get(context.Background(), addr, "c", []byte(fmt.Sprint("k-", i)))
				return err
			})
			ok := 0
			for _, err := range errs {
				if err == nil {
					ok++
					continue
				}
				pe := checkErr(t, err, addr, ErrProtocol)
				if !strings.Contains(pe.Msg, "not that of a request in flight") {
					t.Fatalf("message %q", pe.Msg)
				}
			}
			if ok != tc.ok {
				t.Fatalf("%d requests succeeded, want %d: %v", ok, tc.ok, errs)
			}
			if st := c.Stats(); st.Retries != 0 || st.OpenConns != 0 || st.MuxConns != 0 {
				t.Fatalf("stats %+v", st)
			}
			if err := echoOp(context.Background(), c, addr, 0, 2); err != nil {
				t.Fatal(err)
			}
			if st := c.Stats(); st.Dials != 2 || st.OpenConns != 1 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// TestMuxBrokenConnection: a peer that sends garbage, a reply of another version, a frame over
// the limit, or closes the connection, fails every request in flight on the connection with the
// error a one-request connection would report; the next request gets a new connection.
func TestMuxBrokenConnection(t *testing.T) {
	hit := AppendResponse(nil, &Response{Value: Value{Data: []byte("value")}})
	cases := []struct {
		name    string
		bad     func(m *muxPeerConn, qs []muxReq)
		want    error
		ok      int // requests that succeed (the first ones, or retried ones)
		retries int64
	}{
		{"garbage frame", func(m *muxPeerConn, qs []muxReq) {
			m.write(qs[2].id, []byte{Version, 0, 0xf0, 0, 0})
			m.drain()
		}, ErrProtocol, 0, 0},
		{"newer version", func(m *muxPeerConn, qs []muxReq) {
			f := bytes.Clone(hit)
			f[0] = Version + 1
			m.write(qs[1].id, f)
			m.drain()
		}, ErrVersion, 0, 0},
		{"huge length prefix", func(m *muxPeerConn, qs []muxReq) {
			m.nc.Write(binary.BigEndian.AppendUint32([]byte{0xff, 0xff, 0xff, 0xff}, qs[0].id))
			m.nc.Write([]byte{1, 2, 3})
			m.drain()
		}, ErrTooLarge, 0, 0},
		{"garbage after a good reply", func(m *muxPeerConn, qs []muxReq) {
			m.write(qs[3].id, hit)
			m.write(qs[0].id, []byte{Version, 0, 0, 0xde, 0xad})
			m.drain()
		}, ErrProtocol, 1, 0},
		{"closes mid-reply", func(m *muxPeerConn, qs []muxReq) {
			m.nc.Write(appendMuxPrefix(nil, len(hit), qs[1].id))
			m.nc.Write(hit[:len(hit)-2])
		}, io.ErrUnexpectedEOF, 0, 0},
		{"closes mid-prefix", func(m *muxPeerConn, qs []muxReq) {
			m.write(qs[1].id, hit)
			m.nc.Write(appendMuxPrefix(nil, len(hit), qs[0].id)[:5])
		}, ErrUnavailable, 1, 0},
		{"closes without a reply", func(m *muxPeerConn, _ []muxReq) {}, ErrUnavailable, 0, 0},
		// A connection that has answered and is closed before any byte of the next replies:
		// those requests are sent again.
		{"closes after a reply", func(m *muxPeerConn, qs []muxReq) {
			m.write(qs[4].id, hit)
		}, nil, 5, 4},
	}
	const n = 5
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			addr := muxHostileFirst(t, n, tc.bad)
			c, _ := pipelined(t, WithTimeout(2*time.Second))
			errs := sharedFirst(t, c, addr, n, func(i int) error {
				_, err := c.Get(context.Background(), addr, "c", []byte(fmt.Sprint("k-", i)))
				return err
			})
			ok := 0
			for _, err := range errs {
				if err == nil {
					ok++
					continue
				}
				var pe *Error
				if !errors.As(err, &pe) || pe.Peer != addr || pe.Op != OpGet || !matches(err, tc.want) {
					t.Fatalf("%v: want an *Error of %s matching %v", err, addr, tc.want)
				}
				if errors.Is(tc.want, ErrUnavailable) != errors.Is(err, ErrUnavailable) && tc.want != io.ErrUnexpectedEOF {
					t.Fatalf("%v: matches ErrUnavailable: %v", err, errors.Is(err, ErrUnavailable))
				}
				if tc.want == io.ErrUnexpectedEOF && !errors.Is(err, ErrUnavailable) {
					t.Fatalf("%v does not match ErrUnavailable", err)
				}
				t.Log(err)
			}
			if ok != tc.ok {
				t.Fatalf("%d requests succeeded, want %d: %v", ok, tc.ok, errs)
			}
			if st := c.Stats(); st.Retries != tc.retries || st.Dials < 1 {
				t.Fatalf("stats %+v", st)
			}
			if v, err := c.Get(context.Background(), addr, "c", []byte("again")); err != nil || string(v.Data) != "get:again" {
				t.Fatalf("after the broken connection: %q, %v", v.Data, err)
			}
			if st := c.Stats(); st.Dials != 2 || st.OpenConns != 1 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// TestMuxFramingFallback: a peer that speaks framing 1 only (it answers the multiplexed offer
// with groupcache/1) gets the requests of a pipelining client one per connection, on framing 1;
// the client remembers it and offers groupcache/1 alone on its next dials, until the idle
// connection timeout passes: then it offers both again, and a peer upgraded meanwhile gets a
// multiplexed connection.
func TestMuxFramingFallback(t *testing.T) {
	g := newGate("slow-0", "slow-1", "slow-2", "slow-3")
	defer g.releaseAll()
	var proto atomic.Value
	proto.Store(UpgradeProtocol)
	offers := make(chan string, 16)
	addr := muxHostile(t, func(m *muxPeerConn) {
		p := proto.Load().(string)
		if !m.readUpgrade() {
			return
		}
		offers <- m.offer // before the answer: in the order of the dials
		if !m.switchTo(p) {
			return
		}
		if p == UpgradeMultiplexed {
			m.serve(&echoBackend{})
		} else {
			m.serveFraming1(&echoBackend{hook: g.hook})
		}
	})
	c, _ := pipelined(t)
	// Four requests held by the peer at once: each on a connection of its own.
	errs := make(chan error, 4)
	for i := range 4 {
		go func() {
			key := fmt.Sprint("slow-", i)
			v, err := c.Get(context.Background(), addr, "c", []byte(key))
			if err == nil && string(v.Data) != "get:"+key {
				err = fmt.Errorf("got %q", v.Data)
			}
			errs <- err
		}()
	}
	for range 4 {
		<-g.entered
	}
	g.releaseAll()
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for range 4 {
		got = append(got, <-offers)
	}
	if got[0] != "groupcache/2, groupcache/1" || got[1] != UpgradeProtocol || got[2] != UpgradeProtocol || got[3] != UpgradeProtocol {
		t.Fatalf("offers %q: want the multiplexed offer first, then groupcache/1 alone", got)
	}
	if st := c.Stats(); st.Dials != 4 || st.Framing1Fallbacks != 1 || st.MuxConns != 0 || st.OpenConns != 4 {
		t.Fatalf("stats %+v", st)
	}
	// Every op, on the idle framing-1 connections.
	for i := range 14 {
		if err := echoOp(context.Background(), c, addr, i, i); err != nil {
			t.Fatal(err)
		}
	}
	p := c.pool(addr)
	p.mu.Lock()
	until := time.Unix(0, p.framing1Until)
	p.mu.Unlock()
	if d := time.Until(until); d < DefaultIdleConnTimeout-10*time.Second || d > DefaultIdleConnTimeout {
		t.Fatalf("framing 1 remembered for %v more", d)
	}
	if st := c.Stats(); st.Dials != 4 || st.MuxConns != 0 {
		t.Fatalf("stats %+v", st)
	}

	// The peer is upgraded, and the time is up.
	proto.Store(UpgradeMultiplexed)
	p.mu.Lock()
	p.framing1Until = 1
	p.mu.Unlock()
	for i := range 14 {
		if err := echoOp(context.Background(), c, addr, i, i); err != nil {
			t.Fatal(err)
		}
	}
	if o := <-offers; o != "groupcache/2, groupcache/1" {
		t.Fatalf("offer %q after the timeout", o)
	}
	if st := c.Stats(); st.Dials != 5 || st.Framing1Fallbacks != 1 || st.MuxConns != 1 || st.OpenConns != 5 {
		t.Fatalf("stats %+v", st)
	}
	if q, _ := onlyMux(t, c, addr).queued(); q != 0 {
		t.Fatalf("%d ids in flight", q)
	}
}

// TestMuxHandshake: a pipelining client offers both framings and a client without pipelining
// only framing 1; an answer naming anything but one of the framings offered is ErrProtocol.
func TestMuxHandshake(t *testing.T) {
	cases := []struct {
		name   string
		mux    bool
		answer string
		ok     bool
	}{
		{"multiplexed", true, UpgradeMultiplexed, true},
		{"framing 1 to a multiplexed offer", true, UpgradeProtocol, true},
		{"unknown framing", true, "groupcache/3", false},
		{"both framings", true, "groupcache/2, groupcache/1", false},
		{"framing 1", false, UpgradeProtocol, true},
		{"multiplexed to a framing-1 offer", false, UpgradeMultiplexed, false},
	}
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			offers := make(chan string, 4)
			addr := muxHostile(t, func(m *muxPeerConn) {
				if !m.accept(tc.answer) {
					return
				}
				offers <- m.offer
				if tc.answer == UpgradeMultiplexed {
					m.serve(&echoBackend{})
				} else {
					m.serveFraming1(&echoBackend{})
				}
			})
			var c *Client
			if tc.mux {
				c, _ = pipelined(t)
			} else {
				c = framing1Client(t)
			}
			v, err := c.Get(context.Background(), addr, "c", []byte("k"))
			if want := map[bool]string{true: "groupcache/2, groupcache/1", false: UpgradeProtocol}[tc.mux]; <-offers != want {
				t.Fatalf("offered something else than %q", want)
			}
			if !tc.ok {
				checkErr(t, err, addr, ErrProtocol)
				return
			}
			if err != nil || string(v.Data) != "get:k" {
				t.Fatalf("%q, %v", v.Data, err)
			}
			if st := c.Stats(); st.MuxConns != map[bool]int64{true: 1}[tc.answer == UpgradeMultiplexed] {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// TestMuxReaderLeavesMidReply: the reader's context ends while it is in the middle of a reply
// (the peer sent half of a large value and stalls). It returns at once; the next reader resumes
// the frame where it stopped, drops it, and reads its own reply.
func TestMuxReaderLeavesMidReply(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 16<<10) // 256 KiB
	halfSent, goOn := make(chan struct{}), make(chan struct{})
	addr := muxHostile(t, func(m *muxPeerConn) {
		if !m.accept(UpgradeMultiplexed) {
			return
		}
		qs, err := m.readN(2)
		if err != nil {
			return
		}
		f := AppendResponse(nil, &Response{Value: Value{Data: big}})
		f = append(appendMuxPrefix(nil, len(f), qs[0].id), f...)
		m.nc.Write(f[:len(f)/2])
		close(halfSent)
		<-goOn
		m.nc.Write(f[len(f)/2:])
		m.write(qs[1].id, echoReply(context.Background(), &echoBackend{}, qs[1].Request))
		m.serve(&echoBackend{})
	})
	c, cli := pipelined(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := make(chan error, 1)
	go func() {
		_, err := c.Get(ctx, addr, "c", []byte("big"))
		first <- err
	}()
	var pc *muxClientConn
	waitUntil(t, "the first request reads", func() bool {
		if live := liveMuxes(c, addr); len(live) == 1 {
			pc = live[0]
			return pc.holdsRole()
		}
		return false
	})
	second := make(chan error, 1)
	go func() { second <- echoOp(context.Background(), c, addr, 0, 2) }()
	<-halfSent
	waitUntil(t, "the client has read half of the value", func() bool { return cli.bytesRead.Load() > int64(len(big)/2) })
	checkLeavesAtOnce(t, "the reader", cancel, first)
	close(goOn)
	if err := <-second; err != nil {
		t.Fatal(err)
	}
	// Once more, with nobody waiting when the reader leaves: the next request resumes alone.
	if err := echoOp(context.Background(), c, addr, 0, 4); err != nil {
		t.Fatal(err)
	}
	pc.checkIdle(t)
	if st := c.Stats(); st.Dials != 1 || st.OpenConns != 1 || st.Retries != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestMuxWriterLeavesMidWrite: the writer's context ends while its write is blocked (the peer
// does not read). It returns at once; a goroutine finishes the write, for the request queued
// behind it, which gets its reply when the peer reads again.
func TestMuxWriterLeavesMidWrite(t *testing.T) {
	upgraded, startReading := make(chan struct{}), make(chan struct{})
	addr := muxHostile(t, func(m *muxPeerConn) {
		if !m.accept(UpgradeMultiplexed) {
			return
		}
		close(upgraded)
		<-startReading
		m.serve(&echoBackend{})
	})
	defer func() {
		select {
		case <-startReading:
		default:
			close(startReading)
		}
	}()
	c, _ := pipelined(t)
	// More than the socket buffers of both sides hold.
	value := bytes.Repeat([]byte("x"), 24<<20)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	setErr := make(chan error, 1)
	go func() { setErr <- c.Set(ctx, addr, "c", []byte("k-0"), Value{Data: value}) }()
	<-upgraded
	var pc *muxClientConn
	waitUntil(t, "the Set writes", func() bool {
		live := liveMuxes(c, addr)
		if len(live) != 1 {
			return false
		}
		pc = live[0]
		pc.mu.Lock()
		defer pc.mu.Unlock()
		return pc.writer != nil
	})
	getErr := make(chan error, 1)
	go func() { getErr <- echoOp(context.Background(), c, addr, 0, 2) }()
	waitUntil(t, "the Get is queued", func() bool { q, _ := pc.queued(); return q == 2 })
	checkLeavesAtOnce(t, "the writer", cancel, setErr)
	close(startReading)
	if err := <-getErr; err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Dials != 1 || st.OpenConns != 1 || st.BytesSent < int64(len(value)) {
		t.Fatalf("stats %+v", st)
	}
}

// TestMuxIDs: ids name a slot and its generation; an id is found only while its request is in
// flight, and a slot taken again gets another id.
func TestMuxIDs(t *testing.T) {
	c := newClient(t, WithPipelining(1))
	pc := newMuxClientConn(c.pool("x"), nil)
	pc.mu.Lock()
	defer pc.mu.Unlock()
	calls := make([]*muxCall, pipelineDepth)
	seen := map[uint32]bool{}
	for i := range calls {
		calls[i] = &muxCall{}
		pc.inflight.Add(1)
		pc.takeIDLocked(calls[i])
		if id := calls[i].id; seen[id] || id&muxSlotMask >= pipelineDepth || id>>muxSlotBits != 1 {
			t.Fatalf("id %#x", id)
		}
		seen[calls[i].id] = true
	}
	if pc.n != pipelineDepth || len(pc.free) != 0 {
		t.Fatalf("%d in flight, %d free", pc.n, len(pc.free))
	}
	for _, c := range calls {
		if pc.lookupLocked(c.id) != c {
			t.Fatalf("id %#x not found", c.id)
		}
	}
	old := calls[7]
	pc.releaseIDLocked(old)
	if pc.lookupLocked(old.id) != nil || !old.popped {
		t.Fatalf("released id %#x still found", old.id)
	}
	again := &muxCall{}
	pc.takeIDLocked(again)
	if again.id&muxSlotMask != old.id&muxSlotMask || again.id == old.id || pc.lookupLocked(old.id) != nil ||
		pc.lookupLocked(again.id) != again {
		t.Fatalf("slot taken again: id %#x after %#x", again.id, old.id)
	}
	for _, id := range []uint32{pipelineDepth, maxMuxDepth - 1, 1<<muxSlotBits | pipelineDepth, 0, 2 << muxSlotBits} {
		if pc.lookupLocked(id) != nil {
			t.Fatalf("id %#x found", id)
		}
	}
	// The generation wraps within its bits.
	pc.releaseIDLocked(again)
	pc.gens[again.id&muxSlotMask] = muxGenMask
	pc.takeIDLocked(again)
	if again.id>>muxSlotBits != 0 || pc.lookupLocked(again.id) != again {
		t.Fatalf("id %#x after the last generation", again.id)
	}
}

// goEchoGet starts a Get of key from an echoBackend's server; its error (or a wrong value) comes on
// the channel.
func goEchoGet(c *Client, addr, key string) <-chan error {
	errc := make(chan error, 1)
	go func() {
		v, err := c.Get(context.Background(), addr, "c", []byte(key))
		if err == nil && string(v.Data) != "get:"+key {
			err = fmt.Errorf("got %q", v.Data)
		}
		errc <- err
	}()
	return errc
}

// checkLeavesAtOnce cancels a caller's context and checks that it returns within a second with
// an error matching ErrUnavailable and context.Canceled.
func checkLeavesAtOnce(t *testing.T, who string, cancel context.CancelFunc, errc <-chan error) {
	t.Helper()
	start := time.Now()
	cancel()
	err := <-errc
	if d := time.Since(start); d > time.Second {
		t.Errorf("%s returned after %v", who, d)
	}
	if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("%v: want ErrUnavailable and context.Canceled", err)
	}
}
