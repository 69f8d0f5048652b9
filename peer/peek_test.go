package peer

import (
	"context"
	"errors"
	"testing"
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
	if !errors.Is(err, ErrNotFound) || !errors.As(err, &pe) || pe.Op != OpPeek {
		t.Fatalf("Peek of an absent key: %v", err)
	}
	if _, err := c.Peek(ctx, addr, "other", []byte("k")); !errors.Is(err, ErrUnknownCache) {
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
	if _, err := c.Peek(context.Background(), addr, "c", []byte("k")); !errors.Is(err, ErrBadRequest) {
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
