package codec

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// roundTrip encodes v (into nil, into a buffer with room and after a prefix
// without room), decodes it, checks that the result equals v and that the
// result does not share memory with the encoded bytes. It returns the encoding.
func roundTrip[T any](t *testing.T, c Codec[T], v T) []byte {
	t.Helper()
	enc, err := c.Append(nil, v)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	for _, buf := range [][]byte{
		[]byte("pre")[:3:3],                     // no room: must grow
		append(make([]byte, 0, 1024), "pre"...), // room to spare
	} {
		out, err := c.Append(buf, v)
		if err != nil {
			t.Fatalf("Append after prefix: %v", err)
		}
		if string(out[:3]) != "pre" || !bytes.Equal(out[3:], enc) {
			t.Fatalf("Append after prefix = %x, want 707265%x", out, enc)
		}
	}
	data := bytes.Clone(enc)
	got, err := c.Decode(data)
	if err != nil {
		t.Fatalf("Decode(%x): %v", enc, err)
	}
	if !reflect.DeepEqual(got, v) {
		t.Fatalf("Decode(Append(v)) = %#v, want %#v", got, v)
	}
	for i := range data { // the caller reuses its buffer
		data[i] ^= 0xff
	}
	if !reflect.DeepEqual(got, v) {
		t.Fatalf("decoded value changed when the input buffer was overwritten: %#v", got)
	}
	return enc
}

func sampleRecord() record {
	return record{
		ID:    math.MaxUint64,
		Name:  "Zoë",
		Tags:  []string{"a", "", "c"},
		Attrs: map[string]int64{"min": math.MinInt64, "max": math.MaxInt64, "zero": 0},
		Inner: inner{A: -7, B: "in"},
		Ptr:   &inner{A: 1},
		Data:  []byte{0, 1, 2, 0xff},
		Score: -1.25,
		Kids:  []record{{Name: "kid", Tags: []string{}}, {ID: 2, Kids: []record{{Name: "grandkid"}}}},
	}
}

// valueCases runs round trips shared by the CBOR and JSON codecs.
func valueCases(t *testing.T, cbor bool) {
	rt := func(name string, f func(t *testing.T)) { t.Run(name, f) }

	rt("struct", func(t *testing.T) { rtValue(t, cbor, sampleRecord()) })
	rt("zero struct", func(t *testing.T) { rtValue(t, cbor, record{}) })
	rt("pointer", func(t *testing.T) { r := sampleRecord(); rtValue(t, cbor, &r) })
	rt("nil pointer", func(t *testing.T) { rtValue(t, cbor, (*record)(nil)) })
	rt("slice of structs", func(t *testing.T) { rtValue(t, cbor, []record{sampleRecord(), {}}) })
	rt("empty slice", func(t *testing.T) { rtValue(t, cbor, []int{}) })
	rt("nil slice", func(t *testing.T) { rtValue(t, cbor, []int(nil)) })
	rt("map", func(t *testing.T) { rtValue(t, cbor, map[string][]int{"a": {1, 2}, "b": nil, "c": {}}) })
	rt("empty map", func(t *testing.T) { rtValue(t, cbor, map[string]int{}) })
	rt("nil map", func(t *testing.T) { rtValue(t, cbor, map[string]int(nil)) })
	rt("int map keys", func(t *testing.T) { rtValue(t, cbor, map[int64]string{-1: "neg", 0: "zero", 1 << 40: "big"}) })
	rt("nested", func(t *testing.T) {
		rtValue(t, cbor, map[string]map[string][]inner{"x": {"y": {{A: 1, B: "b"}}, "z": nil}})
	})
	rt("array", func(t *testing.T) { rtValue(t, cbor, [3]int16{math.MinInt16, 0, math.MaxInt16}) })
	rt("byte slice", func(t *testing.T) { rtValue(t, cbor, []byte("hello\x00")) })
	rt("empty byte slice", func(t *testing.T) { rtValue(t, cbor, []byte{}) })
	rt("int64 min", func(t *testing.T) { rtValue(t, cbor, int64(math.MinInt64)) })
	rt("uint64 max", func(t *testing.T) { rtValue(t, cbor, uint64(math.MaxUint64)) })
	rt("float", func(t *testing.T) {
		rtValue(t, cbor, []float64{0, 1.5, -2.75, math.MaxFloat64, math.SmallestNonzeroFloat64, 1e300})
	})
	rt("bool", func(t *testing.T) { rtValue(t, cbor, true) })
	rt("string", func(t *testing.T) { rtValue(t, cbor, "héllo, 世界") })
	rt("empty string", func(t *testing.T) { rtValue(t, cbor, "") })
}

func rtValue[T any](t *testing.T, useCBOR bool, v T) {
	t.Helper()
	if useCBOR {
		roundTrip(t, CBOR[T](), v)
	} else {
		roundTrip(t, JSON[T](), v)
	}
}

func TestCBORRoundTrip(t *testing.T) {
	t.Parallel()
	valueCases(t, true)
	t.Run("invalid UTF-8 string", func(t *testing.T) { roundTrip(t, CBOR[string](), "\xff\xfe ok") })
	t.Run("any", func(t *testing.T) {
		roundTrip(t, CBOR[any](), any(map[any]any{"a": uint64(1), "b": []any{"x", int64(-1), true, nil}}))
	})
	t.Run("time", func(t *testing.T) {
		want := time.Date(2024, 2, 29, 23, 59, 58, 123456789, time.FixedZone("", -5*3600))
		c := CBOR[time.Time]()
		enc, err := c.Append(nil, want)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.Decode(enc)
		if err != nil {
			t.Fatal(err)
		}
		if !got.Equal(want) || got.Format(time.RFC3339Nano) != want.Format(time.RFC3339Nano) {
			t.Fatalf("got %v, want %v", got, want)
		}
	})
}

func TestJSONRoundTrip(t *testing.T) {
	t.Parallel()
	valueCases(t, false)
	t.Run("trailing white space", func(t *testing.T) {
		got, err := JSON[inner]().Decode([]byte(" {\"a\":1}\n\t "))
		if err != nil || got != (inner{A: 1}) {
			t.Fatalf("got %v, %v", got, err)
		}
	})
}

func TestBytes(t *testing.T) {
	t.Parallel()
	c := Bytes()
	for _, tc := range []struct {
		name string
		v    []byte
	}{
		{"empty", []byte{}},
		{"text", []byte("abc")},
		{"binary", []byte{0, 0xff, 0x80, 0}},
		{"1KiB", bytes.Repeat([]byte{0xa5, 0x5a}, 512)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if enc := roundTrip(t, c, tc.v); !bytes.Equal(enc, tc.v) {
				t.Fatalf("encoding %x, want the raw bytes %x", enc, tc.v)
			}
		})
	}
	t.Run("nil decodes to empty non-nil", func(t *testing.T) {
		enc, err := c.Append(nil, nil)
		if err != nil || len(enc) != 0 {
			t.Fatalf("Append(nil, nil) = %x, %v", enc, err)
		}
		for _, data := range [][]byte{nil, {}} {
			got, err := c.Decode(data)
			if err != nil || got == nil || len(got) != 0 {
				t.Fatalf("Decode(%#v) = %#v, %v; want empty non-nil", data, got, err)
			}
		}
	})
}

func TestString(t *testing.T) {
	t.Parallel()
	c := String()
	for _, tc := range []struct{ name, v string }{
		{"empty", ""},
		{"ascii", "hello"},
		{"utf8", "héllo, 世界"},
		{"invalid utf8", "\xff\x00\xfe"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if enc := roundTrip(t, c, tc.v); string(enc) != tc.v {
				t.Fatalf("encoding %q, want the raw bytes %q", enc, tc.v)
			}
		})
	}
}

func TestBinary(t *testing.T) {
	t.Parallel()
	t.Run("appender", func(t *testing.T) {
		for _, p := range []point{{}, {1, -2}, {math.MinInt32, math.MaxInt32}} {
			enc := roundTrip(t, Binary[point](), p)
			if want, _ := p.MarshalBinary(); !bytes.Equal(enc, want) {
				t.Fatalf("encoding %x, want %x", enc, want)
			}
		}
	})
	t.Run("marshaler only", func(t *testing.T) {
		for _, v := range []blob{{[]byte("x")}, {bytes.Repeat([]byte("ab"), 100)}} {
			roundTrip(t, Binary[blob](), v)
		}
	})
	t.Run("decode error", func(t *testing.T) {
		_, err := Binary[point]().Decode([]byte{1, 2, 3})
		checkErr(t, err, "binary", opDecode)
	})
	t.Run("encode error", func(t *testing.T) {
		dst := []byte("keep")
		out, err := Binary[broken]().Append(dst, broken{})
		checkErr(t, err, "binary", opEncode)
		if !errors.Is(err, errBroken) || string(out) != "keep" {
			t.Fatalf("got %q, %v", out, err)
		}
		_, err = Binary[broken]().Decode(nil)
		checkErr(t, err, "binary", opDecode)
	})
}

func TestFunc(t *testing.T) {
	t.Parallel()
	c := Func(
		func(dst []byte, v int) ([]byte, error) {
			if v < 0 {
				return nil, errors.New("negative")
			}
			return strconv.AppendInt(dst, int64(v), 10), nil
		},
		func(data []byte) (int, error) { return strconv.Atoi(string(data)) },
	)
	for _, v := range []int{0, 7, math.MaxInt} {
		roundTrip(t, c, v)
	}
	out, err := c.Append([]byte("keep"), -1)
	checkErr(t, err, "func", opEncode)
	if string(out) != "keep" {
		t.Fatalf("Append on error returned %q, want dst", out)
	}
	_, err = c.Decode([]byte("x"))
	checkErr(t, err, "func", opDecode)
	if _, ok := errors.AsType[*strconv.NumError](err); !ok {
		t.Fatalf("cause lost: %v", err)
	}

	t.Run("already wrapped", func(t *testing.T) {
		inner := CBOR[int]()
		c := Func(inner.Append, inner.Decode)
		_, err := c.Decode([]byte{0xff})
		e := checkErr(t, err, "cbor", opDecode)
		if strings.Count(err.Error(), "codec:") != 1 {
			t.Fatalf("wrapped twice: %v (%+v)", err, e)
		}
	})
	t.Run("nil functions panic", func(t *testing.T) {
		defer func() {
			if recover() == nil {
				t.Fatal("no panic")
			}
		}()
		Func[int](nil, nil)
	})
}

// checkErr asserts that err is an *Error for codec and op.
func checkErr(t *testing.T, err error, codec, op string) *Error {
	t.Helper()
	if err == nil {
		t.Fatalf("want a %s %s error, got nil", codec, op)
	}
	e, ok := errors.AsType[*Error](err)
	if !ok {
		t.Fatalf("%v (%T) is not an *Error", err, err)
	}
	if e.Codec != codec || e.Op != op {
		t.Fatalf("got Codec=%q Op=%q, want %q %q (%v)", e.Codec, e.Op, codec, op, err)
	}
	if prefix := "codec: " + codec + " " + op + ": "; !strings.HasPrefix(err.Error(), prefix) {
		t.Fatalf("message %q does not start with %q", err, prefix)
	}
	return e
}

func TestError(t *testing.T) {
	t.Parallel()
	cause := errors.New("boom")
	for _, tc := range []struct {
		name       string
		err        *Error
		msg        string
		causeFound bool
	}{
		{"decode", &Error{Codec: "cbor", Op: "decode", Err: cause}, "codec: cbor decode: boom", true},
		{"encode", &Error{Codec: "json", Op: "encode", Err: cause}, "codec: json encode: boom", true},
		{"nil cause", &Error{Codec: "key", Op: "decode"}, "codec: key decode failed", false},
		{"other op", &Error{Codec: "x", Op: "other", Err: cause}, "codec: x other: boom", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error = tc.err
			if got := err.Error(); got != tc.msg {
				t.Errorf("Error() = %q, want %q", got, tc.msg)
			}
			if got := errors.Is(err, cause); got != tc.causeFound {
				t.Errorf("Is(cause) = %v", got)
			}
			wrapped := errors.Join(errors.New("context"), err)
			if e, ok := errors.AsType[*Error](wrapped); !ok || e != tc.err {
				t.Error("errors.As through a wrapper failed")
			}
		})
	}
}

func TestCBORDeterministic(t *testing.T) {
	t.Parallel()
	c := CBOR[map[string]record]()
	m1 := make(map[string]record)
	for i := range 1000 {
		m1["key"+strconv.Itoa(i)] = record{ID: uint64(i), Attrs: map[string]int64{strconv.Itoa(i): 1, "x": 2, "y": 3}}
	}
	m2 := make(map[string]record) // same content, another insertion order
	for i := 999; i >= 0; i-- {
		m2["key"+strconv.Itoa(i)] = m1["key"+strconv.Itoa(i)]
	}
	want, err := c.Append(nil, m1)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		m := m1
		if i%2 == 1 {
			m = m2
		}
		got, err := c.Append(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("encoding %d differs", i)
		}
	}
}

type pinned struct {
	Name  string   `cbor:"name"`
	ID    uint32   `cbor:"id"`
	Tags  []string `cbor:"tags"`
	OK    bool     `cbor:"ok"`
	Score float64  `cbor:"s"`
}

// TestCBORPinned pins the exact bytes of one encoding: other nodes, and
// entries hashed or stored elsewhere, depend on them not changing.
func TestCBORPinned(t *testing.T) {
	t.Parallel()
	v := pinned{Name: "ann", ID: 500, Tags: []string{"x"}, OK: true, Score: 1.5}
	const want = "a5" + // map of 5 pairs, keys in bytewise order of their encodings
		"6173" + "f93e00" + // "s": 1.5 as a half-precision float
		"626964" + "1901f4" + // "id": 500
		"626f6b" + "f5" + // "ok": true
		"646e616d65" + "63616e6e" + // "name": "ann"
		"6474616773" + "816178" // "tags": ["x"]
	got := roundTrip(t, CBOR[pinned](), v)
	if hex.EncodeToString(got) != want {
		t.Fatalf("encoding\n got %x\nwant %s", got, want)
	}
}

func nested(levels int) []byte {
	return append(bytes.Repeat([]byte{0x81}, levels), 0x00) // [[[...[0]...]]]
}

func header(major byte, n uint32) []byte {
	return []byte{major<<5 | 26, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
}

func TestCBORDecodeErrors(t *testing.T) {
	t.Parallel()
	valid, err := CBOR[small]().Append(nil, small{ID: 1, Name: "n"})
	if err != nil {
		t.Fatal(err)
	}
	tooManyElems := append(header(4, cborMaxArrayElements+1), make([]byte, cborMaxArrayElements+1)...)
	tooManyPairs := append(header(5, cborMaxMapPairs+1), make([]byte, 2*(cborMaxMapPairs+1))...)

	for _, tc := range []struct {
		name   string
		decode func() error
		cause  any // pointer to a cbor error type expected in the chain, or nil
	}{
		{"empty", decodeErr[small](nil), nil},
		{"garbage", decodeErr[small]([]byte{0xff, 0x00}), new(*cbor.SyntaxError)},
		{"reserved additional info", decodeErr[any]([]byte{0x1c}), new(*cbor.SyntaxError)},
		{"truncated", decodeErr[small](valid[:len(valid)/2]), nil},
		{"trailing byte", decodeErr[small](append(bytes.Clone(valid), 0)), new(*cbor.ExtraneousDataError)},
		{"two values", decodeErr[int]([]byte{0x01, 0x02}), new(*cbor.ExtraneousDataError)},
		{"type mismatch", decodeErr[int]([]byte{0x61, 'a'}), new(*cbor.UnmarshalTypeError)},
		{"int overflow", decodeErr[int8]([]byte{0x19, 0x01, 0x00}), new(*cbor.UnmarshalTypeError)},
		{"too deep", decodeErr[any](nested(cborMaxNestedLevels + 1)), new(*cbor.MaxNestedLevelError)},
		{"far too deep", decodeErr[any](nested(100000)), new(*cbor.MaxNestedLevelError)},
		{"too deep into slices", decodeErr[[][][][][][][][][][][][][][][][][][][][][][][][][][][][][][][][][][]int](nested(cborMaxNestedLevels + 1)), new(*cbor.MaxNestedLevelError)},
		{"too many array elements", decodeErr[[]int8](tooManyElems), new(*cbor.MaxArrayElementsError)},
		{"too many map pairs", decodeErr[map[int]int](tooManyPairs), new(*cbor.MaxMapPairsError)},
		{"duplicate map key", decodeErr[map[string]int]([]byte{0xa2, 0x61, 'a', 0x01, 0x61, 'a', 0x02}), new(*cbor.DupMapKeyError)},
		{"duplicate struct field", decodeErr[inner]([]byte{0xa2, 0x61, 'a', 0x01, 0x61, 'a', 0x02}), new(*cbor.DupMapKeyError)},
		{"indefinite array", decodeErr[[]int]([]byte{0x9f, 0x01, 0x02, 0xff}), new(*cbor.IndefiniteLengthError)},
		{"indefinite byte string", decodeErr[[]byte]([]byte{0x5f, 0x41, 0x01, 0xff}), new(*cbor.IndefiniteLengthError)},
		{"length beyond data", decodeErr[[]byte](header(2, 1<<30)), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.decode()
			checkErr(t, err, "cbor", opDecode)
			if tc.cause != nil && !errors.As(err, tc.cause) {
				t.Fatalf("%v: cause is not %T", err, reflect.TypeOf(tc.cause).Elem())
			}
		})
	}

	t.Run("nesting at the limit", func(t *testing.T) {
		if _, err := CBOR[any]().Decode(nested(cborMaxNestedLevels)); err != nil {
			t.Fatal(err)
		}
	})
}

func decodeErr[T any](data []byte) func() error {
	return func() error {
		v, err := CBOR[T]().Decode(data)
		if err != nil && !reflect.ValueOf(&v).Elem().IsZero() {
			return errors.New("non-zero value returned with an error")
		}
		return err
	}
}

func TestCBOREncodeErrors(t *testing.T) {
	t.Parallel()
	dst := []byte("keep")
	out, err := CBOR[any]().Append(dst, make(chan int))
	checkErr(t, err, "cbor", opEncode)
	if string(out) != "keep" {
		t.Fatalf("Append on error returned %q, want dst", out)
	}
	_, err = CBOR[func()]().Append(nil, func() {})
	checkErr(t, err, "cbor", opEncode)
	_, err = CBOR[time.Time]().Append(nil, time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC))
	checkErr(t, err, "cbor", opEncode)
}

func TestJSONErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		data  string
		cause any
	}{
		{"empty", "", new(*json.SyntaxError)},
		{"garbage", "{", new(*json.SyntaxError)},
		{"trailing data", `{"a":1} x`, new(*json.SyntaxError)},
		{"two values", `{"a":1}{"a":2}`, new(*json.SyntaxError)},
		{"type mismatch", `{"a":"one"}`, new(*json.UnmarshalTypeError)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := JSON[inner]().Decode([]byte(tc.data))
			checkErr(t, err, "json", opDecode)
			if !errors.As(err, tc.cause) {
				t.Fatalf("%v: cause is not %T", err, reflect.TypeOf(tc.cause).Elem())
			}
			if v != (inner{}) {
				t.Fatalf("non-zero value %v with error", v)
			}
		})
	}
	t.Run("encode NaN", func(t *testing.T) {
		out, err := JSON[float64]().Append([]byte("keep"), math.NaN())
		checkErr(t, err, "json", opEncode)
		if _, ok := errors.AsType[*json.UnsupportedValueError](err); !ok || string(out) != "keep" {
			t.Fatalf("got %q, %v", out, err)
		}
	})
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	cc, jc := CBOR[record](), JSON[record]()
	kc, ok := Key[nInt64]()
	if !ok {
		t.Fatal("no key codec for nInt64")
	}
	want := sampleRecord()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			var buf []byte
			for i := range 100 {
				for _, c := range []Codec[record]{cc, jc} {
					var err error
					buf, err = c.Append(buf[:0], want)
					if err != nil {
						t.Error(err)
						return
					}
					got, err := c.Decode(buf)
					if err != nil || !reflect.DeepEqual(got, want) {
						t.Errorf("round trip: %v", err)
						return
					}
				}
				k := nInt64(g*1000 + i)
				buf, _ = kc.Append(buf[:0], k)
				if got, err := kc.Decode(buf); err != nil || got != k {
					t.Errorf("key round trip: %v, %v", got, err)
					return
				}
			}
		})
	}
	wg.Wait()
}
