package peer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// peekBackend is a mapBackend that also answers OpPeek from its map, counting peeks apart.
type peekBackend struct {
	*mapBackend
	peeks int
}

func (b *peekBackend) Peek(_ context.Context, cache string, key []byte) (Value, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.peeks++
	if cache != "c" {
		return Value{}, ErrUnknownCache
	}
	v, ok := b.values[string(key)]
	if !ok {
		return Value{}, ErrNotFound
	}
	return v, nil
}

func TestPeek(t *testing.T) {
	b := &peekBackend{mapBackend: newMapBackend()}
	b.set("k", Value{Data: []byte("v"), Expires: 42})
	_, addr := startServer(t, b)
	c := newClient(t)
	ctx := context.Background()

	v, err := c.Peek(ctx, addr, "c", []byte("k"))
	if err != nil || string(v.Data) != "v" || v.Expires != 42 {
		t.Fatalf("Peek = %+v, %v", v, err)
	}
	_, err = c.Peek(ctx, addr, "c", []byte("absent"))
	var pe *Error
	if StatusOf(err) != StatusNotFound || !errors.As(err, &pe) || pe.Op != OpPeek {
		t.Fatalf("Peek of an absent key: %v", err)
	}
	if _, err := c.Peek(ctx, addr, "other", []byte("k")); StatusOf(err) != StatusUnknownCache {
		t.Fatalf("Peek of an unknown cache: %v", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.peeks != 3 || b.calls != 0 {
		t.Fatalf("peeks = %d, gets = %d: a peek must never reach Get", b.peeks, b.calls)
	}
}

func TestPeekRefusedByBackendWithoutPeek(t *testing.T) {
	b := newMapBackend()
	b.set("k", Value{Data: []byte("v")})
	_, addr := startServer(t, b)
	c := newClient(t)
	if _, err := c.Peek(context.Background(), addr, "c", []byte("k")); StatusOf(err) != StatusBadRequest {
		t.Fatalf("Peek on a server without peek: %v", err)
	}
	if b.calls != 0 {
		t.Fatal("a peek reached Get")
	}
}

func TestPeekRequestFrame(t *testing.T) {
	frame := AppendRequest(nil, &Request{Op: OpPeek, Cache: "c", Key: []byte("k")})
	r, err := ParseRequest(frame, Limits{})
	if err != nil || r.Op != OpPeek || r.Cache != "c" || string(r.Key) != "k" {
		t.Fatalf("ParseRequest = %+v, %v", r, err)
	}
	if OpPeek.String() != "peek" {
		t.Fatal(OpPeek.String())
	}
}

// peekManyBackend is an opsBackend (GetMany and the writes) that also answers OpPeekMany from its
// map, never through Get or GetMany, and records the keys of each PeekMany. Keys in errs answer
// their error; the key "panic" panics.
type peekManyBackend struct {
	*opsBackend
	peekBatches [][]string // keys of each PeekMany; guarded by omu
	// peekHook, when set, answers PeekMany instead of the map.
	peekHook func(keys [][]byte) ([]Result, error)
}

func newPeekManyBackend() *peekManyBackend { return &peekManyBackend{opsBackend: newOpsBackend()} }

func (b *peekManyBackend) PeekMany(_ context.Context, cache string, keys [][]byte) ([]Result, error) {
	b.omu.Lock()
	b.peekBatches = append(b.peekBatches, strs(keys))
	hook := b.peekHook
	b.omu.Unlock()
	if hook != nil {
		return hook(keys)
	}
	if cache != "c" {
		return nil, fmt.Errorf("cache %q: %w", cache, ErrUnknownCache)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	rs := make([]Result, len(keys))
	for i, k := range keys {
		if string(k) == "panic" {
			panic("peek bug")
		}
		if err, ok := b.errs[string(k)]; ok {
			rs[i].Err = err
		} else if v, ok := b.values[string(k)]; ok {
			rs[i].Value = v
		} else {
			rs[i].Err = ErrNotFound
		}
	}
	return rs, nil
}

var _ BatchPeekBackend = (*peekManyBackend)(nil)

// TestPeekMany sends PeekMany requests on an upgraded connection and as a POST, and checks what
// the Backend got (PeekMany calls only: never Get or GetMany) and what came back.
func TestPeekMany(t *testing.T) {
	b := newPeekManyBackend()
	exp := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	alpha := Value{Data: []byte("alpha"), Expires: exp}
	z := Compress(compressible(8<<10), 0)
	b.set("a", alpha)
	b.set("z", z)
	b.errs["err"] = errors.New("disk gone")
	s, addr := startServer(t, b)
	c := newClient(t)
	ctx := context.Background()

	// Hits (one repeated, one compressed), misses (one of the empty key) and a Backend error.
	keys := keysOf("a", "missing", "z", "err", "", "a")
	rs, err := c.PeekMany(ctx, addr, "c", keys)
	if err != nil || len(rs) != len(keys) {
		t.Fatalf("%d results, %v", len(rs), err)
	}
	for _, i := range []int{0, 5} {
		if rs[i].Err != nil || !sameValue(rs[i].Value, alpha) {
			t.Fatalf("entry %d: %+v", i, rs[i])
		}
	}
	if rs[2].Err != nil || !sameValue(rs[2].Value, z) {
		t.Fatalf("entry 2: %v", rs[2].Err)
	}
	if raw, err := rs[2].Value.Raw(0); err != nil || !bytes.Equal(raw, compressible(8<<10)) {
		t.Fatalf("Raw of the compressed value: %v", err)
	}
	for _, i := range []int{1, 4} {
		pe := checkOpErr(t, rs[i].Err, addr, OpPeekMany, ErrNotFound)
		if pe.Status != StatusNotFound || pe.Msg != "" || rs[i].Value.Data != nil {
			t.Fatalf("entry %d: %+v", i, rs[i])
		}
	}
	if pe := checkOpErr(t, rs[3].Err, addr, OpPeekMany, ErrInternal); pe.Status != StatusInternal || pe.Msg != "disk gone" {
		t.Fatalf("entry 3: %+v", pe)
	}
	for i := range rs {
		if d := rs[i].Value.Data; cap(d) != len(d) {
			t.Fatalf("entry %d: capacity %d for %d bytes", i, cap(d), len(d))
		}
	}

	// Failures of the whole request.
	_, err = c.PeekMany(ctx, addr, "other", keysOf("a"))
	checkOpErr(t, err, addr, OpPeekMany, ErrUnknownCache)
	_, err = c.PeekMany(ctx, addr, "c", keysOf("a", "panic"))
	if pe := checkOpErr(t, err, addr, OpPeekMany, ErrInternal); pe.Msg != "backend panicked: peek bug" {
		t.Fatalf("%+v", pe)
	}
	b.omu.Lock()
	b.peekHook = func(keys [][]byte) ([]Result, error) { return make([]Result, len(keys)+1), nil }
	b.omu.Unlock()
	_, err = c.PeekMany(ctx, addr, "c", keysOf("a", "b"))
	if pe := checkOpErr(t, err, addr, OpPeekMany, ErrInternal); pe.Msg != "backend returned 3 results for 2 keys" {
		t.Fatalf("%+v", pe)
	}
	b.omu.Lock()
	b.peekHook = nil
	b.omu.Unlock()

	// A plain POST.
	r, _ := postFrame(t, addr, AppendRequest(nil, &Request{Op: OpPeekMany, Cache: "c", Keys: keysOf("missing", "a")}))
	if r.Status != StatusOK || r.Value.Compressed || r.Value.Expires != 0 || r.Msg != "" {
		t.Fatalf("POST: %+v", r)
	}
	prs, err := ParseBatch(r.Value.Data, 2, Limits{})
	if err != nil || StatusOf(prs[0].Err) != StatusNotFound || prs[1].Err != nil || !sameValue(prs[1].Value, alpha) {
		t.Fatalf("POST batch %+v, %v", prs, err)
	}

	b.omu.Lock()
	want := [][]string{strs(keys), {"a"}, {"a", "panic"}, {"a", "b"}, {"missing", "a"}}
	if !reflect.DeepEqual(b.peekBatches, want) || len(b.batches) != 0 {
		t.Fatalf("backend got peekmanys %q, getmanys %q", b.peekBatches, b.batches)
	}
	b.omu.Unlock()
	b.mu.Lock()
	if b.calls != 0 {
		t.Fatalf("%d calls of Get: a peekmany must never load", b.calls)
	}
	b.mu.Unlock()

	cs, ss := c.Stats(), s.Stats()
	if cs.Requests != 4 || cs.Errors != 3 || cs.Dials != 1 {
		t.Errorf("client stats %+v", cs)
	}
	if ss.Requests != 5 || ss.ByOp[OpPeekMany] != 5 || ss.ByOp[OpGetMany] != 0 || ss.ByOp[OpPeek] != 0 ||
		ss.ByOp[OpGet] != 0 || ss.OK != 2 || ss.UnknownCache != 1 || ss.Internal != 2 || ss.Panics != 1 {
		t.Errorf("server stats %+v", ss)
	}
}

// TestPeekManyRefusedWithoutBatchPeekBackend: a server whose Backend does not implement
// BatchPeekBackend answers PeekMany with ErrBadRequest, on an upgraded connection and to a POST,
// also when the Backend answers GetMany or Peek, and calls none of its methods for it.
func TestPeekManyRefusedWithoutBatchPeekBackend(t *testing.T) {
	plain := newMapBackend()
	batch := newOpsBackend()
	peek := &peekBackend{mapBackend: newMapBackend()}
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		b    Backend
		m    *mapBackend
	}{
		{"Backend", plain, plain},
		{"BatchBackend", batch, batch.mapBackend},
		{"PeekBackend", peek, peek.mapBackend},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.m.set("k", Value{Data: []byte("v")})
			s, addr := startServer(t, tc.b)
			c := newClient(t)
			_, err := c.PeekMany(ctx, addr, "c", keysOf("k"))
			pe := checkOpErr(t, err, addr, OpPeekMany, ErrBadRequest)
			if pe.Status != StatusBadRequest || !strings.Contains(pe.Msg, "does not answer peekmany") {
				t.Fatalf("%+v", pe)
			}
			r, _ := postFrame(t, addr, AppendRequest(nil, &Request{Op: OpPeekMany, Cache: "c", Keys: keysOf("k")}))
			if r.Status != StatusBadRequest || !strings.Contains(r.Msg, "does not answer peekmany") {
				t.Fatalf("POST: %+v", r)
			}
			mustGet(t, c, addr, "k")
			if st := c.Stats(); st.Dials != 1 {
				t.Fatalf("the refusal cost the connection: %+v", st)
			}
			if st := s.Stats(); st.BadRequest != 2 || st.OK != 1 || st.ByOp[OpPeekMany] != 2 {
				t.Fatalf("stats %+v", st)
			}
			tc.m.mu.Lock()
			defer tc.m.mu.Unlock()
			if tc.m.calls != 1 {
				t.Fatalf("%d calls of Get", tc.m.calls)
			}
		})
	}
	batch.omu.Lock()
	defer batch.omu.Unlock()
	if len(batch.batches) != 0 || peek.peeks != 0 {
		t.Fatalf("a peekmany reached GetMany (%q) or Peek (%d)", batch.batches, peek.peeks)
	}
}

// TestPeekManyReplyFull: entries that do not fit in the server's reply frame come back as
// ErrOverloaded, as for GetMany; an entry over the client's limit fails alone.
func TestPeekManyReplyFull(t *testing.T) {
	b := newPeekManyBackend()
	for i := range 4 {
		b.set(fmt.Sprint("k", i), Value{Data: bytes.Repeat([]byte{byte('a' + i)}, 3000)})
	}
	_, addr := startServer(t, b, WithServerLimits(Limits{MaxValueBytes: 4000, MaxFrameBytes: 10000}))
	c := newClient(t)
	ctx := context.Background()
	keys := keysOf("k0", "k1", "k2", "k3", "missing")
	rs, err := c.PeekMany(ctx, addr, "c", keys)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if rs[i].Err != nil || !bytes.Equal(rs[i].Value.Data, bytes.Repeat([]byte{byte('a' + i)}, 3000)) {
			t.Fatalf("entry %d: %v", i, rs[i].Err)
		}
	}
	for i := 3; i < len(keys); i++ {
		if pe := checkOpErr(t, rs[i].Err, addr, OpPeekMany, ErrOverloaded); pe.Msg != batchFullMsg {
			t.Fatalf("entry %d: %v", i, pe)
		}
	}
	rs, err = c.PeekMany(ctx, addr, "c", keys[3:])
	if err != nil || rs[0].Err != nil || StatusOf(rs[1].Err) != StatusNotFound {
		t.Fatalf("asking again: %+v, %v", rs, err)
	}

	c2 := newClient(t, WithClientLimits(Limits{MaxValueBytes: 1000}))
	rs, err = c2.PeekMany(ctx, addr, "c", keysOf("k0", "missing"))
	if err != nil {
		t.Fatal(err)
	}
	if pe := checkOpErr(t, rs[0].Err, addr, OpPeekMany, ErrTooLarge); pe.Status != StatusTooLarge || rs[0].Value.Data != nil {
		t.Fatalf("entry 0: %+v", rs[0])
	}
	if StatusOf(rs[1].Err) != StatusNotFound {
		t.Fatalf("entry 1: %v", rs[1].Err)
	}
	if st := c2.Stats(); st.Errors != 0 || st.OpenConns != 1 {
		t.Fatalf("stats %+v", st)
	}

	// A frame limit that even a reply of "full" entries exceeds: the whole request is refused.
	_, addr2 := startServer(t, b, WithServerLimits(Limits{MaxFrameBytes: 100}))
	_, err = c.PeekMany(ctx, addr2, "c", keysOf("1", "2", "3", "4"))
	checkOpErr(t, err, addr2, OpPeekMany, ErrTooLarge)
}
