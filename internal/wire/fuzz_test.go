package wire

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"
)

// The seed corpus of each target is in testdata/fuzz/<target>/; run a target with, for example,
//
//	go test -run '^$' -fuzz '^FuzzParseRequest$' -fuzztime 10s ./peer/

var fuzzLimits = Limits{MaxKeyBytes: 64, MaxValueBytes: 1 << 16, MaxCacheName: 16, MaxBatchKeys: 4}

func FuzzParseRequest(f *testing.F) {
	f.Add(AppendRequest(nil, &Request{Op: OpGet, Cache: "users", Key: []byte("alice")}))
	f.Add(AppendRequest(nil, &Request{Op: OpGet, Cache: "c"}))
	f.Add(AppendRequest(nil, &Request{Op: OpSet, Cache: "c", Key: []byte("k"), Value: Value{Data: []byte("v"), TTL: 1}}))
	f.Add(AppendRequest(nil, &Request{Op: OpSet, Cache: "c", Key: []byte("k"), Value: Value{Data: []byte("v"), TTL: -time.Second}}))
	f.Add(AppendRequest(nil, &Request{Op: OpSet, Cache: "c", Key: []byte("k"), Value: Compress(bytes.Repeat([]byte("ab"), 64), 1)}))
	f.Add(AppendRequest(nil, &Request{Op: OpGetMany, Cache: "c", Keys: [][]byte{[]byte("a"), nil, []byte("b")}}))
	f.Add(AppendRequest(nil, &Request{Op: OpRemove, Cache: "c", Keys: [][]byte{[]byte("a")}}))
	f.Add(AppendRequest(nil, &Request{Op: OpClear, Cache: "c", Generation: 300}))
	f.Add(AppendRequest(nil, &Request{Op: OpPeek, Cache: "c", Key: []byte("k")}))
	f.Add(AppendRequest(nil, &Request{Op: OpPeekMany, Cache: "c", Keys: [][]byte{[]byte("a"), nil, []byte("b")}}))
	f.Add(AppendRequest(nil, &Request{Op: OpOffer, Cache: "c", Key: []byte("k"), Value: Value{Data: []byte("v"), TTL: time.Second}}))
	f.Add(AppendRequest(nil, &Request{Op: OpGetMany, Cache: "c", Keys: [][]byte{[]byte("a")}, Trace: []byte("00-01-02-01")}))
	f.Fuzz(func(t *testing.T, frame []byte) {
		for _, lim := range []Limits{{}, fuzzLimits} {
			r, err := ParseRequest(frame, lim)
			if err != nil {
				var pe *Error
				if !errors.As(err, &pe) || !(StatusOf(err) == StatusBadRequest || StatusOf(err) == StatusBadVersion ||
					(StatusOf(err) == StatusTooLarge && len(frame) > 1 && Op(frame[1]).carriesValue())) {
					t.Fatalf("unexpected error %T %v", err, err)
				}
				continue
			}
			checkParsedRequest(t, r, Resolve(lim))
			if again := AppendRequest(nil, &r); !bytes.Equal(again, frame) {
				t.Fatalf("re-encoding differs:\n%x\n%x", frame, again)
			}
			if len(frame) > RequestFrameMax(Resolve(lim)) {
				t.Fatalf("a valid frame of %d bytes over the server's request frame limit", len(frame))
			}
		}
	})
}

// checkParsedRequest checks that r, as ParseRequest returned it, is within lim and uses only the
// fields of its op.
func checkParsedRequest(t *testing.T, r Request, l Limits) {
	t.Helper()
	if r.Cache == "" || len(r.Cache) > l.MaxCacheName {
		t.Fatalf("parsed an invalid cache name %q", r.Cache)
	}
	if len(r.Key) > l.MaxKeyBytes {
		t.Fatalf("parsed a key of %d bytes", len(r.Key))
	}
	for _, k := range r.Keys {
		if len(k) > l.MaxKeyBytes {
			t.Fatalf("parsed a key of %d bytes", len(k))
		}
	}
	if (r.Op == OpGetMany || r.Op == OpPeekMany || r.Op == OpRemove) != (r.Keys != nil) ||
		(len(r.Keys) > l.MaxBatchKeys) || (r.Keys != nil && len(r.Keys) == 0) {
		t.Fatalf("parsed %d keys for %v", len(r.Keys), r.Op)
	}
	if (r.Op == OpClear) != (r.Generation != 0) {
		t.Fatalf("parsed generation %d for %v", r.Generation, r.Op)
	}
	switch r.Op {
	case OpGet, OpPeek, OpGetMany, OpPeekMany, OpRemove, OpClear:
		if r.Value.Data != nil || r.Value.Compressed || r.Value.TTL != 0 {
			t.Fatalf("parsed a value for %v", r.Op)
		}
		if r.Op != OpGet && r.Op != OpPeek && r.Key != nil {
			t.Fatalf("parsed a key for %v", r.Op)
		}
	case OpSet, OpOffer:
		if len(r.Value.Data) > l.MaxValueBytes {
			t.Fatalf("parsed a value of %d bytes", len(r.Value.Data))
		}
		if r.Value.Compressed {
			if n, err := s2.DecodedLen(r.Value.Data); err != nil || n > l.MaxValueBytes {
				t.Fatalf("parsed a compressed value inflating to %d bytes (%v)", n, err)
			}
		}
	default:
		t.Fatalf("parsed op %v", r.Op)
	}
}

// FuzzParseBatch parses the body of a GetMany reply answering n keys.
func FuzzParseBatch(f *testing.F) {
	f.Add(AppendBatch(nil, []Result{
		{Value: Value{Data: []byte("hello"), TTL: time.Minute}},
		{Err: ErrNotFound},
		{Err: errors.New("db down")},
	}), uint16(3))
	f.Add(AppendBatch(nil, []Result{{Value: Value{Data: []byte("stale"), TTL: -time.Second}}}), uint16(1))
	f.Add(AppendBatch(nil, []Result{{Value: Compress(bytes.Repeat([]byte("abcd"), 64), 1)}}), uint16(1))
	f.Add(AppendBatch(nil, []Result{{Value: bombOf(1 << 20)}, {}}), uint16(2))
	f.Add(AppendBatch(nil, []Result{{Value: squeezed(1 << 20)}, {}}), uint16(2))
	f.Add(AppendBatch(nil, []Result{{Err: &Error{Status: StatusOverloaded, Msg: batchFullMsg}}}), uint16(1))
	f.Fuzz(func(t *testing.T, body []byte, n uint16) {
		for _, lim := range []Limits{{}, fuzzLimits} {
			rs, err := ParseBatch(body, int(n), lim)
			if err != nil {
				var pe *Error
				if !errors.As(err, &pe) || !errors.Is(err, errProtocol) || rs != nil {
					t.Fatalf("unexpected error %T %v", err, err)
				}
				continue
			}
			if len(rs) != int(n) {
				t.Fatalf("%d results for %d keys", len(rs), n)
			}
			l := Resolve(lim)
			local := false // an entry failed on this side's limits: it does not re-encode as it came
			for i, r := range rs {
				if r.Err != nil {
					var pe *Error
					if !errors.As(r.Err, &pe) || r.Value.Data != nil || r.Value.Compressed || r.Value.TTL != 0 {
						t.Fatalf("entry %d: %+v", i, r)
					}
					if pe.Status == StatusTooLarge && (strings.HasPrefix(pe.Msg, "value of ") || strings.HasPrefix(pe.Msg, "compressed value ")) {
						local = true // this side's limit (a wire entry may say the same: then it is not re-encoded)
					} else if pe.Status == StatusOK {
						t.Fatalf("entry %d: %v", i, r.Err)
					} else if pe.Status > maxEntryStatus || len(pe.Msg) > MaxMessageBytes {
						t.Fatalf("entry %d: %v", i, r.Err)
					}
					continue
				}
				if len(r.Value.Data) > l.MaxValueBytes || cap(r.Value.Data) != len(r.Value.Data) {
					t.Fatalf("entry %d: value of %d bytes, capacity %d", i, len(r.Value.Data), cap(r.Value.Data))
				}
				if r.Value.Compressed {
					if dlen, err := s2.DecodedLen(r.Value.Data); err != nil || dlen > l.MaxValueBytes {
						t.Fatalf("entry %d: compressed value inflating to %d bytes (%v)", i, dlen, err)
					}
				}
			}
			if !local {
				if again := AppendBatch(nil, rs); !bytes.Equal(again, body) {
					t.Fatalf("re-encoding differs:\n%x\n%x", body, again)
				}
			}
		}
	})
}

func FuzzParseResponse(f *testing.F) {
	f.Add(AppendResponse(nil, &Response{Value: Value{Data: []byte("hello"), TTL: time.Minute}}))
	f.Add(AppendResponse(nil, &Response{Value: Value{Data: []byte("hello"), TTL: -time.Second}}))
	f.Add(AppendResponse(nil, &Response{Value: Compress(bytes.Repeat([]byte("abcd"), 64), 1)}))
	f.Add(AppendResponse(nil, &Response{Status: StatusNotFound, Msg: "no such user"}))
	f.Fuzz(func(t *testing.T, frame []byte) {
		for _, lim := range []Limits{{}, fuzzLimits} {
			r, err := ParseResponse(frame, lim)
			checkHeadAgrees(t, frame, Resolve(lim), r, err)
			if err != nil {
				var pe *Error
				if !errors.As(err, &pe) ||
					!(errors.Is(err, errProtocol) || StatusOf(err) == StatusBadVersion || StatusOf(err) == StatusTooLarge) {
					t.Fatalf("unexpected error %T %v", err, err)
				}
				continue
			}
			if again := AppendResponse(nil, &r); !bytes.Equal(again, frame) {
				t.Fatalf("re-encoding differs:\n%x\n%x", frame, again)
			}
			l := Resolve(lim)
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
				} else if !errors.Is(err, errProtocol) && !(n > 1<<16 && StatusOf(err) == StatusTooLarge) {
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
		// RawInto, into memory holding other bytes, gives the same answer.
		into, intoErr := v.RawInto(bytes.Repeat([]byte{0xa5}, limit), limit)
		if (err == nil) != (intoErr == nil) || !bytes.Equal(into, raw) {
			t.Fatalf("RawInto = %d bytes, %v; Raw = %d bytes, %v", len(into), intoErr, len(raw), err)
		}
		switch {
		case err != nil:
			if StatusOf(err) != StatusTooLarge && !errors.Is(err, errProtocol) {
				t.Fatalf("unexpected error %v", err)
			}
			if !compressed && StatusOf(err) != StatusTooLarge {
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
	head := frame[:min(len(frame), MaxResponseHead)]
	hr, off, herr := ParseResponseHead(head, len(frame), lim.MaxValueBytes)
	switch {
	case err == nil:
		if herr != nil {
			t.Fatalf("head: %v, frame: ok", herr)
		}
		if hr.Status != r.Status || hr.Msg != r.Msg || hr.Value.TTL != r.Value.TTL ||
			hr.Value.Compressed != r.Value.Compressed || off != len(frame)-len(r.Value.Data) {
			t.Fatalf("head %+v off %d, frame %+v", hr, off, r)
		}
	case herr == nil:
		// Only the value's S2 header is checked after the head.
		if !hr.Value.Compressed || !(errors.Is(err, errProtocol) || StatusOf(err) == StatusTooLarge) {
			t.Fatalf("head ok, frame: %v", err)
		}
	default:
		if !matches(herr, errorKind(err)) {
			t.Fatalf("head: %v, frame: %v", herr, err)
		}
	}
}

func errorKind(err error) error {
	for _, k := range []error{ErrVersion, ErrTooLarge, errProtocol} {
		if matches(err, k) {
			return k
		}
	}
	return err
}
