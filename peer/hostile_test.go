package peer

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/typedcache/groupcache/internal/wire"
)

// hostileConn is one connection accepted by a hostile test server: a peer that sends the bytes a
// test chooses.
type hostileConn struct {
	nc net.Conn
	br *bufio.Reader
}

// hostile starts a raw TCP server that handles each connection with handle, and returns its
// address. Connections are closed when handle returns and at the end of the test.
func hostile(t testing.TB, handle func(*hostileConn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, nc)
			mu.Unlock()
			wg.Go(func() {
				defer nc.Close()
				handle(&hostileConn{nc: nc, br: bufio.NewReader(nc)})
			})
		}
	})
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, nc := range conns {
			nc.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return l.Addr().String()
}

// upgrade reads the client's upgrade request and answers 101.
func (h *hostileConn) upgrade() bool {
	if _, err := http.ReadRequest(h.br); err != nil {
		return false
	}
	_, err := io.WriteString(h.nc, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+UpgradeToken+"\r\n\r\n")
	return err == nil
}

// read reads one request frame and returns its id and request.
func (h *hostileConn) read() (uint32, wire.Request, error) {
	hdr := make([]byte, wire.PrefixLen)
	if _, err := io.ReadFull(h.br, hdr); err != nil {
		return 0, wire.Request{}, err
	}
	n, id := wire.ParsePrefix(hdr)
	frame := make([]byte, n)
	if _, err := io.ReadFull(h.br, frame); err != nil {
		return 0, wire.Request{}, err
	}
	req, err := wire.ParseRequest(frame, Limits{})
	return id, req, err
}

// reply writes frame under the given id.
func (h *hostileConn) reply(id uint32, frame []byte) {
	h.nc.Write(append(wire.AppendPrefix(nil, len(frame), id), frame...))
}

// drain reads until the client goes away.
func (h *hostileConn) drain() { io.Copy(io.Discard, h.nc) }

// answerFirst upgrades, reads one request and runs bad with its id; then drains.
func answerFirst(bad func(h *hostileConn, id uint32, req wire.Request)) func(*hostileConn) {
	return func(h *hostileConn) {
		if !h.upgrade() {
			return
		}
		id, req, err := h.read()
		if err != nil {
			return
		}
		bad(h, id, req)
		h.drain()
	}
}

// TestHostileServers: whatever a peer sends, a call ends within its timeout with an error that
// says whether the peer is unavailable or speaks garbage.
func TestHostileServers(t *testing.T) {
	t.Parallel()
	hit := wire.AppendResponse(nil, &wire.Response{Value: Value{Data: []byte("value")}})
	cases := []struct {
		name   string
		handle func(h *hostileConn)
		want   error
	}{
		{"garbage instead of HTTP", func(h *hostileConn) {
			h.nc.Write([]byte("\x00\x01\x02 this is not HTTP\r\n\r\n"))
			h.drain()
		}, ErrProtocol},
		{"endless status line", func(h *hostileConn) {
			for junk := bytes.Repeat([]byte("x"), 4096); ; {
				if _, err := h.nc.Write(junk); err != nil {
					return
				}
			}
		}, ErrProtocol},
		{"HTTP 200 instead of 101", func(h *hostileConn) {
			http.ReadRequest(h.br)
			io.WriteString(h.nc, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
			h.drain()
		}, ErrProtocol},
		{"101 to another protocol", func(h *hostileConn) {
			http.ReadRequest(h.br)
			io.WriteString(h.nc, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: groupcache/1\r\n\r\n")
			h.drain()
		}, ErrProtocol},
		{"bytes with the 101", func(h *hostileConn) {
			http.ReadRequest(h.br)
			io.WriteString(h.nc, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: groupcache/2\r\n\r\nextra")
			h.drain()
		}, ErrProtocol},
		{"HTTP 503", func(h *hostileConn) {
			http.ReadRequest(h.br)
			io.WriteString(h.nc, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy")
			h.drain()
		}, ErrUnavailable},
		{"closes at once", func(h *hostileConn) {}, ErrUnavailable},
		{"never answers the handshake", func(h *hostileConn) { h.drain() }, ErrUnavailable},
		{"never answers the request", func(h *hostileConn) {
			if h.upgrade() {
				h.drain()
			}
		}, ErrUnavailable},
		{"closes mid-reply", answerFirst(func(h *hostileConn, id uint32, _ wire.Request) {
			h.nc.Write(append(wire.AppendPrefix(nil, len(hit), id), hit[:len(hit)-2]...))
			h.nc.Close()
		}), ErrUnavailable},
		{"garbage frame", answerFirst(func(h *hostileConn, id uint32, _ wire.Request) {
			h.reply(id, []byte{Version, 0, 0xf0, 0, 0})
		}), ErrProtocol},
		{"trailing bytes in frame", answerFirst(func(h *hostileConn, id uint32, _ wire.Request) {
			h.reply(id, append(bytes.Clone(hit), 0))
		}), ErrProtocol},
		{"huge length prefix", answerFirst(func(h *hostileConn, id uint32, _ wire.Request) {
			h.nc.Write(append(wire.AppendPrefix(nil, 0x7fffffff, id), 1, 2, 3))
		}), ErrProtocol},
		{"reply under an unknown id", answerFirst(func(h *hostileConn, id uint32, _ wire.Request) {
			h.reply(id+1000, hit)
		}), ErrProtocol},
		{"newer version reply", answerFirst(func(h *hostileConn, id uint32, _ wire.Request) {
			f := bytes.Clone(hit)
			f[0] = Version + 1
			h.reply(id, f)
		}), ErrVersion},
		{"bad version status", answerFirst(func(h *hostileConn, id uint32, _ wire.Request) {
			h.reply(id, wire.AppendResponse(nil, &wire.Response{Status: StatusBadVersion, Msg: "speak 3"}))
		}), ErrVersion},
	}
	c := newClient(t, WithTimeout(300*time.Millisecond), WithDialTimeout(200*time.Millisecond))
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			addr := hostile(t, tc.handle)
			err := get(c, addr, "k")
			checkErr(t, err, addr, OpGet, tc.want)
			if tc.want != ErrUnavailable && errors.Is(err, ErrUnavailable) {
				t.Errorf("%v matches ErrUnavailable too", err)
			}
			t.Log(err)
		})
	}
}

// TestHostileBatchReplies: a batch reply that does not answer the request (entries missing or
// extra, malformed) fails the request with ErrProtocol; an acknowledgment carrying a value too.
func TestHostileBatchReplies(t *testing.T) {
	t.Parallel()
	hits := func(n int) []Result {
		rs := make([]Result, n)
		for i := range rs {
			rs[i].Value.Data = []byte("v")
		}
		return rs
	}
	batch := func(body []byte) []byte { return wire.AppendResponse(nil, &wire.Response{Value: Value{Data: body}}) }
	cases := []struct {
		name  string
		op    Op
		reply func(req wire.Request) []byte
	}{
		{"missing entry", OpGetMany, func(req wire.Request) []byte { return batch(wire.AppendBatch(nil, hits(len(req.Keys)-1))) }},
		{"extra entry", OpPeekMany, func(req wire.Request) []byte { return batch(wire.AppendBatch(nil, hits(len(req.Keys)+1))) }},
		{"garbage body", OpGetMany, func(wire.Request) []byte { return batch([]byte{2, 0xff}) }},
		{"flags on a batch", OpGetMany, func(req wire.Request) []byte {
			return wire.AppendResponse(nil, &wire.Response{Value: Value{Data: wire.AppendBatch(nil, hits(len(req.Keys))), TTL: 5}})
		}},
		{"value on an acknowledgment", OpSet, func(wire.Request) []byte { return batch([]byte("x")) }},
		{"expiry on an acknowledgment", OpRemove, func(wire.Request) []byte { return wire.AppendResponse(nil, &wire.Response{Value: Value{TTL: 9}}) }},
	}
	c := newClient(t)
	ctx := context.Background()
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			addr := hostile(t, answerFirst(func(h *hostileConn, id uint32, req wire.Request) { h.reply(id, tc.reply(req)) }))
			var err error
			switch tc.op {
			case OpGetMany:
				_, err = c.GetMany(ctx, addr, "c", keysOf("a", "b"))
			case OpPeekMany:
				_, err = c.PeekMany(ctx, addr, "c", keysOf("a", "b"))
			case OpSet:
				err = c.Set(ctx, addr, "c", []byte("k"), Value{})
			case OpRemove:
				err = c.Remove(ctx, addr, "c", keysOf("k"))
			}
			checkErr(t, err, addr, tc.op, ErrProtocol)
		})
	}
}

// TestRetriedOnClosedConnection: a request in flight on a connection the peer closes before any
// byte of its reply is sent once more on a new connection (every operation is idempotent); a
// request whose reply was being read is not, and fails.
func TestRetriedOnClosedConnection(t *testing.T) {
	t.Parallel()
	hit := wire.AppendResponse(nil, &wire.Response{Value: Value{Data: []byte("value")}})
	var conns atomic.Int64
	addr := hostile(t, func(h *hostileConn) {
		first := conns.Add(1) == 1
		if !h.upgrade() {
			return
		}
		for {
			id, _, err := h.read()
			if err != nil || first {
				return // the first connection closes without a reply
			}
			h.reply(id, hit)
		}
	})
	c := newClient(t)
	v, err := c.Get(context.Background(), addr, "c", []byte("k"))
	if err != nil || string(v.Data) != "value" {
		t.Fatalf("%+v %v", v, err)
	}
	if st := c.Stats(); st.Retries != 1 || st.Dials != 2 {
		t.Fatalf("stats %+v", st)
	}

	var conns2 atomic.Int64
	addr2 := hostile(t, func(h *hostileConn) {
		conns2.Add(1)
		if !h.upgrade() {
			return
		}
		if id, _, err := h.read(); err == nil {
			h.nc.Write(append(wire.AppendPrefix(nil, len(hit), id), hit[:4]...))
		}
	})
	checkErr(t, get(c, addr2, "k"), addr2, OpGet, ErrUnavailable)
	if conns2.Load() != 1 {
		t.Fatalf("a request whose reply had started was sent again (%d connections)", conns2.Load())
	}
}
