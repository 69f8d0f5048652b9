package wire

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
)

// Headers of the upgrade handshake (docs/protocol.md, "Handshake").
const (
	HeaderNode  = "Groupcache-Node"  // the client's claim: its node's address
	HeaderKey   = "Groupcache-Key"   // the id of the secret the client proves it knows
	HeaderNonce = "Groupcache-Nonce" // a side's fresh nonce, in hex
	HeaderProof = "Groupcache-Proof" // the server's proof, in hex

	NonceLen = 32
	ProofLen = sha256.Size
	MaxClaim = 261 // a host name of 255 bytes, a colon and a port
	keyIDLen = 8
)

// CheckClaim refuses a claimed node address that is not "host:port".
func CheckClaim(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	switch {
	case err != nil:
		return err
	case host == "" || port == "" || len(addr) > MaxClaim:
		return fmt.Errorf("%q is not host:port", addr)
	}
	return nil
}

// KeyID names a secret in the handshake without revealing it.
func KeyID(secret []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("groupcache/2 key id"))
	return hex.EncodeToString(m.Sum(nil)[:keyIDLen])
}

// Proof is what a side (role "server" or "client") sends to show it knows secret.
func Proof(secret []byte, role string, cnonce, snonce []byte, node string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("groupcache/2 " + role + "\x00"))
	m.Write(cnonce)
	m.Write(snonce)
	m.Write([]byte(node))
	return m.Sum(nil)
}

// ParseHex decodes a header value of exactly n bytes in hex.
func ParseHex(v string, n int) ([]byte, bool) {
	if len(v) != 2*n {
		return nil, false
	}
	b, err := hex.DecodeString(v)
	return b, err == nil
}

// NewNonce returns a fresh nonce of NonceLen random bytes.
func NewNonce() []byte {
	b := make([]byte, NonceLen)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return b
}
