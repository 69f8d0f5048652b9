package codec

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"math"
	"strings"
	"testing"
)

func mustKey[K comparable](t testing.TB) Codec[K] {
	t.Helper()
	c, ok := Key[K]()
	if !ok {
		t.Fatalf("Key[%T]: no built-in key codec", *new(K))
	}
	return c
}

// checkKeys round-trips each key and checks its encoding against want.
func checkKeys[K comparable](t *testing.T, want func(K) []byte, keys ...K) {
	t.Helper()
	c := mustKey[K](t)
	for _, k := range keys {
		enc := roundTrip(t, c, k)
		if w := want(k); !bytes.Equal(enc, w) {
			t.Fatalf("key %v encodes to %x, want %x", k, enc, w)
		}
	}
}

func signed[K ~int | ~int8 | ~int16 | ~int32 | ~int64](k K) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(int64(k)))
}

func unsigned[K ~uint | ~uint8 | ~uint16 | ~uint32 | ~uint64 | ~uintptr](k K) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(k))
}

func raw[K ~string](k K) []byte { return []byte(k) }

func TestKeyRoundTrip(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		run  func(t *testing.T)
	}{
		{"string", func(t *testing.T) {
			checkKeys(t, raw[string], "", "a", "héllo", "\xff\x00", strings.Repeat("k", 1000))
		}},
		{"named string", func(t *testing.T) { checkKeys(t, raw[nString], "", "user:42", "\xff") }},
		{"int", func(t *testing.T) { checkKeys(t, signed[int], math.MinInt, -1, 0, 1, math.MaxInt) }},
		{"int8", func(t *testing.T) { checkKeys(t, signed[int8], math.MinInt8, -1, 0, 1, math.MaxInt8) }},
		{"int16", func(t *testing.T) { checkKeys(t, signed[int16], math.MinInt16, -1, 0, math.MaxInt16) }},
		{"int32", func(t *testing.T) { checkKeys(t, signed[int32], math.MinInt32, -1, 0, math.MaxInt32) }},
		{"int64", func(t *testing.T) { checkKeys(t, signed[int64], math.MinInt64, -1, 0, math.MaxInt64) }},
		{"uint", func(t *testing.T) { checkKeys(t, unsigned[uint], 0, 1, math.MaxUint) }},
		{"uint8", func(t *testing.T) { checkKeys(t, unsigned[uint8], 0, 1, math.MaxUint8) }},
		{"uint16", func(t *testing.T) { checkKeys(t, unsigned[uint16], 0, 1, math.MaxUint16) }},
		{"uint32", func(t *testing.T) { checkKeys(t, unsigned[uint32], 0, 1, math.MaxUint32) }},
		{"uint64", func(t *testing.T) { checkKeys(t, unsigned[uint64], 0, 1, math.MaxUint64) }},
		{"uintptr", func(t *testing.T) { checkKeys(t, unsigned[uintptr], 0, 1, ^uintptr(0)) }},
		{"named int", func(t *testing.T) { checkKeys(t, signed[nInt], math.MinInt, -1, 0, math.MaxInt) }},
		{"named int8", func(t *testing.T) { checkKeys(t, signed[nInt8], math.MinInt8, -1, 0, math.MaxInt8) }},
		{"named int16", func(t *testing.T) { checkKeys(t, signed[nInt16], math.MinInt16, 0, math.MaxInt16) }},
		{"named int32", func(t *testing.T) { checkKeys(t, signed[nInt32], math.MinInt32, 0, math.MaxInt32) }},
		{"named int64", func(t *testing.T) { checkKeys(t, signed[nInt64], math.MinInt64, 0, math.MaxInt64) }},
		{"named uint", func(t *testing.T) { checkKeys(t, unsigned[nUint], 0, math.MaxUint) }},
		{"named uint8", func(t *testing.T) { checkKeys(t, unsigned[nUint8], 0, math.MaxUint8) }},
		{"named uint16", func(t *testing.T) { checkKeys(t, unsigned[nUint16], 0, math.MaxUint16) }},
		{"named uint32", func(t *testing.T) { checkKeys(t, unsigned[nUint32], 0, math.MaxUint32) }},
		{"named uint64", func(t *testing.T) { checkKeys(t, unsigned[nUint64], 0, math.MaxUint64) }},
		{"named uintptr", func(t *testing.T) { checkKeys(t, unsigned[nUintptr], 0, ^nUintptr(0)) }},
	} {
		t.Run(tc.name, tc.run)
	}
}

// TestKeyPinned pins key encodings that other nodes depend on.
func TestKeyPinned(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		got  func() ([]byte, error)
		want string
	}{
		{"string", func() ([]byte, error) { return mustKey[nString](t).Append(nil, "ab") }, "6162"},
		{"int -1", func() ([]byte, error) { return mustKey[int](t).Append(nil, -1) }, "ffffffffffffffff"},
		{"int8 -2", func() ([]byte, error) { return mustKey[int8](t).Append(nil, -2) }, "fffffffffffffffe"},
		{"int32 min", func() ([]byte, error) { return mustKey[int32](t).Append(nil, math.MinInt32) }, "ffffffff80000000"},
		{"int64 min", func() ([]byte, error) { return mustKey[nInt64](t).Append(nil, math.MinInt64) }, "8000000000000000"},
		{"int 258", func() ([]byte, error) { return mustKey[nInt](t).Append(nil, 258) }, "0000000000000102"},
		{"uint8 max", func() ([]byte, error) { return mustKey[uint8](t).Append(nil, 255) }, "00000000000000ff"},
		{"uint16", func() ([]byte, error) { return mustKey[nUint16](t).Append(nil, 0x1234) }, "0000000000001234"},
		{"uint64 max", func() ([]byte, error) { return mustKey[uint64](t).Append(nil, math.MaxUint64) }, "ffffffffffffffff"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.got()
			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(b); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func be(x int64) []byte   { return binary.BigEndian.AppendUint64(nil, uint64(x)) }
func beu(x uint64) []byte { return binary.BigEndian.AppendUint64(nil, x) }

func keyDecodeErr[K comparable](data []byte) func(t *testing.T) error {
	return func(t *testing.T) error {
		k, err := mustKey[K](t).Decode(data)
		if err != nil && k != *new(K) {
			t.Fatalf("non-zero key %v returned with an error", k)
		}
		return err
	}
}

func TestKeyDecodeErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		decode func(t *testing.T) error
		msg    string
	}{
		{"empty", keyDecodeErr[int64](nil), "needs 8 bytes, got 0"},
		{"7 bytes", keyDecodeErr[int64](make([]byte, 7)), "needs 8 bytes, got 7"},
		{"9 bytes", keyDecodeErr[uint64](make([]byte, 9)), "needs 8 bytes, got 9"},
		{"named 4 bytes", keyDecodeErr[nInt32](make([]byte, 4)), "codec.nInt32 key needs 8 bytes, got 4"},
		{"int8 too big", keyDecodeErr[int8](be(math.MaxInt8 + 1)), "128 is out of range for a int8 key"},
		{"int8 too small", keyDecodeErr[int8](be(math.MinInt8 - 1)), "out of range"},
		{"named int8", keyDecodeErr[nInt8](be(1000)), "out of range for a codec.nInt8 key"},
		{"int16", keyDecodeErr[int16](be(math.MaxInt16 + 1)), "out of range"},
		{"int32 too big", keyDecodeErr[int32](be(math.MaxInt32 + 1)), "out of range"},
		{"int32 too small", keyDecodeErr[nInt32](be(math.MinInt32 - 1)), "out of range"},
		{"uint8", keyDecodeErr[uint8](beu(math.MaxUint8 + 1)), "out of range"},
		{"uint8 of -1", keyDecodeErr[nUint8](be(-1)), "out of range"},
		{"uint16", keyDecodeErr[uint16](beu(math.MaxUint16 + 1)), "out of range"},
		{"uint32", keyDecodeErr[nUint32](beu(math.MaxUint32 + 1)), "out of range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.decode(t)
			checkErr(t, err, "key", opDecode)
			if !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("message %q does not contain %q", err, tc.msg)
			}
		})
	}
	t.Run("int keys fit on 64-bit machines", func(t *testing.T) {
		if math.MaxInt != math.MaxInt64 {
			t.Skip("32-bit machine")
		}
		for _, data := range [][]byte{be(math.MinInt64), be(math.MaxInt64)} {
			if _, err := mustKey[int](t).Decode(data); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func unsupported[K comparable](t *testing.T) {
	t.Helper()
	if c, ok := Key[K](); c != nil || ok {
		t.Fatalf("Key[%T]() = %v, %v; want nil, false", *new(K), c, ok)
	}
}

func TestKeyUnsupported(t *testing.T) {
	t.Parallel()
	type pair struct{ A, B int }
	for _, tc := range []struct {
		name string
		run  func(t *testing.T)
	}{
		{"float64", unsupported[float64]},
		{"float32", unsupported[float32]},
		{"complex128", unsupported[complex128]},
		{"bool", unsupported[bool]},
		{"struct", unsupported[pair]},
		{"pointer", unsupported[*int]},
		{"array", unsupported[[2]int]},
		{"interface", unsupported[any]},
		{"channel", unsupported[chan int]},
	} {
		t.Run(tc.name, tc.run)
	}
}

func TestKeyAppendAllocs(t *testing.T) {
	sc, ic := mustKey[nString](t), mustKey[int64](t)
	buf := make([]byte, 0, 64)
	for _, tc := range []struct {
		name string
		f    func()
	}{
		{"string", func() { buf, _ = sc.Append(buf[:0], "user:1234567890") }},
		{"int64", func() { buf, _ = ic.Append(buf[:0], -42) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(100, tc.f); n != 0 {
				t.Fatalf("%v allocations per Append, want 0", n)
			}
		})
	}
}
