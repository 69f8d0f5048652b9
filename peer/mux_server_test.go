package peer

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// inlineBackend is a mapBackend that answers GetInline from its map for keys without the prefix
// "load:", and reports ok false (a load) for the others.
type inlineBackend struct {
	*mapBackend
	inlineCalls atomic.Int64
	panicInline bool
}

func (b *inlineBackend) GetInline(cache string, key []byte) (Value, bool, error) {
	b.inlineCalls.Add(1)
	if b.panicInline {
		panic("inline boom")
	}
	if strings.HasPrefix(string(key), "load:") || cache != "c" {
		return Value{}, false, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	v, ok := b.values[string(key)]
	if !ok {
		return Value{}, true, ErrNotFound
	}
	return v, true, nil
}

// muxUpgrade dials addr and upgrades the connection by hand, offering upgrade; it returns the
// connection, its reader and the protocol the server chose.
func muxUpgrade(t testing.TB, addr, upgrade string) (net.Conn, *bufio.Reader, string) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(nc, "GET /_groupcache/ HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\nUpgrade: "+upgrade+"\r\n\r\n")
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %s", resp.Status)
	}
	return nc, br, resp.Header.Get("Upgrade")
}

func muxGetFrame(id uint32, key string) []byte {
	f := AppendRequest(nil, &Request{Op: OpGet, Cache: "c", Key: []byte(key)})
	return append(appendMuxPrefix(nil, len(f), id), f...)
}

// readMuxReply reads one multiplexed reply.
func readMuxReply(t testing.TB, br *bufio.Reader) (uint32, Response) {
	t.Helper()
	hdr := make([]byte, muxPrefixLen)
	if _, err := io.ReadFull(br, hdr); err != nil {
		t.Fatal(err)
	}
	n, id := parseMuxPrefix(hdr)
	frame := make([]byte, n)
	if _, err := io.ReadFull(br, frame); err != nil {
		t.Fatal(err)
	}
	r, err := ParseResponse(frame, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return id, r
}

// usersBackend answers "hello" for key "alice" of cache "users".
type usersBackend struct{}

func (usersBackend) Get(_ context.Context, cache string, key []byte) (Value, error) {
	if cache == "users" && string(key) == "alice" {
		return Value{Data: []byte("hello")}, nil
	}
	return Value{}, ErrNotFound
}

func TestPinnedMuxBytes(t *testing.T) {
	want, _ := hex.DecodeString("0000000f" + "00000007" + "0101000575736572730561" + "6c696365")
	f := AppendRequest(nil, &Request{Op: OpGet, Cache: "users", Key: []byte("alice")})
	if got := append(appendMuxPrefix(nil, len(f), 7), f...); !bytes.Equal(got, want) {
		t.Fatalf("request\n got %x\nwant %x", got, want)
	}
	_, addr := startServer(t, usersBackend{})
	nc, br, proto := muxUpgrade(t, addr, "groupcache/2, groupcache/1")
	if proto != UpgradeMultiplexed {
		t.Fatalf("upgraded to %q", proto)
	}
	nc.Write(want)
	got := make([]byte, 18)
	if _, err := io.ReadFull(br, got); err != nil {
		t.Fatal(err)
	}
	wantReply, _ := hex.DecodeString("0000000a" + "00000007" + "01000000" + "0568656c6c6f")
	if !bytes.Equal(got, wantReply) {
		t.Fatalf("reply\n got %x\nwant %x", got, wantReply)
	}
}

func TestUpgradeNegotiation(t *testing.T) {
	b := newMapBackend()
	b.set("k", Value{Data: []byte("v")})
	s, addr := startServer(t, b)
	for _, tc := range []struct{ offer, want string }{
		{"groupcache/2, groupcache/1", UpgradeMultiplexed},
		{"groupcache/2", UpgradeMultiplexed},
		{"GroupCache/2", UpgradeMultiplexed},
		{"groupcache/1, groupcache/2", UpgradeProtocol}, // the client's preference first
		{"groupcache/1", UpgradeProtocol},
		{"h2c, groupcache/3, groupcache/2", UpgradeMultiplexed},
	} {
		nc, br, proto := muxUpgrade(t, addr, tc.offer)
		if proto != tc.want {
			t.Errorf("offer %q: upgraded to %q, want %q", tc.offer, proto, tc.want)
			continue
		}
		// The connection speaks what was answered.
		if proto == UpgradeMultiplexed {
			nc.Write(muxGetFrame(3, "k"))
			if id, r := readMuxReply(t, br); id != 3 || string(r.Value.Data) != "v" {
				t.Errorf("offer %q: reply %d %+v", tc.offer, id, r)
			}
		} else {
			writeFrame(t, nc, AppendRequest(nil, &Request{Op: OpGet, Cache: "c", Key: []byte("k")}))
			if r := readReply(t, br); string(r.Value.Data) != "v" {
				t.Errorf("offer %q: reply %+v", tc.offer, r)
			}
		}
	}
	if st := s.Stats(); st.Upgrades != 6 || st.Multiplexed != 4 {
		t.Errorf("stats %+v", st)
	}

	// Nothing the server speaks: 400, and the answer names both framings.
	req, _ := http.NewRequest("GET", "http://"+addr+"/_groupcache/", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "groupcache/3")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Upgrade") != "groupcache/2, groupcache/1" {
		t.Fatalf("answer %s, Upgrade %q", resp.Status, resp.Header.Get("Upgrade"))
	}
	http.DefaultClient.CloseIdleConnections()
}

// A request that loads holds up none of the requests sent after it on the same connection, and
// its reply comes when it is ready, under its own id.
func TestMuxSlowRequestDoesNotBlock(t *testing.T) {
	for _, inline := range []bool{false, true} {
		t.Run(fmt.Sprintf("inline=%v", inline), func(t *testing.T) {
			mb := newMapBackend()
			release := make(chan struct{})
			entered := make(chan struct{}, 1)
			mb.hook = func(ctx context.Context, key string) {
				if strings.HasPrefix(key, "load:") {
					entered <- struct{}{}
					<-release
				}
			}
			mb.set("load:slow", Value{Data: []byte("slow")})
			for i := range 50 {
				mb.set(fmt.Sprint("k", i), Value{Data: []byte(fmt.Sprint("v", i))})
			}
			var b Backend = mb
			ib := &inlineBackend{mapBackend: mb}
			if inline {
				b = ib
			}
			s, addr := startServer(t, b)
			nc, br, _ := muxUpgrade(t, addr, UpgradeMultiplexed)

			nc.Write(muxGetFrame(1000, "load:slow"))
			<-entered
			// 50 requests behind the slow one, in one write: all answered while it waits.
			var batch []byte
			for i := range 50 {
				batch = append(batch, muxGetFrame(uint32(i), fmt.Sprint("k", i))...)
			}
			nc.Write(batch)
			seen := map[uint32]bool{}
			for range 50 {
				id, r := readMuxReply(t, br)
				if seen[id] || id >= 50 || string(r.Value.Data) != fmt.Sprint("v", id) {
					t.Fatalf("reply id %d: %+v (seen before: %v)", id, r, seen[id])
				}
				seen[id] = true
			}
			close(release)
			if id, r := readMuxReply(t, br); id != 1000 || string(r.Value.Data) != "slow" {
				t.Fatalf("slow reply id %d: %+v", id, r)
			}
			st := s.Stats()
			wantDetached := int64(51)
			if inline {
				wantDetached = 1
				if n := ib.inlineCalls.Load(); n != 51 {
					t.Errorf("GetInline called %d times, want 51", n)
				}
			}
			if st.Detached != wantDetached || st.Requests != 51 || st.OK != 51 || st.ByOp[OpGet] != 51 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

// muxOpsBackend answers every op.
type muxOpsBackend struct{ *peekManyBackend }

func (b muxOpsBackend) Peek(_ context.Context, cache string, key []byte) (Value, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	v, ok := b.values[string(key)]
	if !ok {
		return Value{}, ErrNotFound
	}
	return v, nil
}

// Every op works on a multiplexed connection, answered under its id; errors keep the connection.
func TestMuxOps(t *testing.T) {
	b := muxOpsBackend{newPeekManyBackend()}
	b.set("k", Value{Data: []byte("v")})
	s, addr := startServer(t, b)
	nc, br, _ := muxUpgrade(t, addr, UpgradeMultiplexed)
	reqs := []Request{
		{Op: OpGet, Cache: "c", Key: []byte("k")},
		{Op: OpPeek, Cache: "c", Key: []byte("k")},
		{Op: OpGetMany, Cache: "c", Keys: [][]byte{[]byte("k"), []byte("nope")}},
		{Op: OpPeekMany, Cache: "c", Keys: [][]byte{[]byte("nope"), []byte("k")}},
		{Op: OpSet, Cache: "c", Key: []byte("s"), Value: Value{Data: []byte("set")}},
		{Op: OpGet, Cache: "c", Key: []byte("nope")},
		{Op: OpGet, Cache: "other", Key: []byte("k")},
	}
	var out []byte
	for i, r := range reqs {
		f := AppendRequest(nil, &r)
		out = append(appendMuxPrefix(out, len(f), uint32(100+i)), f...)
	}
	// A malformed frame is answered under its id too.
	out = append(appendMuxPrefix(out, 2, 99), Version, 9)
	nc.Write(out)
	got := map[uint32]Response{}
	for range len(reqs) + 1 {
		id, r := readMuxReply(t, br)
		got[id] = r
	}
	check := func(id uint32, st Status, data string) {
		t.Helper()
		r, ok := got[id]
		if !ok || r.Status != st || (st == StatusOK && id != 102 && id != 103 && string(r.Value.Data) != data) {
			t.Errorf("reply %d: %+v (present %v), want %v %q", id, r, ok, st, data)
		}
	}
	check(100, StatusOK, "v")
	check(101, StatusOK, "v")
	check(102, StatusOK, "")
	check(103, StatusOK, "")
	check(104, StatusOK, "")
	check(105, StatusNotFound, "")
	check(106, StatusUnknownCache, "")
	check(99, StatusBadRequest, "")
	for _, id := range []uint32{102, 103} {
		rs, err := ParseBatch(got[id].Value.Data, 2, Limits{})
		if err != nil {
			t.Fatal(err)
		}
		hit, miss := rs[0], rs[1]
		if id == 103 {
			hit, miss = rs[1], rs[0]
		}
		if hit.Err != nil || string(hit.Value.Data) != "v" || StatusOf(miss.Err) != StatusNotFound {
			t.Errorf("batch %d: %+v", id, rs)
		}
	}
	b.mu.Lock()
	v, ok := b.values["s"]
	b.mu.Unlock()
	if !ok || string(v.Data) != "set" {
		t.Errorf("Set not applied: %q %v", v.Data, ok)
	}
	if st := s.Stats(); st.Requests != 8 || st.BadRequest != 1 {
		t.Errorf("stats %+v", st)
	}
}

// At most MaxConnRequests requests of one connection are served at once; the others wait for
// room, and every request is answered.
func TestMuxConnRequestBound(t *testing.T) {
	mb := newMapBackend()
	mb.set("k", Value{Data: []byte("v")})
	var cur, peak atomic.Int64
	release := make(chan struct{})
	full := make(chan struct{})
	var fullOnce sync.Once
	mb.hook = func(ctx context.Context, key string) {
		n := cur.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		if n == MaxConnRequests {
			fullOnce.Do(func() { close(full) })
		}
		<-release
		cur.Add(-1)
	}
	_, addr := startServer(t, mb)
	nc, br, _ := muxUpgrade(t, addr, UpgradeMultiplexed)
	const total = MaxConnRequests + 44
	go func() {
		var out []byte
		for i := range total {
			out = append(out, muxGetFrame(uint32(i), "k")...)
		}
		nc.Write(out)
	}()
	<-full
	close(release)
	seen := map[uint32]bool{}
	for range total {
		id, r := readMuxReply(t, br)
		if seen[id] || r.Status != StatusOK {
			t.Fatalf("reply %d %+v, seen %v", id, r, seen[id])
		}
		seen[id] = true
	}
	if p := peak.Load(); p != MaxConnRequests {
		t.Fatalf("%d requests served at once, want %d", p, MaxConnRequests)
	}
}

// Refusals: a frame over the limit is answered under its id and the connection closed; panics
// of either Backend method are answered with StatusInternal and the connection goes on.
func TestMuxRefusalsAndPanics(t *testing.T) {
	mb := newMapBackend()
	mb.set("k", Value{Data: []byte("v")})
	mb.hook = func(ctx context.Context, key string) {
		if key == "load:panic" {
			panic("get boom")
		}
	}
	ib := &inlineBackend{mapBackend: mb}
	s, addr := startServer(t, ib)

	nc, br, _ := muxUpgrade(t, addr, UpgradeMultiplexed)
	nc.Write(muxGetFrame(1, "load:panic"))
	if id, r := readMuxReply(t, br); id != 1 || r.Status != StatusInternal || !strings.Contains(r.Msg, "get boom") {
		t.Fatalf("reply %d %+v", id, r)
	}
	ib.panicInline = true
	nc.Write(muxGetFrame(2, "k"))
	if id, r := readMuxReply(t, br); id != 2 || r.Status != StatusInternal || !strings.Contains(r.Msg, "inline boom") {
		t.Fatalf("reply %d %+v", id, r)
	}
	ib.panicInline = false
	nc.Write(muxGetFrame(3, "k"))
	if id, r := readMuxReply(t, br); id != 3 || string(r.Value.Data) != "v" {
		t.Fatalf("reply %d %+v", id, r)
	}

	nc2, br2, _ := muxUpgrade(t, addr, UpgradeMultiplexed)
	nc2.Write(appendMuxPrefix(nil, 0x7fffffff, 42))
	if id, r := readMuxReply(t, br2); id != 42 || r.Status != StatusBadRequest || !strings.Contains(r.Msg, "over the limit") {
		t.Fatalf("reply %d %+v", id, r)
	}
	if _, err := br2.ReadByte(); err != io.EOF {
		t.Fatalf("connection not closed: %v", err)
	}
	if st := s.Stats(); st.Panics != 2 || st.Internal != 2 || st.BadRequest != 1 {
		t.Errorf("stats %+v", st)
	}
}

// Large values (written from where they lie) and small ones, many at once from both inline and
// detached requests, all arrive whole under the right ids.
func TestMuxLargeAndSmallReplies(t *testing.T) {
	mb := newMapBackend()
	want := map[string][]byte{}
	for i := range 40 {
		size := 100
		if i%3 == 0 {
			size = smallReply + 1 + i*1000
		}
		v := bytes.Repeat([]byte{byte('a' + i%26)}, size)
		for _, k := range []string{fmt.Sprint("k", i), fmt.Sprint("load:k", i)} {
			mb.set(k, Value{Data: v})
			want[k] = v
		}
	}
	_, addr := startServer(t, &inlineBackend{mapBackend: mb})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			nc, br, _ := muxUpgrade(t, addr, UpgradeMultiplexed)
			keys := make([]string, 0, len(want))
			var out []byte
			for k := range want {
				out = append(out, muxGetFrame(uint32(len(keys)), k)...)
				keys = append(keys, k)
			}
			go nc.Write(out)
			for range keys {
				id, r := readMuxReply(t, br)
				if int(id) >= len(keys) || !bytes.Equal(r.Value.Data, want[keys[id]]) {
					t.Errorf("reply %d: %d bytes", id, len(r.Value.Data))
					return
				}
			}
		})
	}
	wg.Wait()
}

// A request that loads for longer than the idle timeout still gets its reply; a connection with
// nothing in progress is closed after it.
func TestMuxSlowRequestOutlastsIdleTimeout(t *testing.T) {
	mb := newMapBackend()
	mb.set("load:k", Value{Data: []byte("v")})
	mb.hook = func(ctx context.Context, key string) { time.Sleep(200 * time.Millisecond) }
	_, addr := startServer(t, mb, WithIdleTimeout(50*time.Millisecond))
	nc, br, _ := muxUpgrade(t, addr, UpgradeMultiplexed)
	nc.Write(muxGetFrame(5, "load:k"))
	if id, r := readMuxReply(t, br); id != 5 || string(r.Value.Data) != "v" {
		t.Fatalf("reply %d %+v", id, r)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection not closed: %v", err)
	}
}

// Close ends the requests in progress (their context is cancelled) and returns once they have.
func TestMuxServerCloseWithRequestsInProgress(t *testing.T) {
	mb := newMapBackend()
	entered := make(chan struct{}, 4)
	cancelled := atomic.Int64{}
	mb.hook = func(ctx context.Context, key string) {
		entered <- struct{}{}
		<-ctx.Done()
		cancelled.Add(1)
	}
	s, addr := startServer(t, mb)
	nc, _, _ := muxUpgrade(t, addr, UpgradeMultiplexed)
	for i := range 3 {
		nc.Write(muxGetFrame(uint32(i), "load:k"))
	}
	for range 3 {
		<-entered
	}
	s.Close()
	if n := cancelled.Load(); n != 3 {
		t.Fatalf("%d requests saw their context end before Close returned, want 3", n)
	}

	// The same when the client goes away.
	mb2 := newMapBackend()
	done := make(chan struct{}, 4)
	mb2.hook = func(ctx context.Context, key string) {
		entered <- struct{}{}
		<-ctx.Done()
		done <- struct{}{}
	}
	_, addr2 := startServer(t, mb2)
	nc2, _, _ := muxUpgrade(t, addr2, UpgradeMultiplexed)
	nc2.Write(muxGetFrame(1, "load:k"))
	<-entered
	nc2.Close()
	<-done
}

// FuzzMuxServerStream sends arbitrary bytes to a server on a multiplexed connection, then closes
// its side: the server must answer with well-formed frames only (one per whole request frame at
// most, under ids that were sent), and go on serving other connections.
func FuzzMuxServerStream(f *testing.F) {
	get := muxGetFrame(1, "k")
	many := AppendRequest(nil, &Request{Op: OpGetMany, Cache: "c", Keys: [][]byte{[]byte("k"), []byte("x")}})
	f.Add(get)
	f.Add(append(append([]byte{}, get...), muxGetFrame(2, "load:k")...))
	f.Add(append(appendMuxPrefix(nil, len(many), 9), many...))
	f.Add(appendMuxPrefix(nil, 0x7fffffff, 3))
	f.Add(append(appendMuxPrefix(nil, 2, 4), Version, 9))
	f.Add([]byte{0, 0, 0, 50, 0, 0, 0, 1, Version})

	b := muxOpsBackend{newPeekManyBackend()}
	b.set("k", Value{Data: []byte("v")})
	b.set("load:k", Value{Data: bytes.Repeat([]byte("w"), smallReply+1)})
	_, addr := startServer(f, &inlineBackend{mapBackend: b.mapBackend}, WithServerLimits(Limits{MaxValueBytes: 1 << 20}))
	f.Fuzz(func(t *testing.T, data []byte) {
		// The ids the input could carry, frame by frame, as the server reads it.
		ids := map[uint32]bool{}
		for rest := data; len(rest) >= muxPrefixLen; {
			n, id := parseMuxPrefix(rest)
			ids[id] = true
			if n > len(rest)-muxPrefixLen {
				break
			}
			rest = rest[muxPrefixLen+n:]
		}
		nc, br, _ := muxUpgrade(t, addr, UpgradeMultiplexed)
		if _, err := nc.Write(data); err != nil {
			t.Fatal(err)
		}
		nc.(*net.TCPConn).CloseWrite()
		for {
			hdr := make([]byte, muxPrefixLen)
			if _, err := io.ReadFull(br, hdr); err != nil {
				if err != io.EOF {
					t.Fatalf("reading a reply: %v", err)
				}
				break
			}
			n, id := parseMuxPrefix(hdr)
			if !ids[id] {
				t.Fatalf("reply under id %d, which was not sent", id)
			}
			frame := make([]byte, n)
			if _, err := io.ReadFull(br, frame); err != nil {
				t.Fatalf("reading a reply of %d bytes: %v", n, err)
			}
			if _, err := ParseResponse(frame, Limits{MaxValueBytes: 1 << 20}); err != nil {
				t.Fatalf("malformed reply: %v", err)
			}
		}
	})
}
