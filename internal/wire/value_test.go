package wire

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/klauspost/compress/s2"
)

func compressible(n int) []byte {
	words := []string{"alpha ", "beta ", "gamma ", "delta ", "{\"id\":", "\"name\":", "42,", "true}"}
	r := rand.New(rand.NewPCG(1, 2))
	var b []byte
	for len(b) < n {
		b = append(b, words[r.IntN(len(words))]...)
	}
	return b[:n]
}

func random(n int) []byte {
	r := rand.New(rand.NewPCG(3, 4))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestCompress(t *testing.T) {
	raw := compressible(8 << 10)
	v := Compress(raw, 0)
	if !v.Compressed || len(v.Data) >= len(raw) {
		t.Fatalf("8 KiB of text not compressed: %d bytes", len(v.Data))
	}
	got, err := v.Raw(0)
	if err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("Raw: %v", err)
	}

	if v := Compress(raw[:DefaultCompressThreshold-1], 0); v.Compressed {
		t.Fatal("compressed below the default threshold")
	}
	if v := Compress(raw[:DefaultCompressThreshold], 0); !v.Compressed {
		t.Fatal("not compressed at the default threshold")
	}
	if v := Compress(raw, -1); v.Compressed || &v.Data[0] != &raw[0] {
		t.Fatal("negative threshold compressed")
	}
	if v := Compress(raw[:100], 50); !v.Compressed {
		t.Fatal("explicit threshold ignored")
	}
	rnd := random(8 << 10)
	if v := Compress(rnd, 1); v.Compressed || &v.Data[0] != &rnd[0] {
		t.Fatal("incompressible data compressed or copied")
	}
	if v := Compress(nil, 1); v.Compressed || v.Data != nil {
		t.Fatal("nil")
	}
}

func TestRawLimits(t *testing.T) {
	raw := make([]byte, 1<<20)
	if v := Compress(raw, 1); v.Compressed {
		t.Fatalf("zeros compressed to %d bytes: over MaxInflation", len(v.Data))
	}
	if _, err := bombOf(1 << 20).Raw(0); StatusOf(err) != StatusTooLarge {
		t.Fatalf("bomb under the value limit: %v", err)
	}
	v := squeezed(1 << 20)
	if !v.Compressed {
		t.Fatal("not compressed")
	}
	_, err := v.Raw(1<<20 - 1)
	if StatusOf(err) != StatusTooLarge {
		t.Fatalf("bomb: %v", err)
	}
	if got, err := v.Raw(1 << 20); err != nil || len(got) != 1<<20 {
		t.Fatalf("at the limit: %v", err)
	}
	if _, err := (Value{Data: raw}).Raw(10); StatusOf(err) != StatusTooLarge {
		t.Fatalf("uncompressed over the limit: %v", err)
	}
	// A header that claims 4 GiB: refused before any allocation.
	huge := []byte{0xff, 0xff, 0xff, 0xff, 0x0f, 0x00}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := (Value{Data: huge, Compressed: true}).Raw(0); StatusOf(err) != StatusTooLarge {
		t.Fatalf("huge header: %v", err)
	}
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 64<<10 {
		t.Fatalf("%d bytes allocated to refuse a bomb", n)
	}
}

// TestRawInto checks that a compressed value is inflated into the memory given when it fits, into
// new memory when it does not, and that a value not compressed is returned as it is.
func TestRawInto(t *testing.T) {
	want := compressible(64 << 10)
	v := Compress(want, 0)
	if !v.Compressed {
		t.Fatal("not compressed")
	}
	dst := bytes.Repeat([]byte{1}, 100<<10)[:10]
	raw, err := v.RawInto(dst, 0)
	if err != nil || !bytes.Equal(raw, want) || &raw[0] != &dst[0] {
		t.Fatalf("into a buffer that fits: %v", err)
	}
	small := make([]byte, 0, 1<<10)
	raw, err = v.RawInto(small, 0)
	if err != nil || !bytes.Equal(raw, want) || &raw[0] == &small[:1][0] {
		t.Fatalf("into a buffer too small: %v", err)
	}
	if _, err := v.RawInto(dst, 1<<10); StatusOf(err) != StatusTooLarge {
		t.Fatalf("over the limit: %v", err)
	}
	plain := Value{Data: []byte("plain")}
	if raw, err := plain.RawInto(dst, 0); err != nil || &raw[0] != &plain.Data[0] {
		t.Fatalf("not compressed: %v", err)
	}
}

func TestRawMalformed(t *testing.T) {
	good := Compress(compressible(4096), 1)
	for name, data := range map[string][]byte{
		"empty":      {},
		"bad varint": {0xff},
		"truncated":  good.Data[:len(good.Data)/2],
		"garbage":    append([]byte{0x10}, 0xff, 0xff, 0xff, 0xff),
	} {
		_, err := Value{Data: data, Compressed: true}.Raw(0)
		if !errors.Is(err, errProtocol) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// The wire format is the S2 block format.
	if dec, err := s2.Decode(nil, good.Data); err != nil || !bytes.Equal(dec, compressible(4096)) {
		t.Fatalf("not an S2 block: %v", err)
	}
}
