// Package wire is the peer protocol's bytes: request and response frames and their stream prefix,
// values and their compression, batch bodies, the limits a side checks, the statuses and errors
// (which speak as package peer, whose vocabulary they are), and the proofs of the handshake. Pure
// functions over byte slices, no sockets; docs/protocol.md describes the format byte by byte.
package wire
