package codec

import "testing"

func TestDecodeOwnedSharesMemory(t *testing.T) {
	data := []byte("hello")
	b, err := Bytes().(OwnedDecoder[[]byte]).DecodeOwned(data)
	if err != nil || string(b) != "hello" || &b[0] != &data[0] {
		t.Fatalf("Bytes DecodeOwned = %q, %v, shared %v", b, err, &b[0] == &data[0])
	}
	if b, _ := Bytes().(OwnedDecoder[[]byte]).DecodeOwned(nil); b == nil || len(b) != 0 {
		t.Fatalf("Bytes DecodeOwned(nil) = %#v", b)
	}
	s, err := String().(OwnedDecoder[string]).DecodeOwned(data)
	if err != nil || s != "hello" {
		t.Fatalf("String DecodeOwned = %q, %v", s, err)
	}
	if s, _ := String().(OwnedDecoder[string]).DecodeOwned(nil); s != "" {
		t.Fatalf("String DecodeOwned(nil) = %q", s)
	}
	allocs := testing.AllocsPerRun(100, func() {
		String().(OwnedDecoder[string]).DecodeOwned(data)
		Bytes().(OwnedDecoder[[]byte]).DecodeOwned(data)
	})
	if allocs != 0 {
		t.Fatalf("DecodeOwned allocates %v times", allocs)
	}
}
