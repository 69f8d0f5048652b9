package peer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingListener counts the Write calls (writev included, through net.Buffers' fallback to
// Write) made on the connections it accepts.
type countingListener struct {
	net.Listener
	writes atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: nc, writes: &l.writes}, nil
}

type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c *countingConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

func startCountingServer(t *testing.T, b Backend) (*countingListener, string) {
	t.Helper()
	s, err := NewServer(b, WithServerLogger(quietLogger))
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: l}
	done := make(chan error, 1)
	go func() { done <- s.Serve(cl) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
	})
	return cl, l.Addr().String()
}

func requestFrame(key string) []byte {
	f := AppendRequest(nil, &Request{Op: OpGet, Cache: "c", Key: []byte(key)})
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(f))), f...)
}

// waitWrites waits until the listener's connections have made want writes.
func waitWrites(t *testing.T, l *countingListener, want int64) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); l.writes.Load() < want && time.Now().Before(end); {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // and no more
	if got := l.writes.Load(); got != want {
		t.Fatalf("%d writes, want %d", got, want)
	}
}

// TestServerCoalescesPipelinedReplies sends several requests in one write: the server answers
// them in order, in one write, and the value of a large reply still goes out from where it lies.
func TestServerCoalescesPipelinedReplies(t *testing.T) {
	b := newMapBackend()
	const n = 20
	for i := range n {
		b.set(fmt.Sprint("k", i), Value{Data: []byte(fmt.Sprint("value ", i))})
	}
	big := bytes.Repeat([]byte("x"), smallReply+1)
	b.set("big", Value{Data: big})
	l, addr := startCountingServer(t, b)
	nc, br := rawUpgrade(t, addr)
	waitWrites(t, l, 1) // the 101 answer

	// n requests (and a missing key) in one write: one write of n+1 replies.
	var batch []byte
	for i := range n {
		batch = append(batch, requestFrame(fmt.Sprint("k", i))...)
	}
	batch = append(batch, requestFrame("missing")...)
	if _, err := nc.Write(batch); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if r := readReply(t, br); r.Status != StatusOK || string(r.Value.Data) != fmt.Sprint("value ", i) {
			t.Fatalf("reply %d: %+v", i, r)
		}
	}
	if r := readReply(t, br); r.Status != StatusNotFound {
		t.Fatalf("last reply: %+v", r)
	}
	waitWrites(t, l, 2)

	// Small replies ahead of a large one join its writev.
	batch = append(append(requestFrame("k1"), requestFrame("big")...), requestFrame("k2")...)
	if _, err := nc.Write(batch); err != nil {
		t.Fatal(err)
	}
	for _, want := range [][]byte{[]byte("value 1"), big, []byte("value 2")} {
		if r := readReply(t, br); r.Status != StatusOK || !bytes.Equal(r.Value.Data, want) {
			t.Fatalf("reply of %d bytes, want %d: %+v", len(r.Value.Data), len(want), r.Status)
		}
	}
	// net.Buffers.WriteTo on a wrapped conn falls back to one Write per buffer: the writev is
	// two writes here, then one for the last reply.
	waitWrites(t, l, 5)

	// A request whose frame is not all there yet does not hold back the reply before it.
	half := requestFrame("k3")
	batch = append(requestFrame("k4"), half[:len(half)/2]...)
	if _, err := nc.Write(batch); err != nil {
		t.Fatal(err)
	}
	if r := readReply(t, br); r.Status != StatusOK || string(r.Value.Data) != "value 4" {
		t.Fatalf("reply %+v", r)
	}
	if _, err := nc.Write(half[len(half)/2:]); err != nil {
		t.Fatal(err)
	}
	if r := readReply(t, br); r.Status != StatusOK || string(r.Value.Data) != "value 3" {
		t.Fatalf("reply %+v", r)
	}
	waitWrites(t, l, 7)
}

// TestServerPipelinedManyWriters has many goroutines each pipelining requests on its own
// connection, under -race: every reply is the one asked for, in order.
func TestServerPipelinedManyWriters(t *testing.T) {
	b := newMapBackend()
	for i := range 64 {
		b.set(fmt.Sprint("k", i), Value{Data: []byte(fmt.Sprint("value ", i))})
	}
	_, addr := startServer(t, b)
	var wg sync.WaitGroup
	for g := range 8 {
		nc, br := rawUpgrade(t, addr)
		wg.Add(2)
		go func() {
			defer wg.Done()
			var batch []byte
			for i := range 200 {
				batch = append(batch, requestFrame(fmt.Sprint("k", (i+g)%64))...)
				if i%7 == 6 {
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
		}()
		go func() {
			defer wg.Done()
			for i := range 200 {
				if r := readReply(t, br); r.Status != StatusOK || string(r.Value.Data) != fmt.Sprint("value ", (i+g)%64) {
					t.Errorf("conn %d reply %d: %+v", g, i, r)
					return
				}
			}
		}()
	}
	wg.Wait()
}
