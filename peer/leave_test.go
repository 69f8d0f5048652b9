package peer

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

// recorder is an Observer that passes on what it is told.
type recorder struct {
	leaving  chan string
	misnamed chan [2]string
}

func newRecorder() *recorder {
	return &recorder{leaving: make(chan string, 8), misnamed: make(chan [2]string, 8)}
}

func (r *recorder) Leaving(addr string)         { r.leaving <- addr }
func (r *recorder) Misnamed(addr, claim string) { r.misnamed <- [2]string{addr, claim} }

// slowBackend returns a backend whose Gets of "slow" wait for release or their context, and the
// channel on which each such Get says it began.
func slowBackend(release chan struct{}) (*testBackend, chan struct{}) {
	b := newBackend()
	b.set("c", "slow", Value{Data: []byte("done")})
	b.set("c", "k", Value{Data: []byte("v")})
	began := make(chan struct{}, 16)
	b.hook = func(ctx context.Context, op Op, key []byte) error {
		if op != OpGet || string(key) != "slow" {
			return nil
		}
		began <- struct{}{}
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return b, began
}

// TestShutdownNotice: a server that shuts down tells its clients at once, refuses what comes
// next, and answers the requests in flight before it closes.
func TestShutdownNotice(t *testing.T) {
	release := make(chan struct{})
	b, began := slowBackend(release)
	s, addr := startServer(t, b)
	rec := newRecorder()
	c := newClient(t, WithObserver(rec))
	slow := make(chan error, 1)
	go func() {
		v, err := c.Get(context.Background(), addr, "c", []byte("slow"))
		if err == nil && string(v.Data) != "done" {
			err = errors.New("value " + string(v.Data))
		}
		slow <- err
	}()
	<-began
	done := make(chan error, 1)
	go func() { done <- s.Shutdown(context.Background()) }()
	if got := <-rec.leaving; got != addr {
		t.Fatalf("Leaving(%q), want %q", got, addr)
	}
	if _, err := c.Get(context.Background(), addr, "c", []byte("k")); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Get after the notice = %v, want ErrUnavailable (a new connection refused)", err)
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	default:
	}
	close(release)
	if err := <-slow; err != nil {
		t.Fatalf("the Get in flight: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
}

// TestShutdownCutShort: requests still in flight when Shutdown's ctx ends, or at Close, fail as
// unavailable or leaving, never as the server's internal error: the caller may load the key.
func TestShutdownCutShort(t *testing.T) {
	for _, how := range []string{"shutdown", "close"} {
		t.Run(how, func(t *testing.T) {
			b, began := slowBackend(nil)
			s, addr := startServer(t, b)
			c := newClient(t)
			errs := make(chan error, 8)
			for range 8 {
				go func() {
					_, err := c.Get(context.Background(), addr, "c", []byte("slow"))
					errs <- err
				}()
				<-began
			}
			if how == "close" {
				s.Close()
			} else {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
				defer cancel()
				if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("Shutdown = %v", err)
				}
			}
			for range 8 {
				if err := <-errs; !errors.Is(err, ErrUnavailable) && StatusOf(err) != StatusLeaving {
					t.Errorf("Get cut short: %v", err)
				}
			}
		})
	}
}

// TestServerNamesItself: the answer to the upgrade names the server (WithSelf); a client that
// reached it under another address tells its Observer, once per connection.
func TestServerNamesItself(t *testing.T) {
	b := newBackend()
	b.set("c", "k", Value{Data: []byte("v")})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	serveOn(t, l, b, WithSelf("cache-1.example:7"))
	rec := newRecorder()
	c := newClient(t, WithObserver(rec))
	for range 2 {
		if _, err := c.Get(context.Background(), addr, "c", []byte("k")); err != nil {
			t.Fatal(err)
		}
	}
	if got := <-rec.misnamed; got != [2]string{addr, "cache-1.example:7"} {
		t.Fatalf("Misnamed%q", got)
	}
	if len(rec.misnamed) != 0 {
		t.Fatal("told twice about one connection")
	}

	l2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveOn(t, l2, b, WithSelf(l2.Addr().String()))
	if _, err := c.Get(context.Background(), l2.Addr().String(), "c", []byte("k")); err != nil {
		t.Fatal(err)
	}
	if len(rec.misnamed) != 0 {
		t.Fatalf("Misnamed%q for a server that names itself as the client does", <-rec.misnamed)
	}
}
