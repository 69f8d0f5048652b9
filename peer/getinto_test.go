package peer

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestGetInto checks that GetInto reads a value into the memory lent when it fits, into new
// memory when it does not, and keeps a compressed value's bytes as they came, on both framings.
func TestGetInto(t *testing.T) {
	b := newMapBackend()
	small, big := random(1<<10), random(100<<10) // big goes out by writev
	b.set("small", Value{Data: small})
	b.set("big", Value{Data: big})
	b.set("compressed", Compress(compressible(64<<10), 0))
	_, addr := startServer(t, b)
	for name, c := range map[string]*Client{"multiplexed": newClient(t), "framing 1": framing1Client(t)} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			buf := make([]byte, 3, 200<<10)
			for _, k := range []string{"small", "big", "small"} {
				v, err := c.GetInto(ctx, addr, "c", []byte(k), buf)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(v.Data, b.values[k].Data) {
					t.Fatalf("%s: wrong bytes", k)
				}
				if &v.Data[0] != &buf[:1][0] {
					t.Fatalf("%s: the value is not in the memory lent", k)
				}
			}
			// Too small a buffer: new memory, the buffer untouched.
			tiny := make([]byte, 0, 100)
			v, err := c.GetInto(ctx, addr, "c", []byte("small"), tiny)
			if err != nil || !bytes.Equal(v.Data, small) {
				t.Fatalf("into a small buffer: %v", err)
			}
			if &v.Data[0] == &tiny[:1][0] || !bytes.Equal(tiny[:100], make([]byte, 100)) {
				t.Fatal("a value that does not fit was read into the buffer")
			}
			// A compressed value: its compressed bytes, in the buffer; Raw inflates them.
			v, err = c.GetInto(ctx, addr, "c", []byte("compressed"), buf)
			if err != nil || !v.Compressed || &v.Data[0] != &buf[:1][0] {
				t.Fatalf("compressed: %v, compressed=%v", err, v.Compressed)
			}
			if raw, err := v.Raw(0); err != nil || !bytes.Equal(raw, compressible(64<<10)) {
				t.Fatalf("Raw: %v", err)
			}
			// Errors are those of Get.
			if _, err := c.GetInto(ctx, addr, "c", []byte("absent"), buf); err == nil {
				t.Fatal("no error for an absent key")
			} else {
				checkErr(t, err, addr, ErrNotFound)
			}
		})
	}
}

// TestGetIntoConcurrent has many callers share one multiplexed connection, each with its own
// buffer: whoever reads a reply reads it into the buffer of the call it answers.
func TestGetIntoConcurrent(t *testing.T) {
	b := newMapBackend()
	const keys = 32
	for i := range keys {
		b.set(fmt.Sprint(i), Value{Data: random(1<<10 + i*2000)})
	}
	_, addr := startServer(t, b)
	c := newClient(t)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 0, 64<<10)
			for i := range 100 {
				k := fmt.Sprint((g*7 + i) % keys)
				v, err := c.GetInto(context.Background(), addr, "c", []byte(k), buf)
				if err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(v.Data, b.values[k].Data) || &v.Data[0] != &buf[:1][0] {
					errs <- fmt.Errorf("key %s: wrong bytes, or not in the caller's buffer", k)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if st := c.Stats(); st.MuxConns != 1 {
		t.Fatalf("%d multiplexed connections, want 1", st.MuxConns)
	}
}

// TestGetIntoAbandoned checks that the reply to a GetInto whose caller left (its timeout passed)
// is skipped when it comes, not read into the memory the caller lent, and that the connection
// goes on serving.
func TestGetIntoAbandoned(t *testing.T) {
	b := newMapBackend()
	release := make(chan struct{})
	b.hook = func(_ context.Context, key string) {
		if key == "slow" {
			<-release
		}
	}
	b.set("slow", Value{Data: random(32 << 10)})
	b.set("tiny", Value{Data: []byte("t")})
	_, addr := startServer(t, b)
	c := newClient(t)
	lent := bytes.Repeat([]byte{0xa5}, 64<<10)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err := c.GetInto(ctx, addr, "c", []byte("slow"), lent[:0])
	cancel()
	if err == nil {
		t.Fatal("no error past the timeout")
	}
	close(release) // the owner answers now, on the same connection
	buf := make([]byte, 0, 64)
	for c.Stats().BytesReceived < 32<<10 { // until the late reply has been read past
		v, err := c.GetInto(context.Background(), addr, "c", []byte("tiny"), buf)
		if err != nil || string(v.Data) != "t" {
			t.Fatalf("after the abandoned request: %q, %v", v.Data, err)
		}
	}
	if !bytes.Equal(lent, bytes.Repeat([]byte{0xa5}, 64<<10)) {
		t.Fatal("the abandoned reply was read into the memory lent")
	}
	if st := c.Stats(); st.MuxConns != 1 || st.Dials != 1 {
		t.Fatalf("the connection was not kept: %+v", st)
	}
}
