package peer

import (
	"fmt"

	"github.com/klauspost/compress/s2"
)

// DefaultCompressThreshold is the length from which Compress tries to compress a value when it is
// passed a threshold of 0. A shorter value fits, with its frame, in one TCP segment of an Ethernet
// path (MSS 1448), so compressing it saves no packet and only costs the caller a decode; see
// "Measurements" in docs/protocol.md for the figures.
const DefaultCompressThreshold = 1400

// Value is a value as it travels: encoded by the cache's codec and maybe compressed.
//
// A compressed value is one S2 block (github.com/klauspost/compress/s2, block format, not the
// stream format): its header states the decoded length, so a receiver checks that length against
// its limit before it inflates anything.
type Value struct {
	// Data is the raw encoded value, or its compressed form.
	Data []byte
	// Compressed reports that Data is an S2 block.
	Compressed bool
	// Expires is the absolute deadline of the value in unix nanoseconds; 0 means never.
	Expires int64
}

// Compress returns raw as a Value, compressed with S2 when len(raw) >= threshold and the
// compressed form is smaller. A threshold of 0 means DefaultCompressThreshold; a negative one
// never compresses. The uncompressed Value aliases raw; a compressed one owns its Data.
//
// The result may be kept and served many times: an owner compresses a hot value once, not once
// per request.
func Compress(raw []byte, threshold int) Value {
	if threshold == 0 {
		threshold = DefaultCompressThreshold
	}
	if threshold < 0 || len(raw) < threshold {
		return Value{Data: raw}
	}
	max := s2.MaxEncodedLen(len(raw))
	if max < 0 {
		return Value{Data: raw}
	}
	enc := s2.EncodeBetter(make([]byte, max), raw)
	if len(enc) >= len(raw) {
		return Value{Data: raw}
	}
	if cap(enc)-len(enc) > len(enc)/8 {
		// The value may be kept for long: do not keep the worst-case buffer alive.
		enc = append([]byte(nil), enc...)
	}
	return Value{Data: enc, Compressed: true}
}

// Raw returns the decoded bytes of v: v.Data itself when v is not compressed, a new slice when it
// is. limit bounds the decoded length (0 or negative means DefaultMaxValueBytes); a value over it
// is refused with an error with StatusTooLarge, and for a compressed value this is decided from
// its header before anything is inflated. Malformed compressed data gives an error matching
// ErrProtocol.
func (v Value) Raw(limit int) ([]byte, error) {
	return v.RawInto(nil, limit)
}

// RawInto is Raw, inflating a compressed value into dst's memory when it fits in cap(dst) (the
// result then shares dst's memory), into new memory otherwise; for a value that is not
// compressed it returns v.Data, as Raw does.
func (v Value) RawInto(dst []byte, limit int) ([]byte, error) {
	if limit <= 0 {
		limit = DefaultMaxValueBytes
	}
	if !v.Compressed {
		if len(v.Data) > limit {
			return nil, &Error{Status: StatusTooLarge,
				Msg: fmt.Sprintf("value of %d bytes over the limit of %d", len(v.Data), limit)}
		}
		return v.Data, nil
	}
	n, err := s2.DecodedLen(v.Data)
	if err != nil {
		return nil, &Error{Err: ErrProtocol, Msg: "compressed value: " + err.Error()}
	}
	if n > limit {
		return nil, &Error{Status: StatusTooLarge,
			Msg: fmt.Sprintf("compressed value inflates to %d bytes, over the limit of %d", n, limit)}
	}
	if cap(dst) >= n {
		dst = dst[:n]
	} else {
		dst = make([]byte, n)
	}
	out, err := s2.Decode(dst, v.Data)
	if err != nil {
		return nil, &Error{Err: ErrProtocol, Msg: "compressed value: " + err.Error()}
	}
	return out, nil
}
