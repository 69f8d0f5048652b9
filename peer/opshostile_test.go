package peer

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// readRequest reads and parses one request frame.
func (h *hostileConn) readRequest() (Request, error) {
	hdr := make([]byte, 4)
	if _, err := io.ReadFull(h.br, hdr); err != nil {
		return Request{}, err
	}
	frame := make([]byte, binary.BigEndian.Uint32(hdr))
	if _, err := io.ReadFull(h.br, frame); err != nil {
		return Request{}, err
	}
	return ParseRequest(frame, Limits{})
}

// honestReply is a well-formed reply to req: a hit for Get and Peek, one hit per key for GetMany
// and PeekMany, an acknowledgment otherwise.
func honestReply(req Request) []byte {
	switch req.Op {
	case OpGet, OpPeek:
		return AppendResponse(nil, &Response{Value: Value{Data: []byte("value")}})
	case OpGetMany, OpPeekMany:
		return batchReply(hits(len(req.Keys)))
	}
	return AppendResponse(nil, &Response{})
}

func hits(n int) []Result {
	rs := make([]Result, n)
	for i := range rs {
		rs[i].Value.Data = []byte("v")
	}
	return rs
}

func batchReply(rs []Result) []byte {
	return AppendResponse(nil, &Response{Value: Value{Data: AppendBatch(nil, rs)}})
}

// serveWith answers every request on the connection: with bad(req) when it returns a frame,
// honestly otherwise.
func serveWith(bad func(req Request) []byte) func(h *hostileConn) {
	return func(h *hostileConn) {
		if !h.upgrade() {
			return
		}
		for {
			req, err := h.readRequest()
			if err != nil {
				return
			}
			f := bad(req)
			if f == nil {
				f = honestReply(req)
			}
			h.writeFrame(f)
		}
	}
}

// hostileBatchReplies are malformed replies to a GetMany or PeekMany of n keys (n >= 2).
var hostileBatchReplies = []struct {
	name  string
	reply func(n int) []byte // the reply to a GetMany or PeekMany of n keys
}{
	{"fewer entries", func(n int) []byte { return batchReply(hits(n - 1)) }},
	{"more entries", func(n int) []byte { return batchReply(hits(n + 1)) }},
	{"no entries", func(n int) []byte { return batchReply(nil) }},
	{"garbage body", func(n int) []byte {
		return AppendResponse(nil, &Response{Value: Value{Data: []byte{0xff, 0xfe, 0x00, 0x13, 0x37}}})
	}},
	{"garbage frame", func(n int) []byte { return []byte{Version, 0, 0, 0xde, 0xad, 0xbe, 0xef} }},
	{"trailing bytes after the entries", func(n int) []byte {
		return AppendResponse(nil, &Response{Value: Value{Data: append(AppendBatch(nil, hits(n)), 0)}})
	}},
	{"unknown entry status", func(n int) []byte {
		body := AppendBatch(nil, hits(n))
		body[1] = 0x09 // the first entry's status
		return AppendResponse(nil, &Response{Value: Value{Data: body}})
	}},
	{"flags on an error entry", func(n int) []byte {
		body := AppendBatch(nil, append([]Result{{Err: ErrNotFound}}, hits(n-1)...))
		body[2] = flagCompressed
		return AppendResponse(nil, &Response{Value: Value{Data: body}})
	}},
	{"compressed flag on the batch reply", func(n int) []byte {
		return AppendResponse(nil, &Response{Value: Value{Data: AppendBatch(nil, hits(n)), Compressed: true}})
	}},
	{"expiry on the batch reply", func(n int) []byte {
		return AppendResponse(nil, &Response{Value: Value{Data: AppendBatch(nil, hits(n)), Expires: 5}})
	}},
	{"message on the batch reply", func(n int) []byte {
		return AppendResponse(nil, &Response{Value: Value{Data: AppendBatch(nil, hits(n))}, Msg: "hi"})
	}},
	{"malformed compressed entry", func(n int) []byte {
		rs := hits(n)
		rs[1].Value = Value{Data: []byte{0xff}, Compressed: true}
		return batchReply(rs)
	}},
	{"body length past the frame", func(n int) []byte {
		f := batchReply(hits(n))
		f[4]++ // the body's length
		return f
	}},
	{"huge body length", func(n int) []byte {
		return append([]byte{Version, 0, 0, 0}, 0xff, 0xff, 0xff, 0xff, 0x0f, 3, 0, 0, 1, 'v')
	}},
	{"a Get reply", func(n int) []byte {
		return AppendResponse(nil, &Response{Value: Value{Data: []byte("value"), Expires: 9}})
	}},
}

// TestHostileBatchReplies: a GetMany reply with missing, extra or malformed entries is
// ErrProtocol; its connection is closed and the client goes on working.
func TestHostileBatchReplies(t *testing.T) {
	testHostileBatchReplies(t, OpGetMany)
}

// TestHostilePeekManyReplies: the same for PeekMany, whose reply is a GetMany's.
func TestHostilePeekManyReplies(t *testing.T) {
	testHostileBatchReplies(t, OpPeekMany)
}

func testHostileBatchReplies(t *testing.T, op Op) {
	cases := hostileBatchReplies
	c := newClient(t, WithTimeout(2*time.Second))
	call := c.GetMany
	if op == OpPeekMany {
		call = c.PeekMany
	}
	ctx := context.Background()
	for i, tc := range cases {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			addr := hostile(t, serveWith(func(req Request) []byte {
				if req.Op == op {
					return tc.reply(len(req.Keys))
				}
				return nil
			}))
			rs, err := call(ctx, addr, "c", keysOf("a", "b", "c"))
			checkOpErr(t, err, addr, op, ErrProtocol)
			if rs != nil || errors.Is(err, ErrUnavailable) || StatusOf(err) == StatusTooLarge {
				t.Fatalf("%v, %v", rs, err)
			}
			t.Log(err)
			// The client goes on working, on a new connection.
			if v := mustGet(t, c, addr, "k"); string(v.Data) != "value" {
				t.Fatalf("%q", v.Data)
			}
			if st := c.Stats(); st.Dials != int64(2*(i+1)) || st.OpenConns != int64(i+1) {
				t.Fatalf("stats %+v", st)
			}
		})
	}
	// The same replies are refused by ParseBatch.
	for _, tc := range cases {
		r, err := ParseResponse(tc.reply(3), Limits{})
		if err == nil && r.Status == StatusOK && !r.Value.Compressed && r.Value.Expires == 0 && r.Msg == "" {
			if _, err := ParseBatch(r.Value.Data, 3, Limits{}); !errors.Is(err, ErrProtocol) {
				t.Errorf("%s: ParseBatch: %v", tc.name, err)
			}
		}
	}
}

// TestHostileAcknowledgments: a reply to Set, Remove or Clear that carries a value or flags is
// ErrProtocol.
func TestHostileAcknowledgments(t *testing.T) {
	cases := []struct {
		name  string
		reply []byte
	}{
		{"value", AppendResponse(nil, &Response{Value: Value{Data: []byte("x")}})},
		{"expiry flag", AppendResponse(nil, &Response{Value: Value{Expires: 5}})},
		{"compressed flag", AppendResponse(nil, &Response{Value: Value{Compressed: true}})},
		{"value over the client's limit", AppendResponse(nil, &Response{Value: Value{Data: make([]byte, 100)}})},
		{"batch body", batchReply(hits(1))},
	}
	c := newClient(t, WithTimeout(2*time.Second), WithClientLimits(Limits{MaxValueBytes: 50}))
	ctx := context.Background()
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			addr := hostile(t, serveWith(func(req Request) []byte {
				if req.Op == OpSet || req.Op == OpRemove || req.Op == OpClear {
					return tc.reply
				}
				return nil
			}))
			for op, call := range map[Op]func() error{
				OpSet:    func() error { return c.Set(ctx, addr, "c", []byte("k"), Value{Data: []byte("v")}) },
				OpRemove: func() error { return c.Remove(ctx, addr, "c", keysOf("k")) },
				OpClear:  func() error { return c.Clear(ctx, addr, "c", 1) },
			} {
				err := call()
				checkOpErr(t, err, addr, op, ErrProtocol)
				if StatusOf(err) == StatusTooLarge || errors.Is(err, ErrUnavailable) {
					t.Fatalf("%v", err)
				}
				mustGet(t, c, addr, "k")
			}
		})
	}
	// An honest acknowledgment, with a message.
	addr := hostile(t, serveWith(func(req Request) []byte {
		return AppendResponse(nil, &Response{Msg: "stored"})
	}))
	if err := c.Set(ctx, addr, "c", []byte("k"), Value{}); err != nil {
		t.Fatal(err)
	}
}

// TestHostileBatchMidReply: a peer that closes the connection in the middle of a batch reply.
func TestHostileBatchMidReply(t *testing.T) {
	addr := hostile(t, func(h *hostileConn) {
		if !h.upgrade() {
			return
		}
		if _, err := h.readRequest(); err != nil {
			return
		}
		f := batchReply(hits(3))
		h.nc.Write(binary.BigEndian.AppendUint32(nil, uint32(len(f))))
		h.nc.Write(f[:len(f)-2])
	})
	c := newClient(t)
	_, err := c.GetMany(context.Background(), addr, "c", keysOf("a", "b", "c"))
	checkOpErr(t, err, addr, OpGetMany, ErrUnavailable)
	if st := c.Stats(); st.OpenConns != 0 || st.Retries != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestOpsRetriedOnStaleConnection: every op is sent again when its reused connection turns out to
// have been closed by the peer before any byte of the reply (all ops are idempotent).
func TestOpsRetriedOnStaleConnection(t *testing.T) {
	// The peer answers one request per connection, then closes it.
	addr := hostile(t, func(h *hostileConn) {
		if !h.upgrade() {
			return
		}
		if req, err := h.readRequest(); err == nil {
			h.writeFrame(honestReply(req))
		}
	})
	c := newClient(t)
	ctx := context.Background()
	if err := c.Set(ctx, addr, "c", []byte("k"), Value{Data: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	if rs, err := c.GetMany(ctx, addr, "c", keysOf("a", "b")); err != nil || len(rs) != 2 || string(rs[1].Value.Data) != "v" {
		t.Fatalf("%+v, %v", rs, err)
	}
	if rs, err := c.PeekMany(ctx, addr, "c", keysOf("a", "b", "c")); err != nil || len(rs) != 3 || string(rs[2].Value.Data) != "v" {
		t.Fatalf("%+v, %v", rs, err)
	}
	if err := c.Remove(ctx, addr, "c", keysOf("a")); err != nil {
		t.Fatal(err)
	}
	if err := c.Clear(ctx, addr, "c", 9); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Dials != 5 || st.Retries != 4 || st.Errors != 0 || st.Requests != 5 {
		t.Fatalf("stats %+v", st)
	}
}
