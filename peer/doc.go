// Package peer moves cache values between the nodes of a cluster: the frame format, the server
// that answers peers, and the pooled client that asks them. It knows no user types: keys and
// values arrive already encoded as []byte.
package peer
