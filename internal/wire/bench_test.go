package wire

import (
	"bytes"
	"strconv"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

// Benchmarks of the encoding and parsing of frames and values, without a socket:
//
//	go test -run '^$' -bench . -benchmem -count 5 ./internal/wire/

var benchSizes = []struct {
	name string
	n    int
}{{"1KiB", 1 << 10}, {"64KiB", 64 << 10}}

// benchRequest has the key and cache name sizes of a typical Get.
var benchRequest = Request{Op: OpGet, Cache: "profiles", Key: []byte("user:000012345")}

const benchBatch = 100

func BenchmarkAppendRequest(b *testing.B) {
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendRequest(buf[:0], &benchRequest)
	}
}

func BenchmarkParseRequest(b *testing.B) {
	frame := AppendRequest(nil, &benchRequest)
	b.ReportAllocs()
	b.Run("fresh-name", func(b *testing.B) {
		for b.Loop() {
			if _, err := ParseRequest(frame, Limits{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("interned-name", func(b *testing.B) {
		// How a server connection parses: the cache name of the previous request is reused.
		lim := Resolve(Limits{})
		var sc Scratch
		var r Request
		b.ReportAllocs()
		for b.Loop() {
			if err := ParseRequestInto(frame, lim, &sc, &r); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkAppendResponse(b *testing.B) {
	for _, sz := range benchSizes {
		r := Response{Value: Value{Data: random(sz.n), TTL: time.Minute}}
		buf := make([]byte, 0, sz.n+64)
		b.Run(sz.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(sz.n))
			for b.Loop() {
				buf = AppendResponse(buf[:0], &r)
			}
		})
	}
}

func BenchmarkParseResponse(b *testing.B) {
	for _, sz := range benchSizes {
		frame := AppendResponse(nil, &Response{Value: Value{Data: random(sz.n), TTL: time.Minute}})
		b.Run(sz.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(sz.n))
			for b.Loop() {
				if _, err := ParseResponse(frame, Limits{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCompress compares the candidate compressors on a compressible 64 KiB payload (JSON-like
// text). The compressed size is reported as "ratio" (compressed/raw).
func BenchmarkCompress(b *testing.B) {
	raw := compressible(64 << 10)
	zenc, _ := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedFastest))
	defer zenc.Close()
	zencDef, _ := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	defer zencDef.Close()
	dst := make([]byte, 0, s2.MaxEncodedLen(len(raw)))
	cases := []struct {
		name string
		enc  func() []byte
	}{
		{"s2", func() []byte { return s2.Encode(dst[:cap(dst)], raw) }},
		{"s2-better", func() []byte { return s2.EncodeBetter(dst[:cap(dst)], raw) }},
		{"zstd-fastest", func() []byte { return zenc.EncodeAll(raw, dst[:0]) }},
		{"zstd-default", func() []byte { return zencDef.EncodeAll(raw, dst[:0]) }},
	}
	for _, c := range cases {
		b.Run(c.name+"/64KiB", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(raw)))
			var n int
			for b.Loop() {
				n = len(c.enc())
			}
			b.ReportMetric(float64(n)/float64(len(raw)), "ratio")
		})
	}
}

// BenchmarkDecompress compares decoding the same payload, as a receiver does once per Get.
func BenchmarkDecompress(b *testing.B) {
	raw := compressible(64 << 10)
	zenc, _ := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedFastest))
	zdata := zenc.EncodeAll(raw, nil)
	zenc.Close()
	zdec, _ := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	defer zdec.Close()
	s2v := Compress(raw, 1)
	s2fast := s2.Encode(nil, raw)
	cases := []struct {
		name string
		dec  func() ([]byte, error)
	}{
		{"s2-better/Raw", func() ([]byte, error) { return s2v.Raw(0) }},
		{"s2", func() ([]byte, error) { return s2.Decode(nil, s2fast) }},
		{"zstd-fastest", func() ([]byte, error) { return zdec.DecodeAll(zdata, nil) }},
	}
	for _, c := range cases {
		b.Run(c.name+"/64KiB", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				out, err := c.dec()
				if err != nil || !bytes.Equal(out[:16], raw[:16]) {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCompressThreshold measures S2 (as Compress uses it) on small compressible values, to
// pick DefaultCompressThreshold: "saved" is bytes saved per value, to weigh against ns/op of
// compressing (once per value, on the owner) plus decompressing (once per Get, on the caller).
func BenchmarkCompressThreshold(b *testing.B) {
	for _, n := range []int{128, 256, 512, 1024, 2048, 4096} {
		raw := compressible(n)
		v := Compress(raw, 1)
		b.Run("encode/"+itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				v = Compress(raw, 1)
			}
			b.ReportMetric(float64(len(raw)-len(v.Data)), "saved")
		})
		b.Run("decode/"+itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Raw(0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func itoa(n int) string {
	if n%1024 == 0 {
		return strconv.Itoa(n/1024) + "KiB"
	}
	return strconv.Itoa(n) + "B"
}

func benchResults() []Result {
	rs := make([]Result, benchBatch)
	for i := range rs {
		rs[i].Value = Value{Data: random(1 << 10), TTL: time.Minute}
	}
	return rs
}

// BenchmarkAppendBatch encodes the batch body of 100 values of 1 KiB: as AppendBatch, and as a
// Server does (appendBatchReply, with its checks and frame budget, into a reused buffer).
func BenchmarkAppendBatch(b *testing.B) {
	rs := benchResults()
	buf := make([]byte, 0, 128<<10)
	b.Run("AppendBatch", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(benchBatch << 10)
		for b.Loop() {
			buf = AppendBatch(buf[:0], rs)
		}
	})
	b.Run("server", func(b *testing.B) {
		lim := Resolve(Limits{})
		b.ReportAllocs()
		b.SetBytes(benchBatch << 10)
		for b.Loop() {
			buf, _ = appendBatchReply(buf[:0], rs, lim)
		}
	})
}

// BenchmarkParseBatch parses the batch body of 100 values of 1 KiB (the values are not copied).
func BenchmarkParseBatch(b *testing.B) {
	body := AppendBatch(nil, benchResults())
	b.ReportAllocs()
	b.SetBytes(benchBatch << 10)
	for b.Loop() {
		if _, err := ParseBatch(body, benchBatch, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}
