package peer

import (
	"bufio"
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/typedcache/groupcache/internal/wire"
)

// FuzzAuthenticate feeds a Server with the shared secret hostile handshake headers and a proof:
// it never panics, and serves a client only when the proof is the one its secret gives.
func FuzzAuthenticate(f *testing.F) {
	s, err := NewServer(newBackend(), WithSecret(secretA, secretB), WithServerLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		f.Fatal(err)
	}
	cnonce := strings.Repeat("00", wire.NonceLen)
	f.Add("127.0.0.1:1", wire.KeyID(secretA), cnonce, make([]byte, wire.ProofLen))
	f.Add("", wire.KeyID(secretB), cnonce, []byte("short"))
	f.Add("host", "zz", "0", []byte{})
	f.Fuzz(func(t *testing.T, node, key, nonce string, p []byte) {
		r := httptest.NewRequest(http.MethodGet, DefaultBasePath, nil)
		r.RemoteAddr = "127.0.0.1:5"
		for name, v := range map[string]string{wire.HeaderNode: node, wire.HeaderKey: key, wire.HeaderNonce: nonce} {
			if v != "" {
				r.Header[name] = []string{v}
			}
		}
		a, rf := s.authenticate(r)
		if rf != nil {
			if rf.code != http.StatusForbidden && rf.code != http.StatusBadRequest || rf.msg == "" {
				t.Fatalf("refusal %+v", rf)
			}
			return
		}
		if a.secret == nil || len(a.cnonce) != wire.NonceLen || len(a.snonce) != wire.NonceLen || a.node != node {
			t.Fatalf("admitted without a secret: %+v", a)
		}
		c1, c2 := net.Pipe()
		defer c1.Close()
		go func() { c2.Write(p); c2.Close() }()
		why, err := a.checkClientProof(c1, c1, time.Second)
		want := wire.Proof(a.secret, "client", a.cnonce, a.snonce, node)
		if err == nil && why == "" && !bytes.Equal(p[:wire.ProofLen], want) {
			t.Fatal("a wrong proof was accepted")
		}
	})
}

// FuzzClientHandshake feeds a Client with the secret any answer to its upgrade request: it
// never panics, and accepts none, since no answer can hold the proof of its fresh nonce.
func FuzzClientHandshake(f *testing.F) {
	f.Add([]byte("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: groupcache/2\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: groupcache/2\r\nGroupcache-Nonce: " +
		strings.Repeat("ab", wire.NonceLen) + "\r\nGroupcache-Proof: " + strings.Repeat("cd", wire.ProofLen) + "\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 403 Forbidden\r\nContent-Length: 3\r\n\r\nno\n"))
	c, err := NewClient(WithSecret(secretA), WithSelf("127.0.0.1:1"))
	if err != nil {
		f.Fatal(err)
	}
	p := c.pool("127.0.0.1:2")
	f.Fuzz(func(t *testing.T, answer []byte) {
		c1, c2 := net.Pipe()
		defer c1.Close()
		go func() {
			br := bufio.NewReader(c2)
			if _, err := http.ReadRequest(br); err == nil {
				c2.Write(answer)
			}
			c2.Close()
		}()
		if err := p.handshake(context.Background(), c1, time.Now().Add(time.Second)); err == nil {
			t.Fatal("an answer without the proof was accepted")
		}
	})
}
