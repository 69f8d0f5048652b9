package peer

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// opsBackend is a mapBackend that also answers GetMany, Set, Remove and Clear, and records what
// it received (copies, since keys and values alias the connection's read buffer).
type opsBackend struct {
	*mapBackend
	omu     sync.Mutex
	batches [][]string // keys of each GetMany
	sets    []setCall
	removes [][]string
	clears  []clearCall
	// batchHook, when set, answers GetMany instead of the map.
	batchHook func(keys [][]byte) ([]Result, error)
	release   chan struct{} // for hooks that wait
}

type setCall struct {
	cache, key string
	v          Value
}

type clearCall struct {
	cache string
	gen   uint64
}

func newOpsBackend() *opsBackend { return &opsBackend{mapBackend: newMapBackend()} }

func strs(keys [][]byte) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = string(k)
	}
	return out
}

func (b *opsBackend) GetMany(ctx context.Context, cache string, keys [][]byte) ([]Result, error) {
	b.omu.Lock()
	b.batches = append(b.batches, strs(keys))
	hook := b.batchHook
	b.omu.Unlock()
	if hook != nil {
		return hook(keys)
	}
	if cache != "c" {
		return nil, fmt.Errorf("cache %q: %w", cache, ErrUnknownCache)
	}
	rs := make([]Result, len(keys))
	for i, k := range keys {
		if string(k) == "panic" {
			panic("batch bug")
		}
		b.mu.Lock()
		if err, ok := b.errs[string(k)]; ok {
			rs[i].Err = err
		} else if v, ok := b.values[string(k)]; ok {
			rs[i].Value = v
		} else {
			rs[i].Err = ErrNotFound
		}
		b.mu.Unlock()
	}
	return rs, nil
}

func (b *opsBackend) Set(ctx context.Context, cache string, key []byte, v Value) error {
	if string(key) == "panic" {
		panic("set bug")
	}
	if cache != "c" {
		return ErrUnknownCache
	}
	v.Data = bytes.Clone(v.Data)
	b.omu.Lock()
	b.sets = append(b.sets, setCall{cache, string(key), v})
	b.omu.Unlock()
	b.set(string(key), v)
	return nil
}

func (b *opsBackend) Remove(ctx context.Context, cache string, keys [][]byte) error {
	if cache != "c" {
		return ErrUnknownCache
	}
	b.omu.Lock()
	b.removes = append(b.removes, strs(keys))
	b.omu.Unlock()
	b.mu.Lock()
	for _, k := range keys {
		delete(b.values, string(k))
	}
	b.mu.Unlock()
	return nil
}

func (b *opsBackend) Clear(ctx context.Context, cache string, gen uint64) error {
	if cache != "c" {
		return ErrUnknownCache
	}
	if gen == 13 {
		return errors.New("unlucky generation")
	}
	b.omu.Lock()
	b.clears = append(b.clears, clearCall{cache, gen})
	b.omu.Unlock()
	b.mu.Lock()
	clear(b.values)
	b.mu.Unlock()
	return nil
}

var (
	_ BatchBackend = (*opsBackend)(nil)
	_ WriteBackend = (*opsBackend)(nil)
)

func keysOf(ks ...string) [][]byte {
	out := make([][]byte, len(ks))
	for i, k := range ks {
		out[i] = []byte(k)
	}
	return out
}

// checkOpErr checks that err is an *Error for peer and op that matches want.
func checkOpErr(t testing.TB, err error, peer string, op Op, want error) *Error {
	t.Helper()
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatalf("%v (%T) is not an *Error", err, err)
	}
	if !matches(err, want) {
		t.Fatalf("%v does not match %v", err, want)
	}
	if pe.Peer != peer || pe.Op != op {
		t.Fatalf("%v: peer %q op %v, want %q %v", err, pe.Peer, pe.Op, peer, op)
	}
	return pe
}

func sameValue(a, b Value) bool {
	return bytes.Equal(a.Data, b.Data) && a.Compressed == b.Compressed && a.Expires == b.Expires
}

// TestOpsRoundTrip sends every op through a Client to a Server, and checks what the Backend got
// and what the Client got back.
func TestOpsRoundTrip(t *testing.T) {
	b := newOpsBackend()
	s, addr := startServer(t, b)
	c := newClient(t)
	ctx := context.Background()
	exp := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()

	// Set: plain, with expiry, compressed, large (written from where it lies), empty.
	sets := []setCall{
		{"c", "plain", Value{Data: []byte("hello")}},
		{"c", "expires", Value{Data: []byte("e"), Expires: exp}},
		{"c", "compressed", Compress(compressible(64<<10), 0)},
		{"c", "large", Value{Data: random(100 << 10), Expires: -1}},
		{"c", "", Value{Data: []byte{}}},
	}
	for _, sc := range sets {
		if err := c.Set(ctx, addr, sc.cache, []byte(sc.key), sc.v); err != nil {
			t.Fatalf("Set %q: %v", sc.key, err)
		}
	}
	b.omu.Lock()
	if len(b.sets) != len(sets) {
		t.Fatalf("backend got %d sets", len(b.sets))
	}
	for i, got := range b.sets {
		if got.cache != sets[i].cache || got.key != sets[i].key || !sameValue(got.v, sets[i].v) {
			t.Fatalf("set %d: backend got %q %q compressed=%v expires=%d (%d bytes)", i, got.cache, got.key,
				got.v.Compressed, got.v.Expires, len(got.v.Data))
		}
	}
	b.omu.Unlock()

	// GetMany of what was set, a missing key and a duplicate.
	keys := keysOf("plain", "missing", "compressed", "expires", "large", "", "plain")
	rs, err := c.GetMany(ctx, addr, "c", keys)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != len(keys) {
		t.Fatalf("%d results for %d keys", len(rs), len(keys))
	}
	for i, k := range keys {
		if string(k) == "missing" {
			pe := checkOpErr(t, rs[i].Err, addr, OpGetMany, ErrNotFound)
			if pe.Status != StatusNotFound || pe.Msg != "" {
				t.Fatalf("missing: %+v", pe)
			}
			continue
		}
		if rs[i].Err != nil {
			t.Fatalf("%q: %v", k, rs[i].Err)
		}
		var want Value
		for _, sc := range sets {
			if sc.key == string(k) {
				want = sc.v
			}
		}
		if !sameValue(rs[i].Value, want) {
			t.Fatalf("%q: got %d bytes compressed=%v expires=%d", k, len(rs[i].Value.Data), rs[i].Value.Compressed,
				rs[i].Value.Expires)
		}
		if d := rs[i].Value.Data; cap(d) != len(d) {
			t.Fatalf("%q: capacity %d for %d bytes: appending would overwrite the next value", k, cap(d), len(d))
		}
	}
	if raw, err := rs[2].Value.Raw(0); err != nil || !bytes.Equal(raw, compressible(64<<10)) {
		t.Fatalf("Raw of the compressed value: %v", err)
	}
	b.omu.Lock()
	if got := b.batches[len(b.batches)-1]; !slices.Equal(got, strs(keys)) {
		t.Fatalf("backend got keys %q", got)
	}
	b.omu.Unlock()

	// Remove, then GetMany sees them gone.
	if err := c.Remove(ctx, addr, "c", keysOf("plain", "never-there")); err != nil {
		t.Fatal(err)
	}
	rs, err = c.GetMany(ctx, addr, "c", keysOf("plain", "expires"))
	if err != nil || StatusOf(rs[0].Err) != StatusNotFound || rs[1].Err != nil || string(rs[1].Value.Data) != "e" {
		t.Fatalf("after Remove: %+v, %v", rs, err)
	}

	// Clear, with a generation that takes two varint bytes.
	if err := c.Clear(ctx, addr, "c", 300); err != nil {
		t.Fatal(err)
	}
	rs, err = c.GetMany(ctx, addr, "c", keysOf("expires"))
	if err != nil || StatusOf(rs[0].Err) != StatusNotFound {
		t.Fatalf("after Clear: %+v, %v", rs, err)
	}
	b.omu.Lock()
	if !reflect.DeepEqual(b.removes, [][]string{{"plain", "never-there"}}) ||
		!slices.Equal(b.clears, []clearCall{{"c", 300}}) {
		t.Fatalf("backend got removes %q clears %v", b.removes, b.clears)
	}
	b.omu.Unlock()

	// Errors of the Backend, op by op.
	checkOpErr(t, c.Set(ctx, addr, "other", []byte("k"), Value{}), addr, OpSet, ErrUnknownCache)
	checkOpErr(t, c.Remove(ctx, addr, "other", keysOf("k")), addr, OpRemove, ErrUnknownCache)
	checkOpErr(t, c.Clear(ctx, addr, "other", 1), addr, OpClear, ErrUnknownCache)
	pe := checkOpErr(t, c.Clear(ctx, addr, "c", 13), addr, OpClear, ErrInternal)
	if pe.Msg != "unlucky generation" {
		t.Fatalf("message %q", pe.Msg)
	}
	_, err = c.GetMany(ctx, addr, "other", keysOf("k"))
	checkOpErr(t, err, addr, OpGetMany, ErrUnknownCache)
	checkOpErr(t, c.Set(ctx, addr, "c", []byte("panic"), Value{}), addr, OpSet, ErrInternal)

	cs, ss := c.Stats(), s.Stats()
	// 5 sets, 3 GetMany, 1 Remove, 1 Clear; then 5 failing writes and 1 failing GetMany.
	if cs.Requests != 16 || cs.Errors != 6 || cs.Dials != 1 {
		t.Errorf("client stats %+v", cs)
	}
	if ss.Requests != 16 || ss.OK != 10 || ss.UnknownCache != 4 || ss.Internal != 2 || ss.Panics != 1 ||
		ss.ByOp[OpSet] != 7 || ss.ByOp[OpGetMany] != 4 || ss.ByOp[OpRemove] != 2 || ss.ByOp[OpClear] != 3 ||
		ss.ByOp[OpGet] != 0 {
		t.Errorf("server stats %+v", ss)
	}
	if ss.BytesIn != cs.BytesSent || ss.BytesOut != cs.BytesReceived {
		t.Errorf("bytes: client %+v, server %+v", cs, ss)
	}
}

// postFrame POSTs a request frame to the server at addr and parses the response frame.
func postFrame(t testing.TB, addr string, frame []byte) (Response, []byte) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Post("http://"+addr+DefaultBasePath, ContentType, bytes.NewReader(frame))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("POST: %s %v", resp.Status, err)
	}
	r, err := ParseResponse(body, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return r, body
}

// TestOpsPOST sends every op as a plain POST.
func TestOpsPOST(t *testing.T) {
	b := newOpsBackend()
	s, addr := startServer(t, b)
	exp := int64(1767225600000000000)
	v := Compress(compressible(4<<10), 0)
	v.Expires = exp
	for _, req := range []Request{
		{Op: OpSet, Cache: "c", Key: []byte("a"), Value: v},
		{Op: OpSet, Cache: "c", Key: []byte("b"), Value: Value{Data: []byte("bee")}},
	} {
		if r, body := postFrame(t, addr, AppendRequest(nil, &req)); r.Status != StatusOK || len(body) != 5 {
			t.Fatalf("Set: %+v, %x", r, body)
		}
	}
	r, _ := postFrame(t, addr, AppendRequest(nil, &Request{Op: OpGetMany, Cache: "c", Keys: keysOf("a", "x", "b")}))
	if r.Status != StatusOK || r.Value.Compressed || r.Value.Expires != 0 || r.Msg != "" {
		t.Fatalf("GetMany: %+v", r)
	}
	rs, err := ParseBatch(r.Value.Data, 3, Limits{})
	if err != nil || !sameValue(rs[0].Value, v) || StatusOf(rs[1].Err) != StatusNotFound || string(rs[2].Value.Data) != "bee" {
		t.Fatalf("batch %+v, %v", rs, err)
	}
	if r, _ := postFrame(t, addr, AppendRequest(nil, &Request{Op: OpRemove, Cache: "c", Keys: keysOf("a")})); r.Status != StatusOK {
		t.Fatalf("Remove: %+v", r)
	}
	if r, _ := postFrame(t, addr, AppendRequest(nil, &Request{Op: OpClear, Cache: "c", Generation: 7})); r.Status != StatusOK {
		t.Fatalf("Clear: %+v", r)
	}
	if r, _ := postFrame(t, addr, AppendRequest(nil, &Request{Op: OpClear, Cache: "c"})); r.Status != StatusBadRequest {
		t.Fatalf("Clear of generation 0: %+v", r)
	}
	b.omu.Lock()
	defer b.omu.Unlock()
	if len(b.sets) != 2 || !sameValue(b.sets[0].v, v) || !reflect.DeepEqual(b.removes, [][]string{{"a"}}) ||
		!slices.Equal(b.clears, []clearCall{{"c", 7}}) {
		t.Fatalf("backend got sets %v removes %q clears %v", len(b.sets), b.removes, b.clears)
	}
	if st := s.Stats(); st.Requests != 6 || st.ByOp[OpSet] != 2 || st.ByOp[OpGetMany] != 1 || st.ByOp[OpClear] != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestOpsRefusedWithoutBackend: a Backend without GetMany or the writes gets those ops refused.
func TestOpsRefusedWithoutBackend(t *testing.T) {
	b := newMapBackend()
	b.set("k", Value{Data: []byte("v")})
	s, addr := startServer(t, b)
	c := newClient(t)
	ctx := context.Background()
	_, err := c.GetMany(ctx, addr, "c", keysOf("k"))
	pe := checkOpErr(t, err, addr, OpGetMany, ErrBadRequest)
	if pe.Status != StatusBadRequest || !strings.Contains(pe.Msg, "does not answer getmany") {
		t.Fatalf("%+v", pe)
	}
	checkOpErr(t, c.Set(ctx, addr, "c", []byte("k"), Value{}), addr, OpSet, ErrBadRequest)
	checkOpErr(t, c.Remove(ctx, addr, "c", keysOf("k")), addr, OpRemove, ErrBadRequest)
	pe = checkOpErr(t, c.Clear(ctx, addr, "c", 1), addr, OpClear, ErrBadRequest)
	if !strings.Contains(pe.Msg, "does not answer clear") {
		t.Fatalf("%+v", pe)
	}
	mustGet(t, c, addr, "k")
	if st := c.Stats(); st.Dials != 1 {
		t.Fatalf("refusals cost the connection: %+v", st)
	}
	if b.calls != 1 {
		t.Fatalf("%d calls of Get", b.calls)
	}
	if st := s.Stats(); st.BadRequest != 4 || st.OK != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestGetManyEntries covers the statuses of a batch's entries and of the whole reply.
func TestGetManyEntries(t *testing.T) {
	b := newOpsBackend()
	b.set("ok", Value{Data: []byte("v")})
	b.set("big", Value{Data: make([]byte, 2000)})
	b.set("bomb", Compress(make([]byte, 1<<20), 1))
	b.set("badc", Value{Data: []byte{0xff}, Compressed: true})
	b.errs["internal"] = errors.New("database down")
	b.errs["notfound"] = fmt.Errorf("user 7: %w", ErrNotFound)
	b.errs["overloaded"] = ErrOverloaded
	b.errs["long"] = errors.New(strings.Repeat("é", 3000))
	_, addr := startServer(t, b, WithServerLimits(Limits{MaxValueBytes: 1000}))
	c := newClient(t)
	ctx := context.Background()
	keys := keysOf("ok", "big", "bomb", "badc", "internal", "notfound", "overloaded", "long", "missing")
	rs, err := c.GetMany(ctx, addr, "c", keys)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		err    error
		status Status
		msg    string
	}{
		{nil, 0, ""},
		{ErrTooLarge, StatusTooLarge, "value of 2000 bytes over the limit of 1000"},
		{ErrTooLarge, StatusTooLarge, "value of 1048576 bytes over the limit of 1000"},
		{ErrInternal, StatusInternal, "backend returned a malformed compressed value"},
		{ErrInternal, StatusInternal, "database down"},
		{ErrNotFound, StatusNotFound, ""},
		{ErrOverloaded, StatusOverloaded, "peer: overloaded"},
		{ErrInternal, StatusInternal, ""},
		{ErrNotFound, StatusNotFound, ""},
	}
	for i, w := range want {
		if w.err == nil {
			if rs[i].Err != nil || string(rs[i].Value.Data) != "v" {
				t.Fatalf("%s: %+v", keys[i], rs[i])
			}
			continue
		}
		pe := checkOpErr(t, rs[i].Err, addr, OpGetMany, w.err)
		if pe.Status != w.status || (w.msg != "" && pe.Msg != w.msg) {
			t.Errorf("%s: status %v msg %q, want %v %q", keys[i], pe.Status, pe.Msg, w.status, w.msg)
		}
		if rs[i].Value.Data != nil {
			t.Errorf("%s: data with an error", keys[i])
		}
	}
	if pe := rs[7].Err.(*Error); len(pe.Msg) > MaxMessageBytes || !strings.HasPrefix(pe.Msg, "éé") {
		t.Errorf("long message of %d bytes", len(pe.Msg))
	}

	// Failures of the whole request.
	_, err = c.GetMany(ctx, addr, "c", keysOf("ok", "panic"))
	pe := checkOpErr(t, err, addr, OpGetMany, ErrInternal)
	if pe.Msg != "backend panicked: batch bug" {
		t.Fatalf("%+v", pe)
	}
	b.batchHook = func(keys [][]byte) ([]Result, error) { return make([]Result, len(keys)+1), nil }
	_, err = c.GetMany(ctx, addr, "c", keysOf("a", "b"))
	pe = checkOpErr(t, err, addr, OpGetMany, ErrInternal)
	if pe.Msg != "backend returned 3 results for 2 keys" {
		t.Fatalf("%+v", pe)
	}
	b.batchHook = func(keys [][]byte) ([]Result, error) { return nil, nil }
	_, err = c.GetMany(ctx, addr, "c", keysOf("a"))
	checkOpErr(t, err, addr, OpGetMany, ErrInternal)
	b.batchHook = func(keys [][]byte) ([]Result, error) { return nil, ErrOverloaded }
	_, err = c.GetMany(ctx, addr, "c", keysOf("a"))
	checkOpErr(t, err, addr, OpGetMany, ErrOverloaded)
	if st := c.Stats(); st.Dials != 1 || st.Errors != 4 {
		t.Fatalf("stats %+v", st)
	}
}

// TestGetManyReplyFull: entries that do not fit in the server's reply frame come back as
// ErrOverloaded, and the ones before them intact.
func TestGetManyReplyFull(t *testing.T) {
	b := newOpsBackend()
	for i := range 5 {
		b.set(fmt.Sprint("k", i), Value{Data: bytes.Repeat([]byte{byte('a' + i)}, 3000)})
	}
	s, addr := startServer(t, b, WithServerLimits(Limits{MaxValueBytes: 4000, MaxFrameBytes: 10000}))
	c := newClient(t)
	ctx := context.Background()
	keys := keysOf("k0", "k1", "k2", "k3", "missing", "k4")
	rs, err := c.GetMany(ctx, addr, "c", keys)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if rs[i].Err != nil || !bytes.Equal(rs[i].Value.Data, bytes.Repeat([]byte{byte('a' + i)}, 3000)) {
			t.Fatalf("entry %d: %v", i, rs[i].Err)
		}
	}
	for i := 3; i < len(keys); i++ { // the missing key too: not looked at once the reply is full
		pe := checkOpErr(t, rs[i].Err, addr, OpGetMany, ErrOverloaded)
		if pe.Msg != batchFullMsg {
			t.Fatalf("entry %d: %v", i, pe)
		}
	}
	// Asking again for the rest.
	rs, err = c.GetMany(ctx, addr, "c", keys[3:])
	if err != nil || rs[0].Err != nil || StatusOf(rs[1].Err) != StatusNotFound || rs[2].Err != nil {
		t.Fatalf("%+v, %v", rs, err)
	}
	if st := s.Stats(); st.Overloaded != 0 || st.OK != 2 {
		t.Fatalf("stats %+v", st)
	}

	// A frame limit that even a reply of "full" entries exceeds: the whole request is refused.
	_, addr2 := startServer(t, b, WithServerLimits(Limits{MaxFrameBytes: 100}))
	_, err = c.GetMany(ctx, addr2, "c", keysOf("1", "2", "3", "4"))
	checkOpErr(t, err, addr2, OpGetMany, ErrTooLarge)
}

// TestGetManyEntryOverClientLimit: an entry over the client's limit fails alone, and the
// connection stays in use.
func TestGetManyEntryOverClientLimit(t *testing.T) {
	b := newOpsBackend()
	b.set("small", Value{Data: []byte("s")})
	b.set("big", Value{Data: make([]byte, 2000)})
	b.set("bomb", Compress(make([]byte, 1<<20), 1))
	_, addr := startServer(t, b)
	c := newClient(t, WithClientLimits(Limits{MaxValueBytes: 1000}))
	rs, err := c.GetMany(context.Background(), addr, "c", keysOf("big", "small", "bomb", "small"))
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 2} {
		pe := checkOpErr(t, rs[i].Err, addr, OpGetMany, ErrTooLarge)
		if pe.Status != StatusTooLarge || rs[i].Value.Data != nil {
			t.Fatalf("entry %d: %+v", i, rs[i])
		}
	}
	if rs[1].Err != nil || rs[3].Err != nil || string(rs[3].Value.Data) != "s" {
		t.Fatalf("%+v", rs)
	}
	mustGet(t, c, addr, "small")
	if st := c.Stats(); st.Dials != 1 || st.Errors != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestOpsClientSideLimits: requests over the client's limits are refused before sending.
func TestOpsClientSideLimits(t *testing.T) {
	c := newClient(t, WithClientLimits(Limits{MaxKeyBytes: 4, MaxValueBytes: 100, MaxBatchKeys: 3}))
	ctx := context.Background()
	const addr = "127.0.0.1:1" // never dialed
	cases := []struct {
		name string
		op   Op
		err  error
		want error
	}{
		{"getmany no keys", OpGetMany, func() error { _, err := c.GetMany(ctx, addr, "c", nil); return err }(), ErrBadRequest},
		{"getmany too many keys", OpGetMany, func() error {
			_, err := c.GetMany(ctx, addr, "c", keysOf("a", "b", "c", "d"))
			return err
		}(), ErrBadRequest},
		{"getmany long key", OpGetMany, func() error { _, err := c.GetMany(ctx, addr, "c", keysOf("a", "bbbbb")); return err }(), ErrBadRequest},
		{"getmany no cache", OpGetMany, func() error { _, err := c.GetMany(ctx, addr, "", keysOf("a")); return err }(), ErrBadRequest},
		{"peekmany no keys", OpPeekMany, func() error { _, err := c.PeekMany(ctx, addr, "c", nil); return err }(), ErrBadRequest},
		{"peekmany too many keys", OpPeekMany, func() error {
			_, err := c.PeekMany(ctx, addr, "c", keysOf("a", "b", "c", "d"))
			return err
		}(), ErrBadRequest},
		{"peekmany long key", OpPeekMany, func() error { _, err := c.PeekMany(ctx, addr, "c", keysOf("a", "bbbbb")); return err }(), ErrBadRequest},
		{"peekmany no cache", OpPeekMany, func() error { _, err := c.PeekMany(ctx, addr, "", keysOf("a")); return err }(), ErrBadRequest},
		{"remove no keys", OpRemove, c.Remove(ctx, addr, "c", [][]byte{}), ErrBadRequest},
		{"remove too many keys", OpRemove, c.Remove(ctx, addr, "c", keysOf("a", "b", "c", "d")), ErrBadRequest},
		{"remove long key", OpRemove, c.Remove(ctx, addr, "c", keysOf("bbbbb")), ErrBadRequest},
		{"set long key", OpSet, c.Set(ctx, addr, "c", []byte("bbbbb"), Value{}), ErrBadRequest},
		{"set big value", OpSet, c.Set(ctx, addr, "c", []byte("k"), Value{Data: make([]byte, 101)}), ErrTooLarge},
		{"set bomb", OpSet, c.Set(ctx, addr, "c", []byte("k"), Compress(make([]byte, 1000), 1)), ErrTooLarge},
		{"set bad compressed", OpSet, c.Set(ctx, addr, "c", []byte("k"), Value{Data: []byte{0xff}, Compressed: true}), ErrBadRequest},
		{"clear generation 0", OpClear, c.Clear(ctx, addr, "c", 0), ErrBadRequest},
		{"clear no cache", OpClear, c.Clear(ctx, addr, "", 1), ErrBadRequest},
	}
	for _, tc := range cases {
		checkOpErr(t, tc.err, addr, tc.op, tc.want) // refused here: the Stats below show nothing was sent
	}
	if st := c.Stats(); st.Requests != 0 || st.Dials != 0 {
		t.Fatalf("refused requests reached the network: %+v", st)
	}
}

// TestOpsServerLimits: the server accepts the largest valid request of each op and refuses what
// is over its limits.
func TestOpsServerLimits(t *testing.T) {
	b := newOpsBackend()
	lim := Limits{MaxKeyBytes: 64, MaxValueBytes: 3 << 20, MaxBatchKeys: 100}
	s, addr := startServer(t, b, WithServerLimits(lim))
	c := newClient(t) // default limits: over the server's
	ctx := context.Background()

	// A Set of MaxValueBytes (a frame over 1 MiB, read stepwise), then one byte more.
	big := random(lim.MaxValueBytes)
	if err := c.Set(ctx, addr, "c", bytes.Repeat([]byte("k"), 64), Value{Data: big}); err != nil {
		t.Fatal(err)
	}
	err := c.Set(ctx, addr, "c", []byte("k"), Value{Data: random(lim.MaxValueBytes + 1)})
	pe := checkOpErr(t, err, addr, OpSet, ErrTooLarge)
	if pe.Status != StatusTooLarge {
		t.Fatalf("%+v", pe)
	}
	err = c.Set(ctx, addr, "c", []byte("k"), Compress(make([]byte, lim.MaxValueBytes+1), 1))
	pe = checkOpErr(t, err, addr, OpSet, ErrTooLarge)
	if pe.Status != StatusTooLarge || !strings.Contains(pe.Msg, "inflates") {
		t.Fatalf("%+v", pe)
	}
	// GetMany and Remove of MaxBatchKeys keys of MaxKeyBytes, then one key more.
	keys := make([][]byte, lim.MaxBatchKeys)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "%064d", i)
	}
	if _, err := c.GetMany(ctx, addr, "c", keys); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(ctx, addr, "c", keys); err != nil {
		t.Fatal(err)
	}
	_, err = c.GetMany(ctx, addr, "c", append(keys, []byte("k")))
	checkOpErr(t, err, addr, OpGetMany, ErrBadRequest)
	checkOpErr(t, c.Remove(ctx, addr, "c", append(keys, []byte("k"))), addr, OpRemove, ErrBadRequest)
	if st := s.Stats(); st.TooLarge != 2 || st.BadRequest != 2 || st.OK != 3 {
		t.Fatalf("stats %+v", st)
	}
	b.omu.Lock()
	defer b.omu.Unlock()
	if len(b.sets) != 1 || !bytes.Equal(b.sets[0].v.Data, big) {
		t.Fatal("the large value did not arrive intact")
	}
}

// TestBatchCountsAsOneRequest: WithMaxConcurrent counts a batch as one request.
func TestBatchCountsAsOneRequest(t *testing.T) {
	b := newOpsBackend()
	b.set("k", Value{Data: []byte("v")})
	release := make(chan struct{})
	entered := make(chan struct{})
	b.hook = func(ctx context.Context, key string) {
		if key == "slow" {
			close(entered)
			<-release
		}
	}
	s, addr := startServer(t, b, WithMaxConcurrent(1))
	c := newClient(t)
	ctx := context.Background()
	keys := make([][]byte, 50)
	for i := range keys {
		keys[i] = []byte("k")
	}
	rs, err := c.GetMany(ctx, addr, "c", keys)
	if err != nil || len(rs) != 50 || rs[49].Err != nil {
		t.Fatalf("%v", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.Get(ctx, addr, "c", []byte("slow"))
		done <- err
	}()
	<-entered
	_, err = c.GetMany(ctx, addr, "c", keys)
	checkOpErr(t, err, addr, OpGetMany, ErrOverloaded)
	checkOpErr(t, c.Set(ctx, addr, "c", []byte("k"), Value{}), addr, OpSet, ErrOverloaded)
	close(release)
	if err := <-done; StatusOf(err) != StatusNotFound {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Overloaded != 2 || st.Requests != 4 {
		t.Fatalf("stats %+v", st)
	}
}

// TestGetManyCancel: a GetMany whose context ends while the peer works on it returns at once and
// its connection is not reused.
func TestGetManyCancel(t *testing.T) {
	b := newOpsBackend()
	entered := make(chan struct{}, 2)
	b.batchHook = func(keys [][]byte) ([]Result, error) {
		entered <- struct{}{}
		<-b.release
		return make([]Result, len(keys)), nil
	}
	b.release = make(chan struct{})
	_, addr := startServer(t, b)
	defer close(b.release)
	c := framing1Client(t)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-entered
		cancel()
	}()
	_, err := c.GetMany(ctx, addr, "c", keysOf("a", "b"))
	checkOpErr(t, err, addr, OpGetMany, ErrUnavailable)
	if !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if st := c.Stats(); st.OpenConns != 0 || st.Errors != 1 {
		t.Fatalf("stats %+v", st)
	}
	// A per-request timeout.
	c2 := newClient(t, WithTimeout(100*time.Millisecond))
	_, err = c2.GetMany(context.Background(), addr, "c", keysOf("a"))
	checkOpErr(t, err, addr, OpGetMany, ErrUnavailable)
}

// TestGetManyPipelinedManyConns pipelines large and small GetMany requests (and Gets) on several
// connections at once, under -race: every reply is the one asked for, though large batch bodies
// go through a pool shared by the connections.
func TestGetManyPipelinedManyConns(t *testing.T) {
	b := newOpsBackend()
	const nkeys = 64
	keys := make([][]byte, nkeys)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "k%d", i)
		b.set(string(keys[i]), Value{Data: bytes.Repeat([]byte{byte(i)}, 2<<10)})
	}
	_, addr := startServer(t, b)
	frame := func(r Request) []byte {
		f := AppendRequest(nil, &r)
		return append(binary.BigEndian.AppendUint32(nil, uint32(len(f))), f...)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		nc, br := rawUpgrade(t, addr)
		// Request i asks for keys[j:j+n] with n = 64 (a body over keepBuffer), 3 or 1 (a Get).
		span := func(i int) (int, int) {
			j := (i*7 + g) % nkeys
			n := []int{nkeys - j, 3, 1}[i%3]
			return j, min(n, nkeys-j)
		}
		const reqs = 60
		wg.Go(func() {
			var batch []byte
			for i := range reqs {
				j, n := span(i)
				if i%3 == 2 {
					batch = append(batch, frame(Request{Op: OpGet, Cache: "c", Key: keys[j]})...)
				} else {
					batch = append(batch, frame(Request{Op: OpGetMany, Cache: "c", Keys: keys[j : j+n]})...)
				}
				if i%4 == 3 {
					if _, err := nc.Write(batch); err != nil {
						t.Error(err)
						return
					}
					batch = batch[:0]
				}
			}
			if _, err := nc.Write(batch); err != nil {
				t.Error(err)
			}
		})
		wg.Go(func() {
			for i := range reqs {
				j, n := span(i)
				r := readReply(t, br)
				if r.Status != StatusOK {
					t.Errorf("conn %d reply %d: %+v", g, i, r)
					return
				}
				if i%3 == 2 {
					if !bytes.Equal(r.Value.Data, bytes.Repeat([]byte{byte(j)}, 2<<10)) {
						t.Errorf("conn %d reply %d: wrong value", g, i)
						return
					}
					continue
				}
				rs, err := ParseBatch(r.Value.Data, n, Limits{})
				if err != nil {
					t.Errorf("conn %d reply %d: %v", g, i, err)
					return
				}
				for k, res := range rs {
					if res.Err != nil || !bytes.Equal(res.Value.Data, bytes.Repeat([]byte{byte(j + k)}, 2<<10)) {
						t.Errorf("conn %d reply %d entry %d: wrong value (%v)", g, i, k, res.Err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}
