package peer

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/typedcache/groupcache/internal/wire"
)

// rawConn is a connection upgraded by hand, for tests that send what a Client would not.
type rawConn struct {
	t  testing.TB
	nc net.Conn
	br *bufio.Reader
}

// upgradeRaw upgrades nc and returns it as a rawConn (closed at the end of the test).
func upgradeRaw(t testing.TB, nc net.Conn) *rawConn {
	t.Helper()
	t.Cleanup(func() { nc.Close() })
	go io.WriteString(nc, "GET /_groupcache/ HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\nUpgrade: "+UpgradeToken+"\r\n\r\n")
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Upgrade") != UpgradeToken {
		t.Fatalf("handshake: %s %q", resp.Status, resp.Header.Get("Upgrade"))
	}
	return &rawConn{t: t, nc: nc, br: br}
}

// dialRaw dials addr over loopback TCP and upgrades the connection by hand.
func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	return upgradeRaw(t, nc)
}

// send writes frame with the given request id.
func (r *rawConn) send(id uint32, frame []byte) {
	r.t.Helper()
	if _, err := r.nc.Write(append(wire.AppendPrefix(nil, len(frame), id), frame...)); err != nil {
		r.t.Fatal(err)
	}
}

// get sends a Get of key in cache "c" with the given request id.
func (r *rawConn) get(id uint32, key string) {
	r.t.Helper()
	r.send(id, wire.AppendRequest(nil, &wire.Request{Op: OpGet, Cache: "c", Key: []byte(key)}))
}

// reply reads one reply frame and returns its id and response.
func (r *rawConn) reply() (uint32, wire.Response) {
	r.t.Helper()
	hdr := make([]byte, wire.PrefixLen)
	if _, err := io.ReadFull(r.br, hdr); err != nil {
		r.t.Fatal(err)
	}
	n, id := wire.ParsePrefix(hdr)
	frame := make([]byte, n)
	if _, err := io.ReadFull(r.br, frame); err != nil {
		r.t.Fatal(err)
	}
	resp, err := wire.ParseResponse(frame, Limits{})
	if err != nil {
		r.t.Fatal(err)
	}
	return id, resp
}

// replies reads n replies and returns them by id.
func (r *rawConn) replies(n int) map[uint32]wire.Response {
	r.t.Helper()
	got := make(map[uint32]wire.Response, n)
	for range n {
		id, resp := r.reply()
		if _, dup := got[id]; dup {
			r.t.Fatalf("two replies under id %d", id)
		}
		got[id] = resp
	}
	return got
}

// closed reports whether the server closed the connection, once the bytes it sent before are
// read.
func (r *rawConn) closed() bool {
	_, err := io.Copy(io.Discard, r.br)
	return err == nil
}

// gate is a hook for testBackend that holds the operations on keys starting with "slow" (and
// batches) until released, and lets the others through. Peek and PeekMany are never held: the
// Server runs them on the connection's goroutine, trusting the Backend not to block.
type gate struct{ open chan struct{} }

func newGate() *gate { return &gate{open: make(chan struct{})} }

func (g *gate) hook(ctx context.Context, op Op, key []byte) error {
	if op == OpPeek || op == OpPeekMany || (key != nil && !bytes.HasPrefix(key, []byte("slow"))) {
		return nil
	}
	select {
	case <-g.open:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *gate) release() { close(g.open) }

func TestHandshakeRefusals(t *testing.T) {
	t.Parallel()
	s, err := NewServer(newBackend())
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, method, path string
		hdr                map[string]string
		want               int
	}{
		{"other path", "GET", "/elsewhere", map[string]string{"Connection": "Upgrade", "Upgrade": UpgradeToken}, 404},
		{"POST", "POST", "/_groupcache/", nil, 405},
		{"no upgrade", "GET", "/_groupcache/", nil, 400},
		{"upgrade header only", "GET", "/_groupcache/", map[string]string{"Upgrade": UpgradeToken}, 400},
		{"other protocol", "GET", "/_groupcache/", map[string]string{"Connection": "Upgrade", "Upgrade": "groupcache/1"}, 400},
	}
	for _, tc := range cases {
		req := httptest.NewRequest(tc.method, tc.path, nil)
		for k, v := range tc.hdr {
			req.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		if w.Code != tc.want || !strings.HasPrefix(w.Body.String(), "peer: ") {
			t.Errorf("%s: %d %q, want %d", tc.name, w.Code, w.Body, tc.want)
		}
		if tc.name == "other protocol" && w.Header().Get("Upgrade") != UpgradeToken {
			t.Errorf("%s: Upgrade %q", tc.name, w.Header().Get("Upgrade"))
		}
	}
	s.Close()
	w := httptest.NewRecorder()
	s.ServeHTTP(w, httptest.NewRequest("GET", "/_groupcache/", nil))
	if w.Code != http.StatusServiceUnavailable {
		t.Errorf("after Close: %d", w.Code)
	}
}

// TestUpgradeTokenList: the server picks its token out of a list, whatever its case.
func TestUpgradeTokenList(t *testing.T) {
	t.Parallel()
	_, addr := startServer(t, newBackend())
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	io.WriteString(nc, "GET /_groupcache HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, upgrade\r\nUpgrade: h2c, GroupCache/2\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Upgrade") != UpgradeToken {
		t.Fatalf("%v %v", resp, err)
	}
}

// TestPinnedStreamBytes pins the stream bytes of docs/protocol.md's example: a Get of "alice" in
// "users" as request 7, and its reply.
func TestPinnedStreamBytes(t *testing.T) {
	t.Parallel()
	b := newBackend()
	b.set("users", "alice", Value{Data: []byte("hello")})
	_, addr := startServer(t, b)
	r := dialRaw(t, addr)
	req, _ := hex.DecodeString("0000000f" + "00000007" + "02010005757365727305616c696365")
	if _, err := r.nc.Write(req); err != nil {
		t.Fatal(err)
	}
	want, _ := hex.DecodeString("0000000a" + "00000007" + "020000000568656c6c6f")
	got := make([]byte, len(want))
	if _, err := io.ReadFull(r.br, got); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("%x, %v; want %x", got, err, want)
	}
	if c := newClient(t); true {
		v, err := c.Get(context.Background(), addr, "users", []byte("alice"))
		if err != nil || string(v.Data) != "hello" {
			t.Fatalf("%+v %v", v, err)
		}
	}
}

// TestServerAnswersInAnyOrder: a request that waits in the Backend holds up none of the
// requests after it on the same connection.
func TestServerAnswersInAnyOrder(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		g := newGate()
		b := newBackend()
		b.hook, b.inline = g.hook, true
		b.set("c", "k", Value{Data: []byte("v")})
		b.set("c", "p", Value{Data: []byte("s")})
		pn := newPipeNet()
		s := serveOn(t, pn, b)
		nc, _ := pn.dial(context.Background(), "", "")
		r := upgradeRaw(t, nc)
		r.get(1, "slow")
		r.get(2, "k")
		r.send(3, wire.AppendRequest(nil, &wire.Request{Op: OpPeek, Cache: "c", Key: []byte("p")}))
		r.send(4, wire.AppendRequest(nil, &wire.Request{Op: OpSet, Cache: "c", Key: []byte("x"), Value: Value{Data: []byte("y")}}))
		got := r.replies(3)
		if r, ok := got[4]; !ok || r.Status != StatusOK || string(got[2].Value.Data) != "v" || string(got[3].Value.Data) != "s" {
			t.Fatalf("replies %+v", got)
		}
		g.release()
		if id, resp := r.reply(); id != 1 || resp.Status != StatusNotFound {
			t.Fatalf("reply %d %+v", id, resp)
		}
		if st := s.Stats(); st.Detached != 2 || st.ByOp[OpGet] != 2 || st.ByStatus[StatusOK] != 3 || st.ByStatus[StatusNotFound] != 1 {
			t.Fatalf("stats %+v", st)
		}
	})
}

// TestServerConnRequestBound: a connection gets at most MaxConnRequests requests served at once;
// the server reads no further frame until one ends.
func TestServerConnRequestBound(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		g := newGate()
		b := newBackend()
		b.hook = g.hook
		pn := newPipeNet()
		serveOn(t, pn, b)
		nc, _ := pn.dial(context.Background(), "", "")
		r := upgradeRaw(t, nc)
		go func() {
			for i := range MaxConnRequests + 1 {
				r.get(uint32(i), "slow")
			}
		}()
		synctest.Wait()
		if n := b.ops[OpGet].Load(); n != MaxConnRequests {
			t.Fatalf("%d requests in the Backend, want %d", n, MaxConnRequests)
		}
		g.release()
		got := r.replies(MaxConnRequests + 1)
		if len(got) != MaxConnRequests+1 || b.ops[OpGet].Load() != MaxConnRequests+1 {
			t.Fatalf("%d replies, %d requests", len(got), b.ops[OpGet].Load())
		}
	})
}

// TestServerRefusals: malformed frames are answered under their id with the status that says
// why, a panicking Backend with StatusInternal, and the connection goes on.
func TestServerRefusals(t *testing.T) {
	t.Parallel()
	b := newBackend()
	b.set("c", "k", Value{Data: []byte("v")})
	b.hook = func(_ context.Context, op Op, key []byte) error {
		if string(key) == "panic" || op == OpClear {
			panic("backend bug")
		}
		return nil
	}
	s, addr := startServer(t, b, WithLimits(Limits{MaxKeyBytes: 16}))
	r := dialRaw(t, addr)
	cases := []struct {
		frame []byte
		want  Status
		msg   string
	}{
		{[]byte{}, StatusBadRequest, "truncated header"},
		{[]byte{Version, byte(OpGet), 0, 9}, StatusBadRequest, "cache name"},
		{[]byte{Version, 9, 0, 1, 'c', 0}, StatusBadRequest, "unsupported op"},
		{[]byte{1, byte(OpGet), 0, 1, 'c', 0}, StatusBadVersion, "this server speaks 2"},
		{wire.AppendRequest(nil, &wire.Request{Op: OpGet, Cache: "c", Key: bytes.Repeat([]byte("k"), 17)}), StatusBadRequest, "over the limit"},
		{wire.AppendRequest(nil, &wire.Request{Op: OpGet, Cache: "c", Key: []byte("panic")}), StatusInternal, "backend panicked: backend bug"},
		{wire.AppendRequest(nil, &wire.Request{Op: OpClear, Cache: "c", Generation: 1}), StatusInternal, "backend panicked"},
		{wire.AppendRequest(nil, &wire.Request{Op: OpGet, Cache: "c", Key: []byte("missing")}), StatusNotFound, ""},
	}
	for i, tc := range cases {
		r.send(uint32(100+i), tc.frame)
		id, resp := r.reply()
		if id != uint32(100+i) || resp.Status != tc.want || !strings.Contains(resp.Msg, tc.msg) {
			t.Errorf("frame %x: reply %d %+v, want %v %q", tc.frame, id, resp, tc.want, tc.msg)
		}
	}
	r.get(7, "k")
	if id, resp := r.reply(); id != 7 || string(resp.Value.Data) != "v" {
		t.Fatalf("after the refusals: %d %+v", id, resp)
	}
	st := s.Stats()
	if st.Panics != 2 || st.ByStatus[StatusBadRequest] != 4 || st.ByStatus[StatusBadVersion] != 1 || st.Requests != int64(len(cases)+1) {
		t.Fatalf("stats %+v", st)
	}
}

// TestServerRefusesHugeFrame: a request frame over the limit is refused from its prefix and the
// connection closed (its bytes cannot be skipped safely); a client that sends half a frame and
// stalls, or garbage instead of the upgrade, holds up nobody else.
func TestServerRefusesHugeFrame(t *testing.T) {
	t.Parallel()
	b := newBackend()
	b.set("c", "k", Value{Data: []byte("v")})
	_, addr := startServer(t, b)
	r := dialRaw(t, addr)
	r.nc.Write(wire.AppendPrefix(nil, 0x7fffffff, 5))
	if id, resp := r.reply(); id != 5 || resp.Status != StatusBadRequest || !strings.Contains(resp.Msg, "over the limit") {
		t.Fatalf("reply %d %+v", id, resp)
	}
	if !r.closed() {
		t.Fatal("connection not closed")
	}
	stall := dialRaw(t, addr)
	stall.nc.Write(append(wire.AppendPrefix(nil, 50, 1), Version))
	junk, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer junk.Close()
	junk.Write([]byte("\x16\x03\x01 not http\r\n\r\n"))
	c := newClient(t)
	for range 20 {
		if v, err := c.Get(context.Background(), addr, "c", []byte("k")); err != nil || string(v.Data) != "v" {
			t.Fatalf("%+v %v", v, err)
		}
	}
}

// TestServerLargeAndSmallReplies: replies with large values (written from where they lie) and
// small ones, on one connection, each under its own id and whole.
func TestServerLargeAndSmallReplies(t *testing.T) {
	t.Parallel()
	b := newBackend()
	b.inline = true
	sizes := []int{10, smallReply + 1, 100, 1 << 20, 0, 3 * smallReply}
	for i, n := range sizes {
		b.set("c", fmt.Sprint(i), Value{Data: bytes.Repeat([]byte{byte('a' + i)}, n)})
	}
	_, addr := startServer(t, b)
	r := dialRaw(t, addr)
	for round := range 3 {
		for i := range sizes {
			r.get(uint32(round*100+i), fmt.Sprint(i))
		}
		got := r.replies(len(sizes))
		for i, n := range sizes {
			v := got[uint32(round*100+i)].Value.Data
			if len(v) != n || (n > 0 && (v[0] != byte('a'+i) || v[n-1] != byte('a'+i))) {
				t.Fatalf("round %d, value %d: %d bytes", round, i, len(v))
			}
		}
	}
}

// TestServerMaxConcurrent: requests beyond WithMaxConcurrent are answered StatusOverloaded.
func TestServerMaxConcurrent(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		g := newGate()
		b := newBackend()
		b.hook = g.hook
		pn := newPipeNet()
		s := serveOn(t, pn, b, WithMaxConcurrent(1))
		nc, _ := pn.dial(context.Background(), "", "")
		r := upgradeRaw(t, nc)
		r.get(1, "slow")
		synctest.Wait()
		r.get(2, "slow2")
		if id, resp := r.reply(); id != 2 || resp.Status != StatusOverloaded {
			t.Fatalf("reply %d %+v", id, resp)
		}
		g.release()
		if id, resp := r.reply(); id != 1 || resp.Status != StatusNotFound {
			t.Fatalf("reply %d %+v", id, resp)
		}
		if st := s.Stats(); st.ByStatus[StatusOverloaded] != 1 {
			t.Fatalf("stats %+v", st)
		}
	})
}

// TestServerIdleTimeout: a connection without requests is closed after the idle timeout; one
// with a request in progress is not, however long the request takes.
func TestServerIdleTimeout(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		g := newGate()
		b := newBackend()
		b.hook = g.hook
		pn := newPipeNet()
		serveOn(t, pn, b, WithIdleTimeout(time.Minute))
		nc, _ := pn.dial(context.Background(), "", "")
		idle := upgradeRaw(t, nc)
		nc2, _ := pn.dial(context.Background(), "", "")
		busy := upgradeRaw(t, nc2)
		busy.get(1, "slow")
		start := time.Now()
		if !idle.closed() {
			t.Fatal("idle connection not closed")
		}
		if d := time.Since(start); d < time.Minute-time.Minute/16 || d > time.Minute {
			t.Fatalf("closed after %v", d)
		}
		time.Sleep(5 * time.Minute)
		g.release()
		if id, resp := busy.reply(); id != 1 || resp.Status != StatusNotFound {
			t.Fatalf("reply %d %+v", id, resp)
		}
	})
}

// TestServerCloseEndsRequests: Close cancels the requests in progress, waits for them and
// closes the connections.
func TestServerCloseEndsRequests(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := newBackend()
		ended := make(chan error, 1)
		b.hook = func(ctx context.Context, _ Op, _ []byte) error {
			<-ctx.Done()
			ended <- ctx.Err()
			return ctx.Err()
		}
		pn := newPipeNet()
		s := serveOn(t, pn, b)
		nc, _ := pn.dial(context.Background(), "", "")
		r := upgradeRaw(t, nc)
		r.get(1, "k")
		synctest.Wait()
		s.Close()
		if err := <-ended; !errors.Is(err, context.Canceled) {
			t.Fatalf("the request's context: %v", err)
		}
		if !r.closed() {
			t.Fatal("connection not closed")
		}
		if st := s.Stats(); st.ActiveConns != 0 || st.Conns != 1 {
			t.Fatalf("stats %+v", st)
		}
	})
}

// TestServerStats: the counters add up to what went over the wire.
func TestServerStats(t *testing.T) {
	t.Parallel()
	b := newBackend()
	b.inline = true
	b.set("c", "k", Value{Data: []byte("v")})
	s, addr := startServer(t, b)
	c := newClient(t)
	ctx := context.Background()
	c.Get(ctx, addr, "c", []byte("k"))
	c.Get(ctx, addr, "c", []byte("missing"))
	c.GetMany(ctx, addr, "c", keysOf("k", "missing"))
	c.Remove(ctx, addr, "c", keysOf("x"))
	st, cs := s.Stats(), c.Stats()
	if st.Requests != 4 || st.ByOp[OpGet] != 2 || st.ByOp[OpGetMany] != 1 || st.ByOp[OpRemove] != 1 ||
		st.ByStatus[StatusOK] != 3 || st.ByStatus[StatusNotFound] != 1 || st.Detached != 3 || st.Conns != 1 ||
		st.ActiveConns != 1 || st.BytesIn != cs.BytesSent || st.BytesOut != cs.BytesReceived || b.inl.Load() != 1 {
		t.Fatalf("server %+v, client %+v", st, cs)
	}
}

// FuzzServerStream feeds a connection arbitrary bytes after the upgrade: the server never
// panics, and every reply it writes is a well-formed frame under an id the input carried.
func FuzzServerStream(f *testing.F) {
	get := func(id uint32, key string) []byte {
		fr := wire.AppendRequest(nil, &wire.Request{Op: OpGet, Cache: "c", Key: []byte(key)})
		return append(wire.AppendPrefix(nil, len(fr), id), fr...)
	}
	many := wire.AppendRequest(nil, &wire.Request{Op: OpGetMany, Cache: "c", Keys: keysOf("k", "x")})
	f.Add(get(1, "k"))
	f.Add(append(get(1, "k"), get(2, "big")...))
	f.Add(append(wire.AppendPrefix(nil, len(many), 9), many...))
	f.Add(wire.AppendPrefix(nil, 0x7fffffff, 3))
	f.Add(append(wire.AppendPrefix(nil, 2, 4), Version, 9))
	f.Add(append(wire.AppendPrefix(nil, 50, 1), Version))

	b := newBackend()
	b.inline = true
	b.set("c", "k", Value{Data: []byte("v")})
	b.set("c", "big", Value{Data: bytes.Repeat([]byte("w"), smallReply+1)})
	_, addr := startServer(f, b, WithLimits(Limits{MaxValueBytes: 1 << 20}))
	f.Fuzz(func(t *testing.T, data []byte) {
		// The ids the input could carry, frame by frame, as the server reads it.
		ids := map[uint32]bool{}
		for rest := data; len(rest) >= wire.PrefixLen; {
			n, id := wire.ParsePrefix(rest)
			ids[id] = true
			if n > len(rest)-wire.PrefixLen {
				break
			}
			rest = rest[wire.PrefixLen+n:]
		}
		r := dialRaw(t, addr)
		if _, err := r.nc.Write(data); err != nil {
			t.Fatal(err)
		}
		r.nc.(*net.TCPConn).CloseWrite()
		for {
			hdr := make([]byte, wire.PrefixLen)
			if _, err := io.ReadFull(r.br, hdr); err != nil {
				if err != io.EOF {
					t.Fatalf("reading a reply: %v", err)
				}
				return
			}
			n, id := wire.ParsePrefix(hdr)
			if !ids[id] {
				t.Fatalf("reply under id %d, which was not sent", id)
			}
			frame := make([]byte, n)
			if _, err := io.ReadFull(r.br, frame); err != nil {
				t.Fatalf("reading a reply of %d bytes: %v", n, err)
			}
			if _, err := wire.ParseResponse(frame, Limits{MaxValueBytes: 1 << 20}); err != nil {
				t.Fatalf("malformed reply: %v", err)
			}
		}
	})
}

// TestServerLimits: WithLimits refuses a field out of its range, and a Server's request frame
// limit is the longest valid request (wire.RequestFrameMax) capped at MaxFrameBytes.
func TestServerLimits(t *testing.T) {
	if _, err := NewServer(newBackend(), WithLimits(Limits{MaxBatchKeys: -1})); !errors.Is(err, ErrInvalidOption) {
		t.Fatalf("negative batch limit: %v", err)
	}
	s, err := NewServer(newBackend(), WithLimits(Limits{MaxFrameBytes: 500}))
	if err != nil || s.reqFrameMax != 500 {
		t.Fatalf("%v, %d", err, s.reqFrameMax)
	}
	s.Close()
}
