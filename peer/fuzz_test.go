package peer

import (
	"bytes"
	"errors"
	"testing"

	"github.com/klauspost/compress/s2"
)

// The seed corpus of each target is in testdata/fuzz/<target>/; run a target with, for example,
//
//	go test -run '^$' -fuzz '^FuzzParseRequest$' -fuzztime 10s ./peer/

var fuzzLimits = Limits{MaxKeyBytes: 64, MaxValueBytes: 1 << 16, MaxCacheName: 16}

func FuzzParseRequest(f *testing.F) {
	f.Add(AppendRequest(nil, &Request{Op: OpGet, Cache: "users", Key: []byte("alice")}))
	f.Add(AppendRequest(nil, &Request{Op: OpGet, Cache: "c"}))
	f.Fuzz(func(t *testing.T, frame []byte) {
		for _, lim := range []Limits{{}, fuzzLimits} {
			r, err := ParseRequest(frame, lim)
			if err != nil {
				var pe *Error
				if !errors.As(err, &pe) || !(errors.Is(err, ErrBadRequest) || errors.Is(err, ErrVersion)) {
					t.Fatalf("unexpected error %T %v", err, err)
				}
				continue
			}
			l := lim.withDefaults()
			if r.Op != OpGet || r.Cache == "" || len(r.Cache) > l.MaxCacheName || len(r.Key) > l.MaxKeyBytes {
				t.Fatalf("parsed an invalid request %+v", r)
			}
			if again := AppendRequest(nil, &r); !bytes.Equal(again, frame) {
				t.Fatalf("re-encoding differs:\n%x\n%x", frame, again)
			}
		}
	})
}

func FuzzParseResponse(f *testing.F) {
	f.Add(AppendResponse(nil, &Response{Value: Value{Data: []byte("hello"), Expires: 1767225600000000000}}))
	f.Add(AppendResponse(nil, &Response{Value: Compress(bytes.Repeat([]byte("abcd"), 64), 1)}))
	f.Add(AppendResponse(nil, &Response{Status: StatusNotFound, Msg: "no such user"}))
	f.Fuzz(func(t *testing.T, frame []byte) {
		for _, lim := range []Limits{{}, fuzzLimits} {
			r, err := ParseResponse(frame, lim)
			checkHeadAgrees(t, frame, lim.withDefaults(), r, err)
			if err != nil {
				var pe *Error
				if !errors.As(err, &pe) ||
					!(errors.Is(err, ErrProtocol) || errors.Is(err, ErrVersion) || errors.Is(err, ErrTooLarge)) {
					t.Fatalf("unexpected error %T %v", err, err)
				}
				continue
			}
			if again := AppendResponse(nil, &r); !bytes.Equal(again, frame) {
				t.Fatalf("re-encoding differs:\n%x\n%x", frame, again)
			}
			l := lim.withDefaults()
			if r.Value.Compressed {
				// The stated length is within the limit (ParseResponse checked it). Raw must not
				// panic and must agree with the header. (Inflation is capped at 64 KiB here so
				// that a fuzzer's 64 MiB claims do not exhaust its workers.)
				n, _ := s2.DecodedLen(r.Value.Data)
				if n > l.MaxValueBytes {
					t.Fatalf("parsed a compressed value inflating to %d bytes", n)
				}
				raw, err := r.Value.Raw(1 << 16)
				if err == nil {
					if n != len(raw) {
						t.Fatalf("decoded %d bytes, header says %d", len(raw), n)
					}
				} else if !errors.Is(err, ErrProtocol) && !(n > 1<<16 && errors.Is(err, ErrTooLarge)) {
					t.Fatalf("Raw: %v", err)
				}
			} else if len(r.Value.Data) > l.MaxValueBytes {
				t.Fatalf("value of %d bytes over the limit", len(r.Value.Data))
			}
		}
	})
}

func FuzzValueRaw(f *testing.F) {
	f.Add([]byte("plain bytes"), false)
	f.Add(Compress(bytes.Repeat([]byte("abcd"), 64), 1).Data, true)
	f.Add(Compress(make([]byte, 1<<20), 1).Data, true) // inflates past the limit below
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f, 0x00}, true)
	f.Fuzz(func(t *testing.T, data []byte, compressed bool) {
		const limit = 1 << 16
		v := Value{Data: data, Compressed: compressed}
		raw, err := v.Raw(limit)
		switch {
		case err != nil:
			if !errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrProtocol) {
				t.Fatalf("unexpected error %v", err)
			}
			if !compressed && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("uncompressed value refused: %v", err)
			}
		case !compressed:
			if !bytes.Equal(raw, data) {
				t.Fatal("uncompressed value changed")
			}
		default:
			if len(raw) > limit {
				t.Fatalf("inflated to %d bytes", len(raw))
			}
			// Decoded bytes compress and decode back to themselves.
			back, err := Compress(raw, 1).Raw(limit)
			if err != nil || !bytes.Equal(back, raw) {
				t.Fatalf("round trip of decoded bytes: %v", err)
			}
		}
		// Any bytes survive Compress and Raw.
		if len(data) <= limit {
			c := Compress(data, 1)
			back, err := c.Raw(limit)
			if err != nil || !bytes.Equal(back, data) {
				t.Fatalf("round trip: %v", err)
			}
			if c.Compressed && len(c.Data) >= len(data) {
				t.Fatal("compressed form not smaller")
			}
		}
	})
}

// checkHeadAgrees checks that parsing the head of frame from a prefix, as the Client does from
// its read buffer, agrees with parsing the whole frame.
func checkHeadAgrees(t *testing.T, frame []byte, lim Limits, r Response, err error) {
	t.Helper()
	head := frame[:min(len(frame), maxResponseHead)]
	hr, off, herr := parseResponseHead(head, len(frame), lim)
	switch {
	case err == nil:
		if herr != nil {
			t.Fatalf("head: %v, frame: ok", herr)
		}
		if hr.Status != r.Status || hr.Msg != r.Msg || hr.Value.Expires != r.Value.Expires ||
			hr.Value.Compressed != r.Value.Compressed || off != len(frame)-len(r.Value.Data) {
			t.Fatalf("head %+v off %d, frame %+v", hr, off, r)
		}
	case herr == nil:
		// Only the value's S2 header is checked after the head.
		if !hr.Value.Compressed || !(errors.Is(err, ErrProtocol) || errors.Is(err, ErrTooLarge)) {
			t.Fatalf("head ok, frame: %v", err)
		}
	default:
		if !errors.Is(herr, errorKind(err)) {
			t.Fatalf("head: %v, frame: %v", herr, err)
		}
	}
}

func errorKind(err error) error {
	for _, k := range []error{ErrVersion, ErrTooLarge, ErrProtocol} {
		if errors.Is(err, k) {
			return k
		}
	}
	return err
}
