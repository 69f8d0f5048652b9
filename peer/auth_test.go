package peer

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/typedcache/groupcache/internal/testpki"
	"github.com/typedcache/groupcache/internal/wire"
)

var (
	secretA = []byte("0123456789abcdef-secret-a")
	secretB = []byte("0123456789abcdef-secret-b")
)

// getOK asks addr for a key the backend holds and fails the test unless it comes.
func getOK(t *testing.T, c *Client, addr string) {
	t.Helper()
	if v, err := c.Get(context.Background(), addr, "c", []byte("k")); err != nil || string(v.Data) != "v" {
		t.Fatalf("Get: %q, %v", v.Data, err)
	}
}

// forbidden fails the test unless err is a refusal whose message holds want.
func forbidden(t *testing.T, err error, want string) {
	t.Helper()
	if StatusOf(err) != StatusForbidden || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want a refusal saying %q", err, want)
	}
}

func backendWithK() *testBackend {
	b := newBackend()
	b.set("c", "k", Value{Data: []byte("v")})
	return b
}

func TestSecret(t *testing.T) {
	s, addr := startServer(t, backendWithK(), WithSecret(secretA))
	getOK(t, newClient(t, WithSecret(secretA), WithSelf("127.0.0.1:1")), addr)
	getOK(t, newClient(t, WithSecret(secretA)), addr) // no claim: the proofs bind the empty one
	if st := s.Stats(); st.Refused != 0 || st.Conns != 2 {
		t.Fatalf("%+v", st)
	}

	_, err := newClient(t, WithSecret(secretB)).Get(context.Background(), addr, "c", []byte("k"))
	forbidden(t, err, "not one this node accepts")
	_, err = newClient(t).Get(context.Background(), addr, "c", []byte("k"))
	forbidden(t, err, "requires the shared secret")
	if st := s.Stats(); st.Refused != 2 || st.Requests != 2 {
		t.Fatalf("refused clients were served: %+v", st)
	}

	// A server that does not know the secret cannot pass for a peer that does.
	_, plain := startServer(t, backendWithK())
	_, err = newClient(t, WithSecret(secretA)).Get(context.Background(), plain, "c", []byte("k"))
	forbidden(t, err, "did not prove it knows the shared secret")
}

// TestSecretRotation goes through a rollover: every server accepts both secrets, then clients
// move to the new one, then servers drop the old one.
func TestSecretRotation(t *testing.T) {
	_, both := startServer(t, backendWithK(), WithSecret(secretB, secretA))
	getOK(t, newClient(t, WithSecret(secretA)), both)
	getOK(t, newClient(t, WithSecret(secretB, secretA)), both)
	_, after := startServer(t, backendWithK(), WithSecret(secretB))
	getOK(t, newClient(t, WithSecret(secretB)), after)
	_, err := newClient(t, WithSecret(secretA)).Get(context.Background(), after, "c", []byte("k"))
	forbidden(t, err, "not one this node accepts")
}

func TestSecretOptions(t *testing.T) {
	for name, opt := range map[string]SharedOption{
		"short": WithSecret([]byte("short")),
		"twice": WithSecret(secretA, secretA),
		"too many": WithSecret(secretA, secretB, []byte("0123456789abcdef2"), []byte("0123456789abcdef3"),
			[]byte("0123456789abcdef4"), []byte("0123456789abcdef5"), []byte("0123456789abcdef6"),
			[]byte("0123456789abcdef7"), []byte("0123456789abcdef8")),
		"nil TLS":   WithTLS(nil),
		"TLS no CA": WithTLS(&tls.Config{}),
	} {
		if _, err := NewClient(opt); !errors.Is(err, ErrInvalidOption) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := NewClient(WithSelf("nohost")); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("WithSelf: %v", err)
	}
}

// rawUpgrade sends an upgrade request with the given extra headers on a new connection to addr
// and returns the connection, its reader and the answer.
func rawUpgrade(t *testing.T, addr, headers string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(nc, "GET "+DefaultBasePath+" HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: "+
		UpgradeToken+"\r\n"+headers+"\r\n")
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	return nc, br, resp
}

// TestSecretProofRefused: a client that names an accepted secret but cannot prove it (a wrong
// proof, or one replayed from another connection) gets a refusal frame and is never served.
func TestSecretProofRefused(t *testing.T) {
	s, addr := startServer(t, backendWithK(), WithSecret(secretA))
	cnonce := make([]byte, wire.NonceLen)
	headers := wire.HeaderKey + ": " + wire.KeyID(secretA) + "\r\n" + wire.HeaderNonce + ": " + hex.EncodeToString(cnonce) + "\r\n"
	get := wire.AppendRequest(wire.AppendPrefix(nil, 0, 1), &wire.Request{Op: OpGet, Cache: "c", Key: []byte("k")})
	binary.BigEndian.PutUint32(get, uint32(len(get)-wire.PrefixLen))

	// A legitimate exchange, done by hand: its proof is valid on its own connection only.
	nc, br, resp := rawUpgrade(t, addr, headers)
	snonce, _ := hex.DecodeString(resp.Header.Get(wire.HeaderNonce))
	good := wire.Proof(secretA, "client", cnonce, snonce, "")
	nc.Write(append(good, get...))
	if id, r := readReply(t, br); id != 1 || r.Status != StatusOK || string(r.Value.Data) != "v" {
		t.Fatalf("legitimate exchange: %d %+v", id, r)
	}

	for name, p := range map[string][]byte{"wrong": make([]byte, wire.ProofLen), "replayed": good} {
		nc, br, resp := rawUpgrade(t, addr, headers)
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("%s: %s", name, resp.Status)
		}
		nc.Write(append(p, get...))
		if id, r := readReply(t, br); id != 0 || r.Status != StatusForbidden || !strings.Contains(r.Msg, "proof") {
			t.Fatalf("%s: %d %+v", name, id, r)
		}
		if _, err := br.ReadByte(); err != io.EOF {
			t.Fatalf("%s: connection left open (%v)", name, err)
		}
	}
	if st := s.Stats(); st.Refused != 2 || st.Requests != 1 {
		t.Fatalf("%+v", st)
	}
}

// readReply reads one reply frame.
func readReply(t *testing.T, br *bufio.Reader) (uint32, wire.Response) {
	t.Helper()
	hdr := make([]byte, wire.PrefixLen)
	if _, err := io.ReadFull(br, hdr); err != nil {
		t.Fatal(err)
	}
	n, id := wire.ParsePrefix(hdr)
	frame := make([]byte, n)
	if _, err := io.ReadFull(br, frame); err != nil {
		t.Fatal(err)
	}
	r, err := wire.ParseResponse(frame, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return id, r
}

// TestRefusalFrame: a frame with id 0 ends every call on its connection with its status, and
// none is sent again.
func TestRefusalFrame(t *testing.T) {
	addr := hostile(t, func(h *hostileConn) {
		if h.upgrade() {
			if _, _, err := h.read(); err == nil {
				h.reply(0, wire.AppendResponse(nil, &wire.Response{Status: StatusForbidden, Msg: "go away"}))
			}
			h.drain()
		}
	})
	c := newClient(t)
	_, err := c.Get(context.Background(), addr, "c", []byte("k"))
	forbidden(t, err, "go away")
	if st := c.Stats(); st.Retries != 0 || st.Dials != 1 {
		t.Fatalf("%+v", st)
	}
}

func TestLoopbackOnlyByDefault(t *testing.T) {
	upgrade := func(s *Server, remote string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, DefaultBasePath, nil)
		r.RemoteAddr = remote
		r.Header.Set("Connection", "Upgrade")
		r.Header.Set("Upgrade", UpgradeToken)
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		return w
	}
	quiet := WithServerLogger(slog.New(slog.DiscardHandler))
	s, _ := NewServer(newBackend(), quiet)
	defer s.Close()
	if w := upgrade(s, "10.1.2.3:4567"); w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "loopback") {
		t.Fatalf("remote client: %d %s", w.Code, w.Body)
	}
	if s.Stats().Refused != 1 {
		t.Fatal("refusal not counted")
	}
	// Past authentication, the recorder cannot be hijacked: a 400 that says so.
	if w := upgrade(s, "[::1]:4567"); w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "cannot be upgraded") {
		t.Fatalf("loopback client: %d %s", w.Code, w.Body)
	}
	insecure, _ := NewServer(newBackend(), quiet, WithInsecure())
	defer insecure.Close()
	if w := upgrade(insecure, "10.1.2.3:4567"); w.Code != http.StatusBadRequest {
		t.Fatalf("WithInsecure: %d %s", w.Code, w.Body)
	}
	r := httptest.NewRequest(http.MethodGet, DefaultBasePath, nil)
	r.Header.Set("Connection", "Upgrade")
	r.Header.Set("Upgrade", UpgradeToken)
	r.Header.Set(wire.HeaderNode, "no port")
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), wire.HeaderNode) {
		t.Fatalf("bad claim: %d %s", w.Code, w.Body)
	}
}

func TestAuthorizer(t *testing.T) {
	const writer = "127.0.0.1:9"
	allow := func(node string, op Op) bool { return !op.IsWrite() || node == writer }
	b := backendWithK()
	_, addr := startServer(t, b, WithAuthorizer(allow), WithSecret(secretA))
	ctx := context.Background()
	member := newClient(t, WithSecret(secretA), WithSelf(writer))
	if err := member.Set(ctx, addr, "c", []byte("k2"), Value{Data: []byte("v2")}); err != nil {
		t.Fatal(err)
	}
	other := newClient(t, WithSecret(secretA), WithSelf("127.0.0.1:10"))
	getOK(t, other, addr)
	forbidden(t, other.Set(ctx, addr, "c", []byte("k"), Value{Data: []byte("planted")}), "set is not allowed")
	forbidden(t, other.Remove(ctx, addr, "c", keysOf("k")), "remove is not allowed")
	forbidden(t, other.Clear(ctx, addr, "c", 1), "clear is not allowed")
	getOK(t, other, addr)
	if b.ops[OpSet].Load() != 1 || b.ops[OpRemove].Load() != 0 || b.ops[OpClear].Load() != 0 {
		t.Fatal("a refused write reached the backend")
	}
}

// pki is a CA and certificates it signs, for the TLS tests.
type pki struct{ *testpki.CA }

func newPKI(t *testing.T) pki {
	t.Helper()
	ca, err := testpki.New()
	if err != nil {
		t.Fatal(err)
	}
	return pki{ca}
}

// node returns a certificate for the given IPs, for server and client authentication.
func (p pki) node(t *testing.T, ips ...string) tls.Certificate {
	t.Helper()
	cert, err := p.Node(ips...)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// startTLSServer serves b over TLS on a loopback port until the end of the test.
func startTLSServer(t *testing.T, b Backend, opts ...ServerOption) (*Server, string) {
	t.Helper()
	s, err := NewServer(b, append([]ServerOption{WithServerLogger(slog.New(slog.DiscardHandler))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, TLSConfig: s.TLSConfig(),
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ErrorLog:     slog.NewLogLogger(slog.DiscardHandler, slog.LevelError)}
	go srv.ServeTLS(l, "", "")
	t.Cleanup(func() {
		s.Close()
		srv.Close()
	})
	return s, l.Addr().String()
}

func TestMutualTLS(t *testing.T) {
	ca := newPKI(t)
	cert := ca.node(t, "127.0.0.1")
	s, addr := startTLSServer(t, backendWithK(), WithTLS(ca.Config(cert)))
	getOK(t, newClient(t, WithTLS(ca.Config(cert)), WithSelf("127.0.0.1:7")), addr)
	getOK(t, newClient(t, WithTLS(ca.Config(cert))), addr) // no claim: the certificate alone

	get := func(c *Client, addr string) error {
		_, err := c.Get(context.Background(), addr, "c", []byte("k"))
		return err
	}
	forbidden(t, get(newClient(t, WithTLS(ca.Config())), addr), "no client certificate")
	stranger := newPKI(t)
	forbidden(t, get(newClient(t, WithTLS(&tls.Config{RootCAs: ca.Pool,
		Certificates: []tls.Certificate{stranger.node(t, "127.0.0.1")}})), addr), "client certificate")
	// A certificate of the CA, but for another host than the one the client claims to be.
	forbidden(t, get(newClient(t, WithTLS(ca.Config(ca.node(t, "127.0.0.2"))), WithSelf("127.0.0.1:7")), addr),
		"not valid for its claim")
	if st := s.Stats(); st.Refused != 3 || st.Requests != 2 {
		t.Fatalf("%+v", st)
	}
	if err := get(newClient(t), addr); err == nil {
		t.Fatal("a client without TLS was served")
	}

	// A server whose certificate is not for the address the client dialed.
	_, wrong := startTLSServer(t, backendWithK(), WithTLS(ca.Config(ca.node(t, "127.0.0.2"))))
	forbidden(t, get(newClient(t, WithTLS(ca.Config(cert))), wrong), "certificate")
	// A server without TLS.
	_, plain := startServer(t, backendWithK())
	if err := get(newClient(t, WithTLS(ca.Config(cert))), plain); err == nil {
		t.Fatal("a TLS client spoke to a server without TLS")
	}
}

// TestTLSWithSecret: both modes at once, each checked.
func TestTLSWithSecret(t *testing.T) {
	ca := newPKI(t)
	cert := ca.node(t, "127.0.0.1")
	_, addr := startTLSServer(t, backendWithK(), WithTLS(ca.Config(cert)), WithSecret(secretA))
	getOK(t, newClient(t, WithTLS(ca.Config(cert)), WithSecret(secretA)), addr)
	_, err := newClient(t, WithTLS(ca.Config(cert)), WithSecret(secretB)).Get(context.Background(), addr, "c", []byte("k"))
	forbidden(t, err, "not one this node accepts")
}
