package peer

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

type runtimeMem struct{ total uint64 }

func (m *runtimeMem) read() {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m.total = ms.TotalAlloc
}

// hostileConn is one connection accepted by a hostile test server.
type hostileConn struct {
	t  testing.TB
	nc net.Conn
	br *bufio.Reader
}

// upgrade reads the client's upgrade request and answers 101 with framing 1 (a hostile server
// speaks framing 1 only: the client falls back to it).
func (h *hostileConn) upgrade() bool {
	req, err := http.ReadRequest(h.br)
	if err != nil {
		return false
	}
	if !headerHasToken(req.Header, "Upgrade", UpgradeProtocol) {
		h.t.Errorf("upgrade request without Upgrade: %v", req.Header)
		return false
	}
	_, err = io.WriteString(h.nc, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: groupcache/1\r\n\r\n")
	return err == nil
}

// readFrame reads one request frame.
func (h *hostileConn) readFrame() error {
	hdr := make([]byte, 4)
	if _, err := io.ReadFull(h.br, hdr); err != nil {
		return err
	}
	_, err := h.br.Discard(int(binary.BigEndian.Uint32(hdr)))
	return err
}

func (h *hostileConn) writeFrame(frame []byte) {
	h.nc.Write(binary.BigEndian.AppendUint32(nil, uint32(len(frame))))
	h.nc.Write(frame)
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
				handle(&hostileConn{t: t, nc: nc, br: bufio.NewReader(nc)})
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

// drain reads until the client goes away.
func (h *hostileConn) drain() { io.Copy(io.Discard, h.nc) }

func TestHostileServers(t *testing.T) {
	hit := AppendResponse(nil, &Response{Value: Value{Data: []byte("value")}})
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
			junk := bytes.Repeat([]byte("x"), 4096)
			for {
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
			io.WriteString(h.nc, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
			h.drain()
		}, ErrProtocol},
		{"bytes with the 101", func(h *hostileConn) {
			http.ReadRequest(h.br)
			io.WriteString(h.nc, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: groupcache/1\r\n\r\nextra")
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
		{"closes after the request", func(h *hostileConn) {
			if h.upgrade() {
				h.readFrame()
			}
		}, ErrUnavailable},
		{"closes mid-reply", func(h *hostileConn) {
			if h.upgrade() && h.readFrame() == nil {
				h.nc.Write(binary.BigEndian.AppendUint32(nil, uint32(len(hit))))
				h.nc.Write(hit[:len(hit)-2])
			}
		}, ErrUnavailable},
		{"garbage frame", func(h *hostileConn) {
			if h.upgrade() && h.readFrame() == nil {
				h.writeFrame([]byte{Version, 0, 0xf0, 0, 0})
				h.drain()
			}
		}, ErrProtocol},
		{"trailing bytes in frame", func(h *hostileConn) {
			if h.upgrade() && h.readFrame() == nil {
				h.writeFrame(append(bytes.Clone(hit), 0))
				h.drain()
			}
		}, ErrProtocol},
		{"huge length prefix", func(h *hostileConn) {
			if h.upgrade() && h.readFrame() == nil {
				h.nc.Write([]byte{0xff, 0xff, 0xff, 0xff, 1, 2, 3})
				h.drain()
			}
		}, ErrProtocol},
		{"newer version reply", func(h *hostileConn) {
			if h.upgrade() && h.readFrame() == nil {
				f := bytes.Clone(hit)
				f[0] = Version + 1
				h.writeFrame(f)
				h.drain()
			}
		}, ErrVersion},
		{"bad version status", func(h *hostileConn) {
			if h.upgrade() && h.readFrame() == nil {
				h.writeFrame(AppendResponse(nil, &Response{Status: StatusBadVersion, Msg: "speak 2"}))
				h.drain()
			}
		}, ErrVersion},
	}
	c := newClient(t, WithTimeout(300*time.Millisecond), WithDialTimeout(200*time.Millisecond))
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			addr := hostile(t, tc.handle)
			start := time.Now()
			_, err := c.Get(context.Background(), addr, "c", []byte("k"))
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("returned after %v", d)
			}
			checkErr(t, err, addr, tc.want)
			if tc.want == ErrProtocol && errors.Is(err, ErrUnavailable) {
				t.Errorf("%v matches ErrUnavailable too", err)
			}
			t.Log(err)
		})
	}
	// Only the connection that carried a well-formed reply (StatusBadVersion) is kept.
	if st := c.Stats(); st.OpenConns != 1 || st.Dials != int64(len(cases)) {
		t.Errorf("connections to hostile servers: %+v", st)
	}
}

func TestUnreachablePeer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c := newClient(t)
	_, err = c.Get(context.Background(), addr, "c", []byte("k"))
	checkErr(t, err, addr, ErrUnavailable)
	if st := c.Stats(); st.Dials != 0 || st.Errors != 1 {
		t.Errorf("stats %+v", st)
	}
}

// rawUpgrade dials addr and upgrades the connection by hand.
func rawUpgrade(t testing.TB, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	nc, br, proto := muxUpgrade(t, addr, UpgradeProtocol)
	if proto != UpgradeProtocol {
		t.Fatalf("upgraded to %q", proto)
	}
	return nc, br
}

func writeFrame(t testing.TB, nc net.Conn, frame []byte) {
	t.Helper()
	if _, err := nc.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(frame))), frame...)); err != nil {
		t.Fatal(err)
	}
}

func readReply(t testing.TB, br *bufio.Reader) Response {
	t.Helper()
	hdr := make([]byte, 4)
	if _, err := io.ReadFull(br, hdr); err != nil {
		t.Fatal(err)
	}
	frame := make([]byte, binary.BigEndian.Uint32(hdr))
	if _, err := io.ReadFull(br, frame); err != nil {
		t.Fatal(err)
	}
	r, err := ParseResponse(frame, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestServerSurvivesBadClients(t *testing.T) {
	b := newMapBackend()
	b.set("k", Value{Data: []byte("v")})
	s, addr := startServer(t, b, WithServerLimits(Limits{MaxKeyBytes: 16}))
	good := newClient(t)
	mustGet(t, good, addr, "k")

	// Malformed frames are answered with StatusBadRequest; the connection goes on.
	nc, br := rawUpgrade(t, addr)
	for _, f := range [][]byte{{}, {Version}, {Version, byte(OpGet), 0, 9}, {Version, 9, 0, 1, 'c', 0},
		append(AppendRequest(nil, &Request{Op: OpGet, Cache: "c", Key: []byte("k")}), 0)} {
		writeFrame(t, nc, f)
		if r := readReply(t, br); r.Status != StatusBadRequest || r.Msg == "" {
			t.Fatalf("frame %x: reply %+v", f, r)
		}
		mustGet(t, good, addr, "k")
	}
	writeFrame(t, nc, AppendRequest(nil, &Request{Op: OpGet, Cache: "c", Key: []byte("k")}))
	if r := readReply(t, br); r.Status != StatusOK || string(r.Value.Data) != "v" {
		t.Fatalf("reply %+v", r)
	}

	// A frame over the limit is refused from its length prefix, and the connection closed.
	nc2, br2 := rawUpgrade(t, addr)
	nc2.Write([]byte{0x7f, 0xff, 0xff, 0xff})
	if r := readReply(t, br2); r.Status != StatusBadRequest || !strings.Contains(r.Msg, "over the limit") {
		t.Fatalf("reply %+v", r)
	}
	if _, err := br2.ReadByte(); err != io.EOF {
		t.Fatalf("connection not closed: %v", err)
	}

	// A client that sends half a frame and stalls does not hold up others.
	nc3, _ := rawUpgrade(t, addr)
	nc3.Write([]byte{0, 0, 0, 50, Version})
	// A client that sends garbage instead of the HTTP request.
	nc4, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc4.Close()
	nc4.Write([]byte("\x16\x03\x01 not http\r\n\r\n"))

	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 25 {
				mustGet(t, good, addr, "k")
			}
		})
	}
	wg.Wait()
	if st := s.Stats(); st.BadRequest != 6 {
		t.Fatalf("stats %+v", st)
	}
}

func TestPlainPOST(t *testing.T) {
	b := newMapBackend()
	b.set("k", Value{Data: []byte("value"), Expires: 99})
	// Limits under which the longest valid request frame of any op is under 1000 bytes.
	s, addr := startServer(t, b, WithServerLimits(Limits{MaxKeyBytes: 100, MaxValueBytes: 100, MaxBatchKeys: 4}))
	url := "http://" + addr + "/_groupcache/"
	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()

	post := func(body []byte) (int, string, []byte) {
		t.Helper()
		resp, err := hc.Post(url, ContentType, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, resp.Header.Get("Content-Type"), data
	}
	code, ct, body := post(AppendRequest(nil, &Request{Op: OpGet, Cache: "c", Key: []byte("k")}))
	if code != 200 || ct != ContentType {
		t.Fatalf("%d %s", code, ct)
	}
	r, err := ParseResponse(body, Limits{})
	if err != nil || r.Status != StatusOK || string(r.Value.Data) != "value" || r.Value.Expires != 99 {
		t.Fatalf("%+v %v", r, err)
	}
	for _, tc := range []struct {
		frame []byte
		want  Status
	}{
		{AppendRequest(nil, &Request{Op: OpGet, Cache: "c", Key: []byte("missing")}), StatusNotFound},
		{AppendRequest(nil, &Request{Op: OpGet, Cache: "x", Key: []byte("k")}), StatusUnknownCache},
		{[]byte{Version + 1, 1, 0, 1, 'c', 0}, StatusBadVersion},
		{[]byte("garbage"), StatusBadVersion},
		{[]byte{Version, 1}, StatusBadRequest},
	} {
		code, _, body := post(tc.frame)
		r, err := ParseResponse(body, Limits{})
		if code != 200 || err != nil || r.Status != tc.want {
			t.Fatalf("frame %x: %d %+v %v", tc.frame, code, r, err)
		}
	}
	// A body over the limit.
	if code, _, _ := post(make([]byte, 1000)); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("big body: %d", code)
	}
	// Other methods, paths and upgrades get plain HTTP errors.
	get := func(path string, hdr map[string]string) (int, string) {
		req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(data)
	}
	if code, msg := get("/_groupcache/", nil); code != http.StatusMethodNotAllowed || !strings.Contains(msg, "POST") {
		t.Fatalf("GET: %d %s", code, msg)
	}
	if code, _ := get("/elsewhere", nil); code != http.StatusNotFound {
		t.Fatalf("other path: %d", code)
	}
	if code, msg := get("/_groupcache/", map[string]string{"Connection": "Upgrade", "Upgrade": "websocket"}); code != http.StatusBadRequest ||
		!strings.Contains(msg, UpgradeProtocol) {
		t.Fatalf("other upgrade: %d %s", code, msg)
	}
	if st := s.Stats(); st.Requests != 6 || st.OK != 1 || st.ActiveConns != 0 || st.Upgrades != 0 {
		t.Fatalf("stats %+v", st)
	}
	// POST after Close: 503.
	s.Close()
	hc.CloseIdleConnections()
	if _, err := hc.Post(url, ContentType, bytes.NewReader(nil)); err == nil {
		t.Fatal("POST after Close reached the closed listener")
	}
}

func TestReadFrameGrowsStepwise(t *testing.T) {
	// A frame announced as 64 MiB of which only 3 MiB arrive: memory follows the bytes.
	data := make([]byte, 3<<20)
	var before, after runtimeMem
	before.read()
	got, err := readFrame(bytes.NewReader(data), nil, 64<<20)
	after.read()
	if !errors.Is(err, io.ErrUnexpectedEOF) || len(got) != len(data) {
		t.Fatalf("%d bytes, %v", len(got), err)
	}
	if d := after.total - before.total; d > 16<<20 {
		t.Fatalf("allocated %d bytes for 3 MiB", d)
	}
	got, err = readFrame(bytes.NewReader(append(data, 1, 2)), nil, len(data)+2)
	if err != nil || len(got) != len(data)+2 || got[len(got)-1] != 2 {
		t.Fatalf("%d bytes, %v", len(got), err)
	}
	buf := make([]byte, 10)
	got, err = readFrame(bytes.NewReader([]byte("abc")), buf, 3)
	if err != nil || string(got) != "abc" || &got[0] != &buf[0] {
		t.Fatal("buffer not reused")
	}
}
