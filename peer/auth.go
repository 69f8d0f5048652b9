package peer

import (
	"bytes"
	"crypto/hmac"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/typedcache/groupcache/internal/ratelimit"
	"github.com/typedcache/groupcache/internal/wire"
)

// Peers authenticate each other with mutual TLS (WithTLS), with a shared secret (WithSecret), or
// both; a Server with neither serves loopback peers only, unless WithInsecure says otherwise.
// docs/security.md describes the threat model, docs/protocol.md the handshake.

// What a Server accepts of WithSecret.
const (
	minSecret  = 16
	maxSecrets = 8
)

// WithTLS makes a Server serve, and a Client speak, over mutual TLS. cfg holds this node's
// certificate (Certificates, or GetCertificate and GetClientCertificate, which let it be renewed
// without a restart) and the cluster's CA (RootCAs; ClientCAs, when set, verifies clients
// instead). A Client checks a peer's certificate against the host of the peer's address; a
// Server serves only a client whose certificate the CA signed for client authentication and, when
// the client claims a node address (WithSelf), is valid for that address's host. A node's
// certificate therefore names its host (an IP or DNS SAN) and allows both server and client
// authentication. cfg is cloned; a nil cfg, or one without RootCAs or ClientCAs, is refused.
// A Server serves TLS through its TLSConfig.
func WithTLS(cfg *tls.Config) SharedOption {
	return bothOption(func(c *common) error {
		if cfg == nil || (cfg.RootCAs == nil && cfg.ClientCAs == nil) {
			return optionError("WithTLS", "want a config with the cluster's CA in RootCAs or ClientCAs")
		}
		c.tls = cfg.Clone()
		return nil
	})
}

// WithSecret makes peers prove to each other, on each new connection, that they know a shared
// secret, without sending it: each side sends a fresh nonce and an HMAC-SHA256 over both nonces
// and the client's claimed address, so no proof can be replayed (docs/protocol.md). A Client
// proves current; a Server accepts current and the accepted ones, so that a secret can be
// rotated with no downtime (docs/security.md). A secret must hold at least 16 random bytes; at
// most 8 may be accepted at once. The secret authenticates connections; it neither encrypts nor
// protects their bytes: use WithTLS as well for that.
func WithSecret(current []byte, accepted ...[]byte) SharedOption {
	return bothOption(func(c *common) error {
		all := append([][]byte{current}, accepted...)
		if len(all) > maxSecrets {
			return optionError("WithSecret", "%d secrets; at most %d", len(all), maxSecrets)
		}
		ids := make(map[string]bool, len(all))
		for i, s := range all {
			if len(s) < minSecret {
				return optionError("WithSecret", "secret %d has %d bytes; want at least %d", i, len(s), minSecret)
			}
			ids[wire.KeyID(s)] = true
			all[i] = bytes.Clone(s)
		}
		if len(ids) != len(all) {
			return optionError("WithSecret", "a secret is given twice")
		}
		c.secrets = all
		return nil
	})
}

// WithInsecure makes a Server without WithTLS or WithSecret serve any client that reaches it,
// not only loopback ones: anyone who can reach the port can then read, write and clear its caches.
// The Server logs a warning when it starts so. For a network that nothing else can reach.
func WithInsecure() ServerOption {
	return serverOption(func(c *serverConfig) error {
		c.insecure = true
		return nil
	})
}

// WithSelf sets the address ("host:port") of the node a Client or Server belongs to. A Client
// claims it when it connects: with WithTLS its certificate must be valid for that host, with
// WithSecret the claim is bound into the proofs, and a Server's authorizer (WithAuthorizer)
// decides by it. A Server names itself so in its answer to the upgrade, and a Client that reached
// it under another address tells its Observer (Misnamed). Default: no claim.
func WithSelf(addr string) SharedOption {
	return bothOption(func(c *common) error {
		if err := wire.CheckClaim(addr); err != nil {
			return optionError("WithSelf", "%v", err)
		}
		c.self = addr
		return nil
	})
}

// WithAuthorizer sets what an authenticated client may do: allow is called for each request with
// the client's claimed node address ("" when it claimed none; verified by WithTLS's certificate,
// bound by WithSecret, taken on its word otherwise) and the request's op, and a request it
// refuses is answered StatusForbidden. It must be fast and safe for concurrent use. Default: every
// op is allowed (a groupcache.Node allows writes only from the members of its peer set).
func WithAuthorizer(allow func(node string, op Op) bool) ServerOption {
	return serverOption(func(c *serverConfig) error {
		if allow == nil {
			return optionError("WithAuthorizer", "nil function")
		}
		c.authorize = allow
		return nil
	})
}

// admission is what the handshake established about a client before the upgrade.
type admission struct {
	node   string // the claimed address, authenticated as far as the mode goes
	secret []byte // WithSecret: the secret the client must prove, after the upgrade
	cnonce []byte
	snonce []byte
}

// refusal is why a client is not served.
type refusal struct {
	code int // the HTTP status of the answer
	msg  string
}

// authenticate checks what r shows of the client (its TLS state, its address, its claim, the
// secret it names) and returns the admission, or why it is refused.
func (s *Server) authenticate(r *http.Request) (admission, *refusal) {
	a := admission{node: r.Header.Get(wire.HeaderNode)}
	if a.node != "" {
		if err := wire.CheckClaim(a.node); err != nil {
			return a, &refusal{http.StatusBadRequest, "bad " + wire.HeaderNode + " header: " + err.Error()}
		}
	}
	if s.tls != nil {
		if err := s.verifyClient(r.TLS, a.node); err != nil {
			return a, &refusal{http.StatusForbidden, err.Error()}
		}
	}
	if len(s.secrets) > 0 {
		if msg := a.chooseSecret(s.secrets, r.Header); msg != "" {
			return a, &refusal{http.StatusForbidden, msg}
		}
	}
	if s.tls == nil && len(s.secrets) == 0 && !s.insecure && !isLoopback(r.RemoteAddr) {
		return a, &refusal{http.StatusForbidden, "this node serves loopback peers only: it has neither TLS nor a shared secret"}
	}
	return a, nil
}

// chooseSecret picks the accepted secret the client names and reads its nonce; it returns what
// is wrong, or "".
func (a *admission) chooseSecret(secrets [][]byte, h http.Header) string {
	id := h.Get(wire.HeaderKey)
	if id == "" {
		return "this node requires the shared secret: no " + wire.HeaderKey + " header"
	}
	for _, s := range secrets {
		if subtle.ConstantTimeCompare([]byte(id), []byte(wire.KeyID(s))) == 1 {
			a.secret = s
		}
	}
	if a.secret == nil {
		return "the secret named by " + wire.HeaderKey + " is not one this node accepts"
	}
	var ok bool
	if a.cnonce, ok = wire.ParseHex(h.Get(wire.HeaderNonce), wire.NonceLen); !ok {
		return "bad " + wire.HeaderNonce + " header: want " + strconv.Itoa(2*wire.NonceLen) + " hex digits"
	}
	a.snonce = wire.NewNonce()
	return ""
}

// verifyClient checks the client's certificate against the CA, and against its claim's host.
func (s *Server) verifyClient(cs *tls.ConnectionState, claim string) error {
	if cs == nil {
		return errors.New("this node serves peers over mutual TLS only")
	}
	if len(cs.PeerCertificates) == 0 {
		return errors.New("no client certificate")
	}
	leaf := cs.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: s.clientCAs, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		return fmt.Errorf("client certificate: %w", err)
	}
	if claim == "" {
		return nil
	}
	host, _, _ := net.SplitHostPort(claim)
	if err := leaf.VerifyHostname(host); err != nil {
		return fmt.Errorf("client certificate not valid for its claim %s: %w", claim, err)
	}
	return nil
}

// isLoopback reports whether a "host:port" remote address is a loopback IP.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// upgradeHeaders returns the handshake headers of the 101 answer.
func (a *admission) upgradeHeaders() string {
	if a.secret == nil {
		return ""
	}
	return wire.HeaderNonce + ": " + hex.EncodeToString(a.snonce) + "\r\n" + wire.HeaderProof + ": " +
		hex.EncodeToString(wire.Proof(a.secret, "server", a.cnonce, a.snonce, a.node)) + "\r\n"
}

// checkClientProof reads the client's proof, which follows the upgrade, within the stall timeout.
func (a *admission) checkClientProof(nc net.Conn, r io.Reader, timeout time.Duration) (string, error) {
	if a.secret == nil {
		return "", nil
	}
	_ = nc.SetReadDeadline(time.Now().Add(timeout))
	got := make([]byte, wire.ProofLen)
	if _, err := io.ReadFull(r, got); err != nil {
		return "", err
	}
	if !hmac.Equal(got, wire.Proof(a.secret, "client", a.cnonce, a.snonce, a.node)) {
		return "the client's proof of the shared secret is wrong", nil
	}
	return "", nil
}

// refused counts a refused client and logs it, at most once a second (with how many were not).
func (s *Server) refused(remote, why string) {
	n := s.refusals.Add(1)
	if !s.refusalLog.Pass(time.Now().UnixNano(), time.Second) {
		return
	}
	s.log.Warn("peer: refused a client", slog.String("remote", remote), slog.String("reason", why),
		slog.Int64("refused_since_start", n))
}

// refuse answers an upgrade request that is not served.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, rf *refusal) {
	s.refused(r.RemoteAddr, rf.msg)
	http.Error(w, "peer: "+rf.msg, rf.code)
}

// authState is the part of a Server that authenticates clients.
type authState struct {
	tls        *tls.Config // WithTLS's, for TLSConfig
	clientCAs  *x509.CertPool
	secrets    [][]byte
	insecure   bool
	authorize  func(node string, op Op) bool
	refusals   atomic.Int64
	refusalLog ratelimit.Gate
}

// TLSConfig returns the TLS configuration an http.Server serving s must use, or nil without
// WithTLS: WithTLS's, asking clients for a certificate (which s verifies itself, so that a
// refusal is answered, counted and logged) and offering HTTP/1.1 only, which the upgrade needs.
// Set the server's TLSNextProto to an empty map too, so that it does not offer HTTP/2.
func (s *Server) TLSConfig() *tls.Config {
	if s.tls == nil {
		return nil
	}
	cfg := s.tls.Clone()
	cfg.ClientAuth = tls.RequestClientCert
	cfg.ClientCAs = s.clientCAs
	cfg.NextProtos = []string{"http/1.1"}
	return cfg
}

// clientTLS returns the configuration for a connection to a peer at host, or nil without TLS.
func (c *Client) clientTLS(host string) *tls.Config {
	if c.tls == nil {
		return nil
	}
	cfg := c.tls.Clone()
	cfg.ServerName = host
	cfg.NextProtos = []string{"http/1.1"}
	return cfg
}

// authHeaders returns the handshake headers a Client sends, and its nonce.
func (c *Client) authHeaders() (string, []byte) {
	h := ""
	if c.self != "" {
		h = wire.HeaderNode + ": " + c.self + "\r\n"
	}
	if len(c.secrets) == 0 {
		return h, nil
	}
	nonce := wire.NewNonce()
	return h + wire.HeaderKey + ": " + wire.KeyID(c.secrets[0]) + "\r\n" + wire.HeaderNonce + ": " + hex.EncodeToString(nonce) + "\r\n", nonce
}

// proveSecret checks the server's proof in its answer to the upgrade and returns the client's.
func (c *Client) proveSecret(h http.Header, cnonce []byte) ([]byte, error) {
	if len(c.secrets) == 0 {
		return nil, nil
	}
	snonce, ok := wire.ParseHex(h.Get(wire.HeaderNonce), wire.NonceLen)
	sp, ok2 := wire.ParseHex(h.Get(wire.HeaderProof), wire.ProofLen)
	if !ok || !ok2 {
		return nil, &Error{Status: StatusForbidden, Msg: "the peer did not prove it knows the shared secret"}
	}
	secret := c.secrets[0]
	if !hmac.Equal(sp, wire.Proof(secret, "server", cnonce, snonce, c.self)) {
		return nil, &Error{Status: StatusForbidden, Msg: "the peer's proof of the shared secret is wrong"}
	}
	return wire.Proof(secret, "client", cnonce, snonce, c.self), nil
}
