package codec

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

// fuzzCheck says how fuzzDecode judges a codec.
type fuzzCheck[T any] struct {
	equal     func(a, b T) bool
	canonical bool // an accepted input must be the encoding of its value
	// unencodable, if set, reports whether an error from re-encoding a
	// decoded value is a documented limitation rather than a bug.
	unencodable func(err error) bool
}

// fuzzDecode checks that decoding arbitrary bytes never panics and fails only
// with a decode *Error, and that a value it accepts re-encodes to
// bytes that decode to an equal value and re-encode to the same bytes.
func fuzzDecode[T any](f *testing.F, c Codec[T], check fuzzCheck[T], seeds ...[]byte) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := c.Decode(data)
		if err != nil {
			if e, ok := errors.AsType[*Error](err); !ok || e.Op != opDecode {
				t.Fatalf("Decode error %v is not a decode *Error", err)
			}
			return
		}
		enc, err := c.Append(nil, v)
		if err != nil && check.unencodable != nil && check.unencodable(err) {
			return
		}
		if err != nil {
			t.Fatalf("re-encoding decoded value %#v: %v", v, err)
		}
		if check.canonical && !bytes.Equal(enc, data) {
			t.Fatalf("Decode(%x) re-encodes to %x", data, enc)
		}
		v2, err := c.Decode(enc)
		if err != nil {
			t.Fatalf("decoding re-encoded %x: %v", enc, err)
		}
		if !check.equal(v, v2) {
			t.Fatalf("round trip changed the value:\n got %#v\nwant %#v", v2, v)
		}
		enc2, err := c.Append(nil, v2)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not stable: %x then %x (%v)", enc, enc2, err)
		}
	})
}

func deepEqual[T any](a, b T) bool { return reflect.DeepEqual(a, b) }

func comparableEqual[T comparable](a, b T) bool { return a == b }

// recordEqual is reflect.DeepEqual with NaN scores treated as equal.
func recordEqual(a, b record) bool {
	clearNaN(&a)
	clearNaN(&b)
	return reflect.DeepEqual(a, b)
}

func clearNaN(r *record) {
	if math.IsNaN(r.Score) {
		r.Score = 0
	}
	if len(r.Kids) > 0 {
		r.Kids = append([]record(nil), r.Kids...)
		for i := range r.Kids {
			clearNaN(&r.Kids[i])
		}
	}
}

func mustEncode[T any](c Codec[T], v T) []byte {
	b, err := c.Append(nil, v)
	if err != nil {
		panic(err)
	}
	return b
}

func FuzzCBOR(f *testing.F) {
	c := CBOR[record]()
	fuzzDecode(f, c, fuzzCheck[record]{equal: recordEqual},
		mustEncode(c, sampleRecord()),
		mustEncode(c, record{}),
		[]byte{0xa1, 0x62, 'i', 'd', 0x01},
		[]byte{0xa2, 0x61, 'a', 0x01, 0x61, 'a', 0x02},
		nested(40),
		[]byte{0xff},
	)
}

// FuzzCBORAny decodes into an interface, which accepts any well-formed item.
// Values of type any may hold NaN, so only the bytes are compared. A time tag
// decodes to a time.Time, which cannot be encoded if its year is outside
// 0..9999 (a documented limitation of the RFC 3339 time encoding).
func FuzzCBORAny(f *testing.F) {
	c := CBOR[any]()
	check := fuzzCheck[any]{
		equal: func(a, b any) bool { return bytes.Equal(mustEncode(c, a), mustEncode(c, b)) },
		unencodable: func(err error) bool {
			_, ok := errors.AsType[*cbor.UnsupportedValueError](err)
			return ok && strings.Contains(err.Error(), "time.Time year outside of range")
		},
	}
	fuzzDecode(f, c, check,
		mustEncode(c, any(map[string]any{"a": []any{1, "x", nil, true, 1.5}})),
		[]byte{0xc1, 0x1a, 0x65, 0x00, 0x00, 0x00}, // tag 1 (epoch time)
		[]byte{0xc2, 0x42, 0x01, 0x00},             // bignum 256
		[]byte{0xf9, 0x7e, 0x00},                   // NaN
		nested(cborMaxNestedLevels),
	)
}

func FuzzJSON(f *testing.F) {
	c := JSON[record]()
	fuzzDecode(f, c, fuzzCheck[record]{equal: deepEqual[record]},
		mustEncode(c, sampleRecord()),
		[]byte(`{}`),
		[]byte(`{"id":1,"name":"\u00e9\ud800","tags":null,"kids":[{}]} `),
		[]byte(`{"a":1} x`),
		[]byte(`[`),
	)
}

func FuzzBytes(f *testing.F) {
	fuzzDecode(f, Bytes(), fuzzCheck[[]byte]{equal: deepEqual[[]byte], canonical: true}, nil, []byte("abc"), []byte{0, 0xff})
}

func FuzzString(f *testing.F) {
	fuzzDecode(f, String(), fuzzCheck[string]{equal: comparableEqual[string], canonical: true}, nil, []byte("abc"), []byte{0xff, 0xfe})
}

func FuzzBinary(f *testing.F) {
	fuzzDecode(f, Binary[point](), fuzzCheck[point]{equal: comparableEqual[point], canonical: true},
		mustEncode(Binary[point](), point{1, -1}), []byte{1, 2, 3}, make([]byte, 9))
}

// fuzzKey fuzzes the built-in key codec of K. Key encodings are canonical.
func fuzzKey[K comparable](f *testing.F) {
	c, ok := Key[K]()
	if !ok {
		f.Fatalf("no key codec for %T", *new(K))
	}
	fuzzDecode(f, c, fuzzCheck[K]{equal: comparableEqual[K], canonical: true}, intKeySeeds...)
}

var intKeySeeds = [][]byte{
	nil,
	{1, 2, 3},
	be(0), be(-1), be(1),
	be(math.MaxInt8 + 1), be(math.MinInt8 - 1),
	be(math.MaxInt16 + 1), be(math.MaxInt32 + 1), be(math.MinInt32 - 1),
	be(math.MaxInt64), be(math.MinInt64),
	beu(math.MaxUint8 + 1), beu(math.MaxUint32 + 1),
	make([]byte, 9),
}

func FuzzKeyString(f *testing.F)  { fuzzKey[string](f) }
func FuzzKeyInt(f *testing.F)     { fuzzKey[int](f) }
func FuzzKeyInt8(f *testing.F)    { fuzzKey[int8](f) }
func FuzzKeyInt16(f *testing.F)   { fuzzKey[int16](f) }
func FuzzKeyInt32(f *testing.F)   { fuzzKey[int32](f) }
func FuzzKeyInt64(f *testing.F)   { fuzzKey[int64](f) }
func FuzzKeyUint(f *testing.F)    { fuzzKey[uint](f) }
func FuzzKeyUint8(f *testing.F)   { fuzzKey[uint8](f) }
func FuzzKeyUint16(f *testing.F)  { fuzzKey[uint16](f) }
func FuzzKeyUint32(f *testing.F)  { fuzzKey[uint32](f) }
func FuzzKeyUint64(f *testing.F)  { fuzzKey[uint64](f) }
func FuzzKeyUintptr(f *testing.F) { fuzzKey[uintptr](f) }
