package codec

import (
	"bytes"
	"sync"

	"github.com/fxamacker/cbor/v2"
)

// Decode limits of the CBOR codec. Encoding has no such limits, so a value
// nested deeper than cborMaxNestedLevels encodes but does not decode.
const (
	cborMaxNestedLevels  = 32
	cborMaxArrayElements = 1 << 20
	cborMaxMapPairs      = 1 << 20
)

// cborModes builds the immutable encoding and decoding modes once.
var cborModes = sync.OnceValues(func() (cbor.UserBufferEncMode, cbor.DecMode) {
	eo := cbor.CoreDetEncOptions() // sorted map keys, shortest forms, no indefinite lengths
	eo.Time = cbor.TimeRFC3339Nano // keep sub-second precision and the UTC offset
	em, err := eo.UserBufferEncMode()
	if err != nil {
		panic("codec: invalid CBOR encoding options: " + err.Error())
	}
	dm, err := cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		MaxNestedLevels:   cborMaxNestedLevels,
		MaxArrayElements:  cborMaxArrayElements,
		MaxMapPairs:       cborMaxMapPairs,
		IndefLength:       cbor.IndefLengthForbidden,
		FieldNameMatching: cbor.FieldNameMatchingCaseSensitive,
		UTF8:              cbor.UTF8DecodeInvalid, // any Go string round-trips
	}.DecMode()
	if err != nil {
		panic("codec: invalid CBOR decoding options: " + err.Error())
	}
	return em, dm
})

// CBOR returns the default value codec, based on github.com/fxamacker/cbor/v2.
//
// Encoding is deterministic (RFC 8949 Core Deterministic Encoding: map keys and
// struct fields sorted, shortest integer and float forms, no indefinite
// lengths), so equal values encode to equal bytes on every node; this makes
// CBOR suitable as a key codec for struct keys as well. Floats use the
// shortest form that keeps their value, and every NaN encodes the same way.
// time.Time is encoded as an RFC 3339 string with nanoseconds and the UTC
// offset (not the location name nor the monotonic clock reading); a time
// outside the years 0 to 9999 cannot be encoded.
//
// Decoding is strict: it rejects trailing bytes, duplicate map keys,
// indefinite-length items, nesting deeper than 32 levels (arrays, maps and
// tags combined), arrays of more than 1<<20 elements and maps of more than
// 1<<20 pairs. Struct field names match case-sensitively. Text strings are
// not required to be valid UTF-8, so every Go string round-trips.
func CBOR[T any]() Codec[T] {
	em, dm := cborModes()
	return cborCodec[T]{em: em, dm: dm}
}

type cborCodec[T any] struct {
	em cbor.UserBufferEncMode
	dm cbor.DecMode
}

func (c cborCodec[T]) Append(dst []byte, v T) ([]byte, error) {
	if cap(dst) == 0 {
		// Nothing to reuse: Marshal returns an exactly sized slice.
		b, err := c.em.Marshal(v)
		if err != nil {
			return dst, encodeError("cbor", err)
		}
		return b, nil
	}
	buf := bytes.NewBuffer(dst)
	if err := c.em.MarshalToBuffer(v, buf); err != nil {
		return dst, encodeError("cbor", err)
	}
	return buf.Bytes(), nil
}

func (c cborCodec[T]) Decode(data []byte) (T, error) {
	var v T
	if err := c.dm.Unmarshal(data, &v); err != nil {
		var zero T
		return zero, decodeError("cbor", err)
	}
	return v, nil
}
