package wire

import (
	"bytes"

	"github.com/klauspost/compress/s2"
)

// bombOf returns n zero bytes as one S2 block, which inflates far over MaxInflation times its
// size (Compress sends such a value raw; a hostile peer would not).
func bombOf(n int) Value { return Value{Data: s2.Encode(nil, make([]byte, n)), Compressed: true} }

// squeezed returns n bytes of two bits of entropy each, compressed: about 4 times smaller, well
// under MaxInflation.
func squeezed(n int) Value {
	raw := make([]byte, n)
	x := uint32(1)
	for i := range raw {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		raw[i] = byte(x & 3)
	}
	return Compress(raw, 1)
}

func keysOf(keys ...string) [][]byte {
	out := make([][]byte, len(keys))
	for i, k := range keys {
		out[i] = []byte(k)
	}
	return out
}

func sameValue(a, b Value) bool {
	return bytes.Equal(a.Data, b.Data) && a.Compressed == b.Compressed && a.TTL == b.TTL
}
