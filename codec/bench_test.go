package codec

import (
	"strconv"
	"strings"
	"testing"
)

// document is the ~1 KiB value of the benchmarks.
type document struct {
	ID    int64             `cbor:"id" json:"id"`
	Title string            `cbor:"title" json:"title"`
	Body  string            `cbor:"body" json:"body"`
	Tags  []string          `cbor:"tags" json:"tags"`
	Attrs map[string]string `cbor:"attrs" json:"attrs"`
	Items []small           `cbor:"items" json:"items"`
}

func benchSmall() small {
	return small{ID: 123456789, Name: "Ada Lovelace", Email: "ada@example.com", Active: true, Score: 97.5}
}

func benchDocument() document {
	d := document{
		ID:    42,
		Title: "Notes on the Analytical Engine",
		Body:  strings.Repeat("The engine weaves algebraic patterns. ", 13),
		Tags:  []string{"history", "computing", "math", "engines"},
		Attrs: map[string]string{"lang": "en", "year": "1843", "kind": "notes"},
	}
	for i := range 6 {
		s := benchSmall()
		s.ID += int64(i)
		s.Name += " " + strconv.Itoa(i)
		d.Items = append(d.Items, s)
	}
	return d
}

func benchValue[T any](b *testing.B, c Codec[T], v T) {
	enc, err := c.Append(nil, v)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("Append", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(enc)))
		buf := make([]byte, 0, 2*len(enc))
		for b.Loop() {
			if buf, err = c.Append(buf[:0], v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("AppendNil", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(enc)))
		for b.Loop() {
			if _, err = c.Append(nil, v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Decode", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(enc)))
		for b.Loop() {
			if _, err = c.Decode(enc); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkCBOR(b *testing.B) {
	b.Run("small", func(b *testing.B) { benchValue(b, CBOR[small](), benchSmall()) })
	b.Run("1KiB", func(b *testing.B) { benchValue(b, CBOR[document](), benchDocument()) })
}

func BenchmarkJSON(b *testing.B) {
	b.Run("small", func(b *testing.B) { benchValue(b, JSON[small](), benchSmall()) })
	b.Run("1KiB", func(b *testing.B) { benchValue(b, JSON[document](), benchDocument()) })
}

func BenchmarkKey(b *testing.B) {
	sc, ic := mustKey[string](b), mustKey[int64](b)
	buf := make([]byte, 0, 64)
	b.Run("string/Append", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf, _ = sc.Append(buf[:0], "user:1234567890")
		}
	})
	b.Run("int64/Append", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf, _ = ic.Append(buf[:0], -1234567890)
		}
	})
	enc, _ := ic.Append(nil, -1234567890)
	b.Run("int64/Decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ic.Decode(enc); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestBenchDocumentSize keeps the "1KiB" benchmarks honest.
func TestBenchDocumentSize(t *testing.T) {
	t.Parallel()
	b, err := CBOR[document]().Append(nil, benchDocument())
	if err != nil {
		t.Fatal(err)
	}
	if n := len(b); n < 960 || n > 1100 {
		t.Fatalf("benchmark document encodes to %d bytes, want about 1 KiB", n)
	}
}
