package wire

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestPinnedRequestBytes pins the encoding of a version-1 request. If it fails, the wire format
// changed: that needs a new Version and an update of docs/protocol.md.
func TestPinnedRequestBytes(t *testing.T) {
	got := AppendRequest(nil, &Request{Op: OpGet, Cache: "users", Key: []byte("alice")})
	const want = "02" + "01" + "00" + "05" + "7573657273" + "05" + "616c696365"
	if h := hex.EncodeToString(got); h != want {
		t.Fatalf("request frame\n got %s\nwant %s", h, want)
	}
	r, err := ParseRequest(got, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Op != OpGet || r.Cache != "users" || string(r.Key) != "alice" {
		t.Fatalf("parsed %+v", r)
	}
}

// TestPinnedTraceBytes pins a request that carries a trace context: flag bit 2, then the context
// as a field before the cache name; the same request without it is the frame above, byte for byte.
func TestPinnedTraceBytes(t *testing.T) {
	tp := "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	cases := []struct {
		r    Request
		want string
	}{
		{Request{Op: OpGet, Cache: "users", Key: []byte("alice"), Trace: []byte(tp)},
			"02" + "01" + "04" + "37" + hex.EncodeToString([]byte(tp)) + "05" + "7573657273" + "05" + "616c696365"},
		{Request{Op: OpSet, Cache: "users", Key: []byte("alice"), Value: Value{Data: []byte("hello"), TTL: time.Minute}, Trace: []byte("t")},
			"02" + "03" + "06" + "0000000df8475800" + "01" + "74" + "05" + "7573657273" + "05" + "616c696365" + "05" + "68656c6c6f"},
	}
	for _, c := range cases {
		got := AppendRequest(nil, &c.r)
		if h := hex.EncodeToString(got); h != c.want {
			t.Fatalf("%v request frame with a trace context\n got %s\nwant %s", c.r.Op, h, c.want)
		}
		r, err := ParseRequest(got, Limits{})
		if err != nil || string(r.Trace) != string(c.r.Trace) || string(r.Key) != "alice" || cap(r.Trace) != len(r.Trace) {
			t.Fatalf("parsed %+v, %v", r, err)
		}
		if again := AppendRequest(nil, &r); string(again) != string(got) {
			t.Fatal("re-encoding differs")
		}
	}
}

// TestPinnedResponseBytes pins the encoding of version-1 responses (see TestPinnedRequestBytes).
func TestPinnedResponseBytes(t *testing.T) {
	cases := []struct {
		r    Response
		want string
	}{
		{
			// A hit that has a minute to live.
			Response{Value: Value{Data: []byte("hello"), TTL: time.Minute}},
			"02" + "00" + "02" + "0000000df8475800" + "00" + "05" + "68656c6c6f",
		},
		{
			// A stale hit: it expired a second before it was sent.
			Response{Value: Value{Data: []byte("hello"), TTL: -time.Second}},
			"02" + "00" + "02" + "ffffffffc4653600" + "00" + "05" + "68656c6c6f",
		},
		{
			// A hit without expiry, compressed.
			Response{Value: Value{Data: []byte{0x38, 0x00, 0x61, 0xda, 0x01, 0x00}, Compressed: true}},
			"02" + "00" + "01" + "00" + "06" + "380061da0100",
		},
		{
			Response{Status: StatusNotFound, Msg: "no such user"},
			"02" + "01" + "00" + "0c" + "6e6f2073756368207573657" + "2",
		},
	}
	for _, c := range cases {
		got := AppendResponse(nil, &c.r)
		if h := hex.EncodeToString(got); h != c.want {
			t.Fatalf("response frame\n got %s\nwant %s", h, c.want)
		}
		r, err := ParseResponse(got, Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != c.r.Status || r.Msg != c.r.Msg || !bytes.Equal(r.Value.Data, c.r.Value.Data) ||
			r.Value.Compressed != c.r.Value.Compressed || r.Value.TTL != c.r.Value.TTL {
			t.Fatalf("parsed %+v, want %+v", r, c.r)
		}
	}
}

func TestRequestRoundTrip(t *testing.T) {
	long := bytes.Repeat([]byte{0xff}, 300) // a two-byte length varint
	for _, r := range []Request{
		{Op: OpGet, Cache: "c", Key: nil},
		{Op: OpGet, Cache: "c", Key: []byte{0}},
		{Op: OpGet, Cache: strings.Repeat("n", DefaultMaxCacheName), Key: long},
		{Op: OpGet, Cache: "ünïcode", Key: bytes.Repeat([]byte("k"), DefaultMaxKeyBytes)},
	} {
		frame := AppendRequest([]byte("prefix"), &r)[len("prefix"):]
		got, err := ParseRequest(frame, Limits{})
		if err != nil {
			t.Fatalf("%+v: %v", r, err)
		}
		if got.Op != r.Op || got.Cache != r.Cache || !bytes.Equal(got.Key, r.Key) {
			t.Fatalf("got %+v, want %+v", got, r)
		}
		if again := AppendRequest(nil, &got); !bytes.Equal(again, frame) {
			t.Fatalf("re-encoding differs")
		}
	}
}

func TestResponseRoundTrip(t *testing.T) {
	for _, r := range []Response{
		{},
		{Value: Value{Data: []byte("v")}},
		{Value: Value{Data: bytes.Repeat([]byte("x"), 70000), TTL: -5}},
		{Value: Compress(bytes.Repeat([]byte("abc"), 1000), 1), Msg: "note"},
		{Status: StatusInternal, Msg: "boom"},
		{Status: StatusBadVersion},
	} {
		frame := AppendResponse(nil, &r)
		got, err := ParseResponse(frame, Limits{})
		if err != nil {
			t.Fatalf("%v: %v", r.Status, err)
		}
		if got.Status != r.Status || got.Msg != r.Msg || !bytes.Equal(got.Value.Data, r.Value.Data) ||
			got.Value.Compressed != r.Value.Compressed || got.Value.TTL != r.Value.TTL {
			t.Fatalf("got %+v, want %+v", got, r)
		}
		if again := AppendResponse(nil, &got); !bytes.Equal(again, frame) {
			t.Fatalf("re-encoding differs")
		}
	}
}

func TestResponseValueIgnoredOnError(t *testing.T) {
	r := Response{Status: StatusNotFound, Value: Value{Data: []byte("ignored"), Compressed: true, TTL: 7}}
	got, err := ParseResponse(AppendResponse(nil, &r), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Value.Data != nil || got.Value.Compressed || got.Value.TTL != 0 {
		t.Fatalf("value on a non-OK response: %+v", got.Value)
	}
}

func TestResponseMessageCut(t *testing.T) {
	msg := strings.Repeat("é", MaxMessageBytes) // 2 bytes a rune: cut at a rune boundary
	got, err := ParseResponse(AppendResponse(nil, &Response{Status: StatusInternal, Msg: msg}), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Msg) != MaxMessageBytes || !strings.HasPrefix(msg, got.Msg) {
		t.Fatalf("message of %d bytes", len(got.Msg))
	}
	msg = "x" + msg
	got, _ = ParseResponse(AppendResponse(nil, &Response{Status: StatusInternal, Msg: msg}), Limits{})
	if len(got.Msg) != MaxMessageBytes-1 || !strings.HasPrefix(msg, got.Msg) {
		t.Fatalf("message of %d bytes", len(got.Msg))
	}
}

func hexFrame(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseRequestErrors(t *testing.T) {
	cases := []struct {
		name  string
		frame string
		lim   Limits
		want  error
	}{
		{"empty", "", Limits{}, ErrBadRequest},
		{"version", "01 01 00 01 63 00", Limits{}, ErrVersion},
		{"version only", "00", Limits{}, ErrVersion},
		{"short header", "02 01", Limits{}, ErrBadRequest},
		{"op zero", "02 00 00 01 63 00", Limits{}, ErrBadRequest},
		{"remove without keys", "02 02 00 01 63 00", Limits{}, ErrBadRequest},
		{"flags", "02 01 01 01 63 00", Limits{}, ErrBadRequest},
		{"no name", "02 01 00", Limits{}, ErrBadRequest},
		{"empty name", "02 01 00 00 00", Limits{}, ErrBadRequest},
		{"name truncated", "02 01 00 05 63", Limits{}, ErrBadRequest},
		{"no key", "02 01 00 01 63", Limits{}, ErrBadRequest},
		{"key truncated", "02 01 00 01 63 02 6b", Limits{}, ErrBadRequest},
		{"trailing", "02 01 00 01 63 01 6b 00", Limits{}, ErrBadRequest},
		{"non-minimal length", "02 01 00 81 00 63 00", Limits{}, ErrBadRequest},
		{"overflowing length", "02 01 00 ffffffffffffffffff7f", Limits{}, ErrBadRequest},
		{"key over limit", "02 01 00 01 63 03 6b6b6b", Limits{MaxKeyBytes: 2}, ErrBadRequest},
		{"name over limit", "02 01 00 03 636363 00", Limits{MaxCacheName: 2}, ErrBadRequest},
		{"empty trace context", "02 01 04 00 01 63 00", Limits{}, ErrBadRequest},
		{"trace context truncated", "02 01 04 05 74 01 63 00", Limits{}, ErrBadRequest},
		{"trace context over its limit", "02 01 04 8108" + strings.Repeat("74", 1025) + " 01 63 00", Limits{}, ErrBadRequest},
		{"unknown flag with a trace", "02 01 0c 01 74 01 63 00", Limits{}, ErrBadRequest},
		{"value flag on a Get with a trace", "02 01 05 01 74 01 63 00", Limits{}, ErrBadRequest},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseRequest(hexFrame(t, c.frame), c.lim)
			if !matches(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			var pe *Error
			if !errors.As(err, &pe) || pe.Status == StatusOK {
				t.Fatalf("%v is not an *Error with a status", err)
			}
		})
	}
}

func TestParseResponseErrors(t *testing.T) {
	bombFrame := hex.EncodeToString(AppendResponse(nil, &Response{Value: bombOf(1 << 20)}))
	mibFrame := hex.EncodeToString(AppendResponse(nil, &Response{Value: squeezed(1 << 20)}))
	cases := []struct {
		name  string
		frame string
		lim   Limits
		want  error
	}{
		{"empty", "", Limits{}, errProtocol},
		{"version", "01 00 00 00 00", Limits{}, ErrVersion},
		{"short", "02 00", Limits{}, errProtocol},
		{"unknown status", "02 0a 00 00", Limits{}, errProtocol},
		{"unknown flag", "02 00 04 00 00", Limits{}, errProtocol},
		{"flags on error", "02 01 01 00", Limits{}, errProtocol},
		{"no message", "02 00 00", Limits{}, errProtocol},
		{"no value", "02 00 00 00", Limits{}, errProtocol},
		{"value truncated", "02 00 00 00 03 6161", Limits{}, errProtocol},
		{"trailing", "02 00 00 00 01 61 61", Limits{}, errProtocol},
		{"trailing on error", "02 01 00 00 00", Limits{}, errProtocol},
		{"expiry truncated", "02 00 02 0000", Limits{}, errProtocol},
		{"zero expiry", "02 00 02 0000000000000000 00 00", Limits{}, errProtocol},
		{"message over limit", "02 05 00 810800", Limits{}, errProtocol},
		{"value over limit", "02 00 00 00 03 616161", Limits{MaxValueBytes: 2}, ErrTooLarge},
		{"bad compressed header", "02 00 01 00 01 ff", Limits{}, errProtocol},
		{"bomb", bombFrame, Limits{MaxValueBytes: 1 << 19}, ErrTooLarge},
		{"bomb under the value limit", bombFrame, Limits{}, ErrTooLarge},
		{"compressed over the value limit", mibFrame, Limits{MaxValueBytes: 1 << 19}, ErrTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseResponse(hexFrame(t, c.frame), c.lim)
			if !matches(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("%v is not an *Error", err)
			}
		})
	}
	if _, err := ParseResponse(hexFrame(t, mibFrame), Limits{}); err != nil {
		t.Fatalf("1 MiB under the default limit: %v", err)
	}
}

func TestErrorMatching(t *testing.T) {
	for st := StatusNotFound; st <= MaxStatus; st++ {
		err := fmt.Errorf("wrapped: %w", &Error{Peer: "h:1", Op: OpGet, Status: st, Msg: "m"})
		if got := StatusOf(err); got != st {
			t.Errorf("StatusOf(%v) = %v", err, got)
		}
		if got := StatusOf(errors.Join(errors.New("x"), err)); got != st {
			t.Errorf("StatusOf(joined %v) = %v", err, got)
		}
	}
	if StatusOf(nil) != StatusOK || StatusOf(errors.New("x")) != StatusOK || StatusOf(&Error{Err: errUnavailable}) != StatusOK {
		t.Error("StatusOf of an error without a status")
	}
	if errors.Is(&Error{}, nil) {
		t.Error("zero Error matches nil")
	}
	err := &Error{Peer: "h:1", Op: OpGet, Err: WrapCause(errUnavailable, errors.New("dial refused"))}
	if !errors.Is(err, errUnavailable) || errors.Is(err, errProtocol) {
		t.Errorf("%v", err)
	}
	if got, want := err.Error(), "peer: h:1: get: unavailable: dial refused"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	e2 := &Error{Peer: "h:1", Op: OpGet, Status: StatusInternal, Msg: "db down"}
	if got, want := e2.Error(), "peer: h:1: get: internal error: db down"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if Op(9).String() != "op(9)" || Status(99).String() != "status(99)" || StatusOK.String() != "ok" {
		t.Error("String of unknown values")
	}
}

func TestStatusOf(t *testing.T) {
	cases := map[error]Status{
		ErrNotFound:                      StatusNotFound,
		ErrUnknownCache:                  StatusUnknownCache,
		ErrTooLarge:                      StatusTooLarge,
		ErrOverloaded:                    StatusOverloaded,
		ErrBadRequest:                    StatusBadRequest,
		errors.New("x"):                  StatusInternal,
		ErrVersion:                       StatusInternal,
		&Error{Status: StatusNotFound}:   StatusNotFound,
		&Error{Status: StatusBadVersion}: StatusInternal,
	}
	for err, want := range cases {
		if got := statusOf(err); got != want {
			t.Errorf("statusOf(%v) = %v, want %v", err, got, want)
		}
	}
}

func TestLimits(t *testing.T) {
	l := Resolve(Limits{})
	if l.MaxKeyBytes != DefaultMaxKeyBytes || l.MaxValueBytes != DefaultMaxValueBytes ||
		l.MaxCacheName != DefaultMaxCacheName ||
		l.MaxFrameBytes != DefaultMaxValueBytes+DefaultMaxKeyBytes+DefaultMaxCacheName+FrameOverhead {
		t.Fatalf("defaults %+v", l)
	}
	if err := CheckLimits(Limits{MaxValueBytes: -1}); err == nil {
		t.Fatal("negative limit accepted")
	}
	if err := CheckLimits(Limits{MaxKeyBytes: maxKeyCeiling + 1}); err == nil {
		t.Fatal("key limit over the ceiling accepted")
	}
	if err := CheckLimits(Limits{MaxFrameBytes: 100}); err != nil {
		t.Fatal(err)
	}
}
