package wire

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestPinnedOpRequestBytes pins the encoding of the version-1 requests of Set, Remove, GetMany,
// Clear and PeekMany (see TestPinnedRequestBytes): the bytes are those of docs/protocol.md.
func TestPinnedOpRequestBytes(t *testing.T) {
	cases := []struct {
		r    Request
		want string
	}{
		{
			// Set "alice" to "hello", with a minute to live.
			Request{Op: OpSet, Cache: "users", Key: []byte("alice"),
				Value: Value{Data: []byte("hello"), TTL: time.Minute}},
			"02" + "03" + "02" + "0000000df8475800" + "05" + "7573657273" + "05" + "616c696365" + "05" + "68656c6c6f",
		},
		{
			// Set a compressed value without expiry.
			Request{Op: OpSet, Cache: "users", Key: []byte("alice"),
				Value: Value{Data: []byte{0x38, 0x00, 0x61, 0xda, 0x01, 0x00}, Compressed: true}},
			"02" + "03" + "01" + "05" + "7573657273" + "05" + "616c696365" + "06" + "380061da0100",
		},
		{
			Request{Op: OpRemove, Cache: "users", Keys: keysOf("alice", "bob")},
			"02" + "02" + "00" + "05" + "7573657273" + "02" + "05" + "616c696365" + "03" + "626f62",
		},
		{
			Request{Op: OpGetMany, Cache: "users", Keys: keysOf("alice", "bob", "carol")},
			"02" + "04" + "00" + "05" + "7573657273" + "03" + "05" + "616c696365" + "03" + "626f62" + "05" + "6361726f6c",
		},
		{
			Request{Op: OpClear, Cache: "users", Generation: 300},
			"02" + "06" + "00" + "05" + "7573657273" + "ac02",
		},
		{
			// The layout of GetMany; only the op byte differs.
			Request{Op: OpPeekMany, Cache: "users", Keys: keysOf("alice", "bob", "carol")},
			"02" + "07" + "00" + "05" + "7573657273" + "03" + "05" + "616c696365" + "03" + "626f62" + "05" + "6361726f6c",
		},
		{
			// The layout of Set; only the op byte differs.
			Request{Op: OpOffer, Cache: "users", Key: []byte("alice"),
				Value: Value{Data: []byte("hello"), TTL: time.Minute}},
			"02" + "08" + "02" + "0000000df8475800" + "05" + "7573657273" + "05" + "616c696365" + "05" + "68656c6c6f",
		},
	}
	for _, c := range cases {
		got := AppendRequest(nil, &c.r)
		if h := hex.EncodeToString(got); h != c.want {
			t.Fatalf("%v request frame\n got %s\nwant %s", c.r.Op, h, c.want)
		}
		r, err := ParseRequest(got, Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if !sameRequest(r, c.r) {
			t.Fatalf("parsed %+v, want %+v", r, c.r)
		}
	}
}

// TestPinnedOpResponseBytes pins the reply to a GetMany and the acknowledgment of Set, Remove and
// Clear.
func TestPinnedOpResponseBytes(t *testing.T) {
	// A GetMany of alice (a hit with a minute to live), bob (not found) and
	// carol (an error).
	rs := []Result{
		{Value: Value{Data: []byte("hello"), TTL: time.Minute}},
		{Err: ErrNotFound},
		{Err: errors.New("db down")},
	}
	body := AppendBatch(nil, rs)
	got := AppendResponse(nil, &Response{Value: Value{Data: body}})
	const want = "02" + "00" + "00" + "00" + "1e" + // header, empty message, a 30-byte batch body
		"03" + // three entries
		"00" + "02" + "0000000df8475800" + "05" + "68656c6c6f" + // OK, expires, "hello"
		"01" + "00" + "00" + // NotFound, no message
		"05" + "00" + "07" + "646220646f776e" // Internal, "db down"
	if h := hex.EncodeToString(got); h != want {
		t.Fatalf("batch reply\n got %s\nwant %s", h, want)
	}
	r, err := ParseResponse(got, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := ParseBatch(r.Value.Data, 3, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if !sameValue(parsed[0].Value, rs[0].Value) || parsed[0].Err != nil {
		t.Fatalf("entry 0: %+v", parsed[0])
	}
	var pe *Error
	if !errors.As(parsed[1].Err, &pe) || pe.Status != StatusNotFound || pe.Msg != "" {
		t.Fatalf("entry 1: %v", parsed[1].Err)
	}
	if !errors.As(parsed[2].Err, &pe) || pe.Status != StatusInternal || pe.Msg != "db down" {
		t.Fatalf("entry 2: %v", parsed[2].Err)
	}

	if h := hex.EncodeToString(AppendResponse(nil, &Response{})); h != "0200000000" {
		t.Fatalf("acknowledgment %s", h)
	}
}

func sameRequest(a, b Request) bool {
	if len(a.Keys) != len(b.Keys) {
		return false
	}
	for i := range a.Keys {
		if !bytes.Equal(a.Keys[i], b.Keys[i]) {
			return false
		}
	}
	return a.Op == b.Op && a.Cache == b.Cache && bytes.Equal(a.Key, b.Key) && sameValue(a.Value, b.Value) &&
		a.Generation == b.Generation && bytes.Equal(a.Trace, b.Trace)
}

func TestOpRequestRoundTrip(t *testing.T) {
	long := bytes.Repeat([]byte{0xfe}, 300)
	many := make([][]byte, DefaultMaxBatchKeys)
	for i := range many {
		many[i] = []byte{byte(i), byte(i >> 8)}
	}
	for _, r := range []Request{
		{Op: OpSet, Cache: "c", Key: nil, Value: Value{Data: []byte{}}},
		{Op: OpSet, Cache: "c", Key: long, Value: Value{Data: long, TTL: -1}},
		{Op: OpSet, Cache: "c", Key: []byte("k"), Value: Compress(bytes.Repeat([]byte("abc"), 1000), 1)},
		{Op: OpSet, Cache: "c", Key: []byte("k"), Value: Value{Data: Compress(bytes.Repeat([]byte("a"), 100), 1).Data,
			Compressed: true, TTL: 1 << 62}},
		{Op: OpRemove, Cache: "c", Keys: keysOf("")},
		{Op: OpRemove, Cache: "c", Keys: [][]byte{long, nil, long}},
		{Op: OpGetMany, Cache: "ünïcode", Keys: many},
		{Op: OpPeekMany, Cache: "c", Keys: [][]byte{long, nil, long}},
		{Op: OpPeekMany, Cache: "ünïcode", Keys: many},
		{Op: OpClear, Cache: "c", Generation: 1},
		{Op: OpClear, Cache: "c", Generation: 1<<64 - 1},
		{Op: OpOffer, Cache: "c", Key: long, Value: Value{Data: long, TTL: time.Hour}},
		{Op: OpPeekMany, Cache: "c", Keys: [][]byte{long, nil}, Trace: bytes.Repeat([]byte("t"), MaxTraceBytes)},
		{Op: OpClear, Cache: "c", Generation: 7, Trace: []byte("x")},
		{Op: OpOffer, Cache: "c", Key: []byte("k"), Value: Compress(bytes.Repeat([]byte("abc"), 1000), 1)},
	} {
		frame := AppendRequest([]byte("prefix"), &r)[len("prefix"):]
		got, err := ParseRequest(frame, Limits{})
		if err != nil {
			t.Fatalf("%v: %v", r.Op, err)
		}
		if !sameRequest(got, r) {
			t.Fatalf("got %+v, want %+v", got, r)
		}
		for _, k := range got.Keys {
			if cap(k) != len(k) {
				t.Fatal("a parsed key is not capacity-capped")
			}
		}
		if again := AppendRequest(nil, &got); !bytes.Equal(again, frame) {
			t.Fatalf("re-encoding differs")
		}
		if len(frame) > RequestFrameMax(Resolve(Limits{})) {
			t.Fatalf("%v frame of %d bytes over the request frame limit", r.Op, len(frame))
		}
	}
	// Fields an op does not use are not encoded.
	a := AppendRequest(nil, &Request{Op: OpClear, Cache: "c", Generation: 5, Key: []byte("k"), Keys: keysOf("x"),
		Value: Value{Data: []byte("v"), Compressed: true, TTL: 3}})
	b := AppendRequest(nil, &Request{Op: OpClear, Cache: "c", Generation: 5})
	if !bytes.Equal(a, b) {
		t.Fatalf("%x != %x", a, b)
	}
}

func TestParseOpRequestErrors(t *testing.T) {
	bomb := hex.EncodeToString(AppendRequest(nil, &Request{Op: OpSet, Cache: "c", Key: []byte("k"),
		Value: bombOf(1 << 20)}))
	mib := hex.EncodeToString(AppendRequest(nil, &Request{Op: OpSet, Cache: "c", Key: []byte("k"),
		Value: squeezed(1 << 20)}))
	cases := []struct {
		name  string
		frame string
		lim   Limits
		want  Status
	}{
		{"op 0x08", "02 08 00 01 63 01 00", Limits{}, StatusBadRequest},
		{"op 0xff", "02 ff 00 01 63 00", Limits{}, StatusBadRequest},
		{"flags on get", "02 01 02 01 63 00", Limits{}, StatusBadRequest},
		{"flags on peek", "02 05 01 01 63 00", Limits{}, StatusBadRequest},
		{"flags on remove", "02 02 01 01 63 01 00", Limits{}, StatusBadRequest},
		{"flags on getmany", "02 04 02 01 63 01 00", Limits{}, StatusBadRequest},
		{"flags on peekmany", "02 07 01 01 63 01 00", Limits{}, StatusBadRequest},
		{"flags on clear", "02 06 01 01 63 01", Limits{}, StatusBadRequest},
		{"unknown set flag", "02 03 04 01 63 00 00", Limits{}, StatusBadRequest},

		{"set: expiry truncated", "02 03 02 00000000", Limits{}, StatusBadRequest},
		{"set: zero expiry", "02 03 02 0000000000000000 01 63 00 00", Limits{}, StatusBadRequest},
		{"set: no key", "02 03 00 01 63", Limits{}, StatusBadRequest},
		{"set: no value", "02 03 00 01 63 00", Limits{}, StatusBadRequest},
		{"set: value truncated", "02 03 00 01 63 00 03 6161", Limits{}, StatusBadRequest},
		{"set: trailing", "02 03 00 01 63 00 01 61 61", Limits{}, StatusBadRequest},
		{"set: non-minimal value length", "02 03 00 01 63 00 8100", Limits{}, StatusBadRequest},
		{"set: non-minimal key length", "02 03 00 01 63 8100 00", Limits{}, StatusBadRequest},
		{"set: key over limit", "02 03 00 01 63 03 6b6b6b 00", Limits{MaxKeyBytes: 2}, StatusBadRequest},
		{"set: value over limit", "02 03 00 01 63 00 03 616161", Limits{MaxValueBytes: 2}, StatusTooLarge},
		{"set: value length over limit, truncated", "02 03 00 01 63 00 ffffffff0f", Limits{}, StatusTooLarge},
		{"set: S2 bomb", bomb, Limits{MaxValueBytes: 1 << 19}, StatusTooLarge},
		{"set: S2 bomb under the value limit", bomb, Limits{}, StatusTooLarge},
		{"set: compressed over the value limit", mib, Limits{MaxValueBytes: 1 << 19}, StatusTooLarge},
		{"set: bad S2 header", "02 03 01 01 63 00 01 ff", Limits{}, StatusBadRequest},
		{"set: empty compressed value", "02 03 01 01 63 00 00", Limits{}, StatusBadRequest},

		{"getmany: no count", "02 04 00 01 63", Limits{}, StatusBadRequest},
		{"getmany: count 0", "02 04 00 01 63 00", Limits{}, StatusBadRequest},
		{"getmany: count over limit", "02 04 00 01 63 03 00 00 00", Limits{MaxBatchKeys: 2}, StatusBadRequest},
		{"getmany: count over default limit", "02 04 00 01 63 812000", Limits{}, StatusBadRequest},
		{"getmany: huge count", "02 04 00 01 63 ffffffffffffffff7f", Limits{}, StatusBadRequest},
		{"getmany: non-minimal count", "02 04 00 01 63 8100 00", Limits{}, StatusBadRequest},
		{"getmany: fewer keys than count", "02 04 00 01 63 02 01 61", Limits{}, StatusBadRequest},
		{"getmany: key truncated", "02 04 00 01 63 02 02 61 00", Limits{}, StatusBadRequest},
		{"getmany: trailing", "02 04 00 01 63 01 01 61 00", Limits{}, StatusBadRequest},
		{"getmany: key over limit", "02 04 00 01 63 02 00 03 616161", Limits{MaxKeyBytes: 2}, StatusBadRequest},
		{"getmany: non-minimal key length", "02 04 00 01 63 01 8100", Limits{}, StatusBadRequest},
		{"getmany: empty cache name", "02 04 00 00 01 00", Limits{}, StatusBadRequest},
		{"peekmany: no count", "02 07 00 01 63", Limits{}, StatusBadRequest},
		{"peekmany: count 0", "02 07 00 01 63 00", Limits{}, StatusBadRequest},
		{"peekmany: count over limit", "02 07 00 01 63 03 00 00 00", Limits{MaxBatchKeys: 2}, StatusBadRequest},
		{"peekmany: count over default limit", "02 07 00 01 63 812000", Limits{}, StatusBadRequest},
		{"peekmany: huge count", "02 07 00 01 63 ffffffffffffffff7f", Limits{}, StatusBadRequest},
		{"peekmany: non-minimal count", "02 07 00 01 63 8100 00", Limits{}, StatusBadRequest},
		{"peekmany: fewer keys than count", "02 07 00 01 63 02 01 61", Limits{}, StatusBadRequest},
		{"peekmany: key truncated", "02 07 00 01 63 02 02 61 00", Limits{}, StatusBadRequest},
		{"peekmany: trailing", "02 07 00 01 63 01 01 61 00", Limits{}, StatusBadRequest},
		{"peekmany: key over limit", "02 07 00 01 63 02 00 03 616161", Limits{MaxKeyBytes: 2}, StatusBadRequest},
		{"peekmany: non-minimal key length", "02 07 00 01 63 01 8100", Limits{}, StatusBadRequest},
		{"peekmany: a Peek's key instead of a count and keys", "02 07 00 01 63 01 6b", Limits{}, StatusBadRequest},
		{"peekmany: empty cache name", "02 07 00 00 01 00", Limits{}, StatusBadRequest},
		{"remove: count 0", "02 02 00 01 63 00", Limits{}, StatusBadRequest},
		{"remove: count over limit", "02 02 00 01 63 02 00 00", Limits{MaxBatchKeys: 1}, StatusBadRequest},
		{"remove: trailing", "02 02 00 01 63 01 00 00", Limits{}, StatusBadRequest},

		{"clear: no generation", "02 06 00 01 63", Limits{}, StatusBadRequest},
		{"clear: generation 0", "02 06 00 01 63 00", Limits{}, StatusBadRequest},
		{"clear: non-minimal generation", "02 06 00 01 63 8100", Limits{}, StatusBadRequest},
		{"clear: overflowing generation", "02 06 00 01 63 ffffffffffffffffff7f", Limits{}, StatusBadRequest},
		{"clear: trailing", "02 06 00 01 63 01 00", Limits{}, StatusBadRequest},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			_, err := ParseRequest(hexFrame(t, c.frame), c.lim)
			var pe *Error
			if !errors.As(err, &pe) || pe.Status != c.want || StatusOf(err) != c.want {
				t.Fatalf("got %v, want status %v", err, c.want)
			}
			t.Log(err)
		})
	}
	// The limits just met.
	for _, c := range []struct {
		frame string
		lim   Limits
	}{
		{"02 03 00 01 63 00 02 6161", Limits{MaxValueBytes: 2}},
		{"02 04 00 01 63 02 00 00", Limits{MaxBatchKeys: 2}},
		{"02 07 00 01 63 02 00 00", Limits{MaxBatchKeys: 2}},
		{"02 06 00 01 63 ffffffffffffffffff01", Limits{}},
	} {
		if _, err := ParseRequest(hexFrame(t, c.frame), c.lim); err != nil {
			t.Fatalf("%s: %v", c.frame, err)
		}
	}
	if _, err := ParseRequest(hexFrame(t, mib), Limits{}); err != nil {
		t.Fatalf("1 MiB under the default limit: %v", err)
	}
}

func TestParseBatchErrors(t *testing.T) {
	three := []Result{{Value: Value{Data: []byte("a")}}, {Err: ErrNotFound}, {Value: Value{Data: []byte("c")}}}
	fewer := hex.EncodeToString(AppendBatch(nil, three[:2]))
	more := hex.EncodeToString(AppendBatch(nil, append(three, three[0])))
	cases := []struct {
		name string
		body string
		n    int
	}{
		{"empty", "", 1},
		{"non-minimal count", "8100", 0},
		{"fewer entries", fewer, 3},
		{"more entries", more, 3},
		{"huge count", "ffffffff0f", 3},
		{"count over the body", "02 01 00 00", 2},
		{"negative n", "00", -1},
		{"truncated entry", "01 00 00 01", 1},
		{"trailing", "01 01 00 00 00", 1},
		{"unknown status", "01 08 00 00", 1},
		{"version status in an entry", "01 07 00 00", 1},
		{"unknown flags", "01 00 04 00", 1},
		{"flags on not found", "01 01 01 00", 1},
		{"expiry on internal", "01 05 02 0000000000000001 00", 1},
		{"expiry truncated", "01 00 02 000000", 1},
		{"zero expiry", "01 00 02 0000000000000000 00", 1},
		{"value truncated", "01 00 00 03 6161", 1},
		{"value length over the body", "01 00 00 ffffffff0f", 1},
		{"non-minimal value length", "01 00 00 8100", 1},
		{"no message", "02 01 00 00 01 00", 2},
		{"message truncated", "01 05 00 05 6161", 1},
		{"message over limit", "01 05 00 810800" + strings.Repeat("61", 1025), 1},
		{"bad S2 header", "01 00 01 01 ff", 1},
		{"empty compressed value", "01 00 01 00", 1},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			rs, err := ParseBatch(hexFrame(t, c.body), c.n, Limits{})
			var pe *Error
			if !errors.As(err, &pe) || !errors.Is(err, errProtocol) || rs != nil {
				t.Fatalf("got %v, %v; want errProtocol", rs, err)
			}
			t.Log(err)
		})
	}
}

// TestParseBatchEntryOverLimit: a value over the limit fails its entry alone.
func TestParseBatchEntryOverLimit(t *testing.T) {
	bomb := squeezed(1 << 20)
	body := AppendBatch(nil, []Result{
		{Value: Value{Data: []byte("abc"), TTL: 5}},
		{Value: bomb},
		{Value: Value{Data: []byte("ok")}},
		{Value: Value{Data: []byte("abcd"), TTL: 6}},
	})
	rs, err := ParseBatch(body, 4, Limits{MaxValueBytes: 3})
	if err != nil {
		t.Fatal(err)
	}
	if rs[0].Err != nil || string(rs[0].Value.Data) != "abc" || rs[0].Value.TTL != 5 ||
		rs[2].Err != nil || string(rs[2].Value.Data) != "ok" {
		t.Fatalf("%+v", rs)
	}
	for _, i := range []int{1, 3} {
		var pe *Error
		if !errors.As(rs[i].Err, &pe) || pe.Status != StatusTooLarge ||
			!reflect.DeepEqual(rs[i].Value, Value{}) {
			t.Fatalf("entry %d: %+v", i, rs[i])
		}
	}
	// Under the default limit, all parse.
	if rs, err := ParseBatch(body, 4, Limits{}); err != nil || rs[1].Err != nil || !rs[1].Value.Compressed {
		t.Fatalf("%+v, %v", rs, err)
	}
}

func TestBatchRoundTrip(t *testing.T) {
	rs := []Result{
		{Value: Value{}},
		{Value: Value{Data: []byte("v"), TTL: -7}},
		{Value: Compress(bytes.Repeat([]byte("abc"), 1000), 1)},
		{Value: Value{Data: bytes.Repeat([]byte("x"), 70000)}},
		{Err: &Error{Status: StatusNotFound, Msg: "a message on a miss"}},
		{Err: &Error{Status: StatusTooLarge}},
		{Err: &Error{Status: StatusOverloaded, Msg: batchFullMsg}},
		{Err: &Error{Status: StatusUnknownCache, Msg: "x"}},
		{Err: &Error{Status: StatusBadRequest, Msg: "y"}},
		{Err: &Error{Status: StatusInternal, Msg: strings.Repeat("é", 600)}}, // cut
	}
	body := AppendBatch([]byte("prefix"), rs)[len("prefix"):]
	got, err := ParseBatch(body, len(rs), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range rs {
		if (rs[i].Err == nil) != (got[i].Err == nil) || !sameValue(got[i].Value, rs[i].Value) {
			t.Fatalf("entry %d: got %+v, want %+v", i, got[i], rs[i])
		}
		if rs[i].Err != nil {
			w, g := rs[i].Err.(*Error), got[i].Err.(*Error)
			if g.Status != w.Status || g.Msg != cutMessage(w.Msg) {
				t.Fatalf("entry %d: got %v, want %v", i, g, w)
			}
		}
		if d := got[i].Value.Data; cap(d) != len(d) {
			t.Fatalf("entry %d: not capacity-capped", i)
		}
	}
	if again := AppendBatch(nil, got); !bytes.Equal(again, body) {
		t.Fatal("re-encoding differs")
	}

	// Errors that are not *Error values map as a Server maps a Backend's errors.
	body = AppendBatch(nil, []Result{
		{Err: ErrNotFound},
		{Err: errors.New("boom")},
		{Err: &Error{Status: StatusBadVersion, Msg: "v"}},
		{Err: &Error{Err: ErrTooLarge, Msg: "local"}},
	})
	got, err = ParseBatch(body, 4, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range []struct {
		st  Status
		msg string
	}{{StatusNotFound, ""}, {StatusInternal, "boom"}, {StatusInternal, "v"},
		{StatusTooLarge, "local: too large"}} {
		if pe := got[i].Err.(*Error); pe.Status != w.st || pe.Msg != w.msg {
			t.Fatalf("entry %d: %v %q, want %v %q", i, pe.Status, pe.Msg, w.st, w.msg)
		}
	}
}

func TestAppendBatchReply(t *testing.T) {
	// Budgeted so that the entries up to 5 fit, with room for "full" entries after them, and
	// entry 6 does not.
	lim := Resolve(Limits{MaxValueBytes: 100, MaxFrameBytes: 290})
	rs := []Result{
		{Value: Value{Data: []byte("0123456789")}},
		{Value: Value{Data: make([]byte, 101)}},               // over MaxValueBytes
		{Value: Compress(bytes.Repeat([]byte("a"), 1000), 1)}, // inflates over it
		{Value: Value{Data: []byte{0x80}, Compressed: true}},  // malformed
		{Err: errors.New("boom")},                             //
		{Err: ErrNotFound},                                    //
		{Value: Value{Data: make([]byte, 100), TTL: 1}},       // does not fit
		{Value: Value{Data: []byte("c")}},                     // would fit, but comes after
	}
	body, ok := appendBatchReply(nil, rs, lim)
	if !ok {
		t.Fatal("refused")
	}
	frame := AppendResponse(nil, &Response{Value: Value{Data: body}})
	if len(frame) > lim.MaxFrameBytes {
		t.Fatalf("frame of %d bytes", len(frame))
	}
	got, err := ParseBatch(body, len(rs), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Err != nil || string(got[0].Value.Data) != "0123456789" {
		t.Fatalf("entry 0: %+v", got[0])
	}
	for i, st := range []Status{1: StatusTooLarge, 2: StatusTooLarge, 3: StatusInternal, 4: StatusInternal,
		5: StatusNotFound, 6: StatusOverloaded, 7: StatusOverloaded} {
		if i == 0 {
			continue
		}
		if pe, ok := got[i].Err.(*Error); !ok || pe.Status != st {
			t.Fatalf("entry %d: %v, want %v", i, got[i].Err, st)
		}
	}
	t.Logf("%d-byte frame: %x", len(frame), frame)
}

func TestBatchLimitAndOpNames(t *testing.T) {
	if l := Resolve(Limits{}); l.MaxBatchKeys != DefaultMaxBatchKeys {
		t.Fatalf("default %d", l.MaxBatchKeys)
	}
	if err := CheckLimits(Limits{MaxBatchKeys: maxBatchCeiling + 1}); err == nil {
		t.Fatal("batch limit over the ceiling accepted")
	}
	if err := CheckLimits(Limits{MaxBatchKeys: maxBatchCeiling}); err != nil {
		t.Fatal(err)
	}
	names := map[Op]string{OpGet: "get", OpRemove: "remove", OpSet: "set", OpGetMany: "getmany", OpPeek: "peek",
		OpClear: "clear", OpPeekMany: "peekmany", OpOffer: "offer", 9: "op(9)"}
	for op, want := range names {
		if op.String() != want {
			t.Errorf("%d: %q, want %q", op, op.String(), want)
		}
	}
	// The server's request frame limit is the longest valid request of any op, within
	// MaxFrameBytes.
	l := Resolve(Limits{})
	trace := binary.MaxVarintLen64 + MaxTraceBytes
	if got, want := RequestFrameMax(l), headerLen+8+trace+3*binary.MaxVarintLen64+l.MaxCacheName+l.MaxKeyBytes+l.MaxValueBytes; got != want {
		t.Fatalf("default request frame limit %d, want %d (a Set)", got, want)
	}
	l = Resolve(Limits{MaxValueBytes: 100, MaxKeyBytes: 1000, MaxBatchKeys: 10})
	if got, want := RequestFrameMax(l), headerLen+trace+2*binary.MaxVarintLen64+l.MaxCacheName+10*(2+1000); got != want {
		t.Fatalf("request frame limit %d, want %d (a GetMany)", got, want)
	}
}
