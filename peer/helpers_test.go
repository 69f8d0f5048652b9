package peer

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/typedcache/groupcache/internal/wire"
)

// testBackend is a Backend over a map of values by cache and key. Its hook, when set, runs before
// every operation (a test makes it block, fail or panic): a non-nil error answers the operation.
// With inline, GetInline answers the keys the map holds.
type testBackend struct {
	inline bool
	hook   func(ctx context.Context, op Op, key []byte) error
	ops    [wire.MaxOp + 1]atomic.Int64 // operations the hook saw, by op
	inl    atomic.Int64                 // GetInline answers

	mu     sync.Mutex
	values map[string]Value
	gens   []uint64 // the generations Clear adopted
}

func newBackend() *testBackend { return &testBackend{values: make(map[string]Value)} }

var errNotHeld = &Error{Status: StatusNotFound}

func (b *testBackend) set(cache, key string, v Value) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.values[cache+"\x00"+key] = v
}

func (b *testBackend) get(cache string, key []byte) (Value, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	v, ok := b.values[cache+"\x00"+string(key)]
	if !ok {
		return Value{}, errNotHeld
	}
	return v, nil
}

func (b *testBackend) run(ctx context.Context, op Op, key []byte) error {
	b.ops[op].Add(1)
	if b.hook != nil {
		return b.hook(ctx, op, key)
	}
	return nil
}

func (b *testBackend) Get(ctx context.Context, cache string, key []byte) (Value, error) {
	if err := b.run(ctx, OpGet, key); err != nil {
		return Value{}, err
	}
	return b.get(cache, key)
}

func (b *testBackend) GetInline(cache string, key []byte) (Value, bool, error) {
	if !b.inline {
		return Value{}, false, nil
	}
	v, err := b.get(cache, key)
	if err != nil {
		return Value{}, false, nil
	}
	b.inl.Add(1)
	return v, true, nil
}

func (b *testBackend) Peek(ctx context.Context, cache string, key []byte) (Value, error) {
	if err := b.run(ctx, OpPeek, key); err != nil {
		return Value{}, err
	}
	return b.get(cache, key)
}

func (b *testBackend) many(ctx context.Context, op Op, cache string, keys [][]byte) ([]Result, error) {
	if err := b.run(ctx, op, nil); err != nil {
		return nil, err
	}
	rs := make([]Result, len(keys))
	for i, k := range keys {
		rs[i].Value, rs[i].Err = b.get(cache, k)
	}
	return rs, nil
}

func (b *testBackend) GetMany(ctx context.Context, cache string, keys [][]byte) ([]Result, error) {
	return b.many(ctx, OpGetMany, cache, keys)
}

func (b *testBackend) PeekMany(ctx context.Context, cache string, keys [][]byte) ([]Result, error) {
	return b.many(ctx, OpPeekMany, cache, keys)
}

func (b *testBackend) Set(ctx context.Context, cache string, key []byte, v Value) error {
	if err := b.run(ctx, OpSet, key); err != nil {
		return err
	}
	v.Data = append([]byte(nil), v.Data...) // the frame's memory is reused
	b.set(cache, string(key), v)
	return nil
}

// Offer stores v under key unless the backend holds a value for it already.
func (b *testBackend) Offer(ctx context.Context, cache string, key []byte, v Value) error {
	if err := b.run(ctx, OpOffer, key); err != nil {
		return err
	}
	b.mu.Lock()
	_, held := b.values[cache+"\x00"+string(key)]
	b.mu.Unlock()
	if !held {
		v.Data = append([]byte(nil), v.Data...)
		b.set(cache, string(key), v)
	}
	return nil
}

func (b *testBackend) Remove(ctx context.Context, cache string, keys [][]byte) error {
	if err := b.run(ctx, OpRemove, nil); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, k := range keys {
		delete(b.values, cache+"\x00"+string(k))
	}
	return nil
}

func (b *testBackend) Clear(ctx context.Context, cache string, gen uint64) error {
	if err := b.run(ctx, OpClear, nil); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.gens = append(b.gens, gen)
	for k := range b.values {
		if strings.HasPrefix(k, cache+"\x00") {
			delete(b.values, k)
		}
	}
	return nil
}

// startServer serves b on a loopback port until the end of the test.
func startServer(t testing.TB, b Backend, opts ...ServerOption) (*Server, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveOn(t, l, b, opts...), l.Addr().String()
}

// serveOn serves b on l until the end of the test.
func serveOn(t testing.TB, l net.Listener, b Backend, opts ...ServerOption) *Server {
	t.Helper()
	s, err := NewServer(b, append([]ServerOption{WithServerLogger(slog.New(slog.DiscardHandler))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		s.Close()
		srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
	})
	return s
}

// newClient returns a Client closed at the end of the test.
func newClient(t testing.TB, opts ...ClientOption) *Client {
	t.Helper()
	c, err := NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// pipeNet is a network in memory (memPipe) between Clients and one Server, for the tests that run
// in a synctest bubble, where time is fake: a Server serves its listener side, and a Client whose
// dialContext is its dial reaches that Server whatever the address.
type pipeNet struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeNet() *pipeNet { return &pipeNet{conns: make(chan net.Conn), done: make(chan struct{})} }

func (pn *pipeNet) Accept() (net.Conn, error) {
	select {
	case c := <-pn.conns:
		return c, nil
	case <-pn.done:
		return nil, net.ErrClosed
	}
}

func (pn *pipeNet) Close() error {
	pn.once.Do(func() { close(pn.done) })
	return nil
}

func (pn *pipeNet) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }

func (pn *pipeNet) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	client, server := memPipe()
	select {
	case pn.conns <- server:
		return client, nil
	case <-pn.done:
		return nil, &net.OpError{Op: "dial", Err: errors.New("connection refused")}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// pipeClient returns a Client (closed at the end of the test) that reaches pn's Server.
func pipeClient(t testing.TB, pn *pipeNet, opts ...ClientOption) *Client {
	t.Helper()
	c := newClient(t, opts...)
	c.dialContext = pn.dial
	return c
}

// keysOf returns the keys as byte slices.
func keysOf(keys ...string) [][]byte {
	out := make([][]byte, len(keys))
	for i, k := range keys {
		out[i] = []byte(k)
	}
	return out
}

// checkErr fails the test unless err is an *Error of peer and op with want's status (for the
// shorthands of statuses_test.go) or matching want, and returns it.
func checkErr(t testing.TB, err error, peer string, op Op, want error) *Error {
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
	if !strings.HasPrefix(err.Error(), "peer: ") {
		t.Fatalf("message %q", err)
	}
	return pe
}

func sameValue(a, b Value) bool {
	return bytes.Equal(a.Data, b.Data) && a.Compressed == b.Compressed && a.TTL == b.TTL
}

// bombOf returns n zero bytes as one S2 block, which inflates far over MaxInflation times its
// size (Compress sends such a value raw; a hostile peer would not).
func bombOf(n int) Value { return Value{Data: s2.Encode(nil, make([]byte, n)), Compressed: true} }

// random returns n pseudo-random bytes, the same for the same n.
func random(n int) []byte {
	r := rand.New(rand.NewPCG(3, 4))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}
