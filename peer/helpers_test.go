package peer

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// mapBackend serves the values of its map under the cache name "c"; keys starting with "err:"
// return the error in errs of that key.
type mapBackend struct {
	mu     sync.Mutex
	values map[string]Value
	errs   map[string]error
	calls  int
	hook   func(ctx context.Context, key string) // called first, if set
}

func newMapBackend() *mapBackend {
	return &mapBackend{values: map[string]Value{}, errs: map[string]error{}}
}

func (b *mapBackend) set(key string, v Value) {
	b.mu.Lock()
	b.values[key] = v
	b.mu.Unlock()
}

func (b *mapBackend) Get(ctx context.Context, cache string, key []byte) (Value, error) {
	b.mu.Lock()
	b.calls++
	hook := b.hook
	b.mu.Unlock()
	if hook != nil {
		hook(ctx, string(key))
	}
	if cache != "c" {
		return Value{}, ErrUnknownCache
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err, ok := b.errs[string(key)]; ok {
		return Value{}, err
	}
	v, ok := b.values[string(key)]
	if !ok {
		return Value{}, ErrNotFound
	}
	return v, nil
}

var quietLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

// startServer serves b on a loopback listener and returns the server and its address; the
// server is closed at the end of the test.
func startServer(t testing.TB, b Backend, opts ...ServerOption) (*Server, string) {
	t.Helper()
	opts = append([]ServerOption{WithServerLogger(quietLogger)}, opts...)
	s, err := NewServer(b, opts...)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
	})
	return s, l.Addr().String()
}

func newClient(t testing.TB, opts ...ClientOption) *Client {
	t.Helper()
	c, err := NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// framing1Client is a client that sends one request per connection on framing 1, for the tests
// of that exchange (the default client multiplexes).
func framing1Client(t testing.TB, opts ...ClientOption) *Client {
	t.Helper()
	return newClient(t, append([]ClientOption{WithPipelining(0)}, opts...)...)
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
