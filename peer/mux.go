package peer

import "encoding/binary"

// UpgradeMultiplexed is the token of the multiplexed framing (framing 2): every frame is preceded
// by its length and a request id, and a server answers a connection's requests in any order (see
// docs/protocol.md, "Multiplexed framing"). A client that speaks it asks for
// "groupcache/2, groupcache/1"; a server answers with the first of those it speaks.
const UpgradeMultiplexed = "groupcache/2"

// MaxConnRequests bounds the requests of one multiplexed connection that a Server serves at once;
// it reads no further frame of the connection until one of them is answered.
const MaxConnRequests = 256

// muxPrefixLen is the length of a multiplexed frame's prefix: length, then id.
const muxPrefixLen = 8

// appendMuxPrefix appends the prefix of a multiplexed frame of n bytes with the given id.
func appendMuxPrefix(dst []byte, n int, id uint32) []byte {
	return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(dst, uint32(n)), id)
}

// parseMuxPrefix returns the frame length and id of a multiplexed frame's prefix (8 bytes).
func parseMuxPrefix(b []byte) (n int, id uint32) {
	return int(binary.BigEndian.Uint32(b)), binary.BigEndian.Uint32(b[4:])
}
