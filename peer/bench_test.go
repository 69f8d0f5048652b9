package peer

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/typedcache/groupcache/internal/wire"
)

// Benchmarks. The loopback figures are meant to be read as ratios within one run:
//
//	go test -run '^$' -bench 'Get|RawTCP' -benchmem -count 5 ./peer/
//
// BenchmarkGet is a Client.Get of a value held by a Server's Backend over loopback TCP;
// BenchmarkRawTCP is the floor: the same exchange (a request frame of the same size, a reply of
// the same payload) between two goroutines over a bare TCP connection with a 4-byte length
// prefix and nothing else. "par16" runs 16 callers at once (16 connections).

var benchSizes = []struct {
	name string
	n    int
}{{"1KiB", 1 << 10}, {"64KiB", 64 << 10}}

const benchCallers = 16

// parallel16 makes b.RunParallel run benchCallers goroutines.
func parallel16(b *testing.B) {
	procs := runtime.GOMAXPROCS(0)
	b.SetParallelism((benchCallers + procs - 1) / procs)
}

// benchRequest is the request both benchmarks send: the key and cache name sizes of a typical Get.
var benchRequest = wire.Request{Op: OpGet, Cache: "profiles", Key: []byte("user:000012345")}

func BenchmarkGet(b *testing.B) {
	for _, sz := range benchSizes {
		_, addr := startServer(b, valueBackend{Value{Data: random(sz.n)}})
		c := newClient(b)
		ctx := context.Background()
		get := func(b *testing.B) {
			v, err := c.Get(ctx, addr, benchRequest.Cache, benchRequest.Key)
			if err != nil || len(v.Data) != sz.n {
				b.Fatal(err)
			}
		}
		b.Run(sz.name+"/serial", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(sz.n))
			for b.Loop() {
				get(b)
			}
		})
		b.Run(sz.name+"/par16", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(sz.n))
			parallel16(b)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					get(b)
				}
			})
		})
		b.Run(sz.name+"/serial-cancelctx", func(b *testing.B) {
			// A context that can be cancelled costs a context.AfterFunc per request.
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			b.ReportAllocs()
			b.SetBytes(int64(sz.n))
			for b.Loop() {
				if _, err := c.Get(ctx, addr, benchRequest.Cache, benchRequest.Key); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// valueBackend serves one value for every key, from memory (GetInline) as a node's hit is.
type valueBackend struct{ v Value }

func (b valueBackend) Get(context.Context, string, []byte) (Value, error)  { return b.v, nil }
func (b valueBackend) GetInline(string, []byte) (Value, bool, error)       { return b.v, true, nil }
func (b valueBackend) Peek(context.Context, string, []byte) (Value, error) { return b.v, nil }
func (b valueBackend) Set(context.Context, string, []byte, Value) error    { return nil }
func (b valueBackend) Offer(context.Context, string, []byte, Value) error  { return nil }
func (b valueBackend) Remove(context.Context, string, [][]byte) error      { return nil }
func (b valueBackend) Clear(context.Context, string, uint64) error         { return nil }
func (b valueBackend) PeekMany(ctx context.Context, cache string, keys [][]byte) ([]Result, error) {
	return b.GetMany(ctx, cache, keys)
}

func (b valueBackend) GetMany(_ context.Context, _ string, keys [][]byte) ([]Result, error) {
	rs := make([]Result, len(keys))
	for i := range rs {
		rs[i].Value = b.v
	}
	return rs, nil
}

// rawServer is the floor: for every length-prefixed request it reads, it writes one
// length-prefixed reply of a fixed payload.
func rawServer(b *testing.B, payload []byte) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	reply := binary.BigEndian.AppendUint32(nil, uint32(len(payload)))
	reply = append(reply, payload...)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, nc)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				br := bufio.NewReaderSize(nc, serverReadBuffer)
				for {
					hdr, err := br.Peek(4)
					if err != nil {
						return
					}
					n := int(binary.BigEndian.Uint32(hdr))
					if _, err := br.Discard(4 + n); err != nil {
						return
					}
					if _, err := nc.Write(reply); err != nil {
						return
					}
				}
			}()
		}
	}()
	b.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, nc := range conns {
			nc.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return l.Addr().String()
}

// rawClient is one connection of the floor.
type rawClient struct {
	nc    net.Conn
	br    *bufio.Reader
	req   []byte
	buf   []byte
	fresh bool // read each reply into new memory, as Client.Get must
}

func newRawClient(b *testing.B, addr string) *rawClient {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	frame := wire.AppendRequest(nil, &benchRequest)
	req := binary.BigEndian.AppendUint32(nil, uint32(len(frame)))
	return &rawClient{nc: nc, br: bufio.NewReaderSize(nc, clientReadBuffer), req: append(req, frame...)}
}

func (c *rawClient) roundTrip() (int, error) {
	if _, err := c.nc.Write(c.req); err != nil {
		return 0, err
	}
	hdr, err := c.br.Peek(4)
	if err != nil {
		return 0, err
	}
	n := int(binary.BigEndian.Uint32(hdr))
	c.br.Discard(4)
	if c.fresh || cap(c.buf) < n {
		c.buf = make([]byte, n)
	}
	_, err = io.ReadFull(c.br, c.buf[:n])
	return n, err
}

func BenchmarkRawTCP(b *testing.B) {
	for _, sz := range benchSizes {
		addr := rawServer(b, random(sz.n))
		b.Run(sz.name+"/serial", func(b *testing.B) {
			c := newRawClient(b, addr)
			defer c.nc.Close()
			b.ReportAllocs()
			b.SetBytes(int64(sz.n))
			for b.Loop() {
				if n, err := c.roundTrip(); err != nil || n != sz.n {
					b.Fatal(err)
				}
			}
		})
		b.Run(sz.name+"/serial-alloc", func(b *testing.B) {
			// The floor plus what Client.Get cannot avoid: the reply lands in new memory, since
			// the returned value must not alias a reused buffer.
			c := newRawClient(b, addr)
			c.fresh = true
			defer c.nc.Close()
			b.ReportAllocs()
			b.SetBytes(int64(sz.n))
			for b.Loop() {
				if n, err := c.roundTrip(); err != nil || n != sz.n {
					b.Fatal(err)
				}
			}
		})
		b.Run(sz.name+"/par16", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(sz.n))
			parallel16(b)
			b.RunParallel(func(pb *testing.PB) {
				c := newRawClient(b, addr)
				defer c.nc.Close()
				for pb.Next() {
					if n, err := c.roundTrip(); err != nil || n != sz.n {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

const benchBatch = 100

// benchKeys returns n keys of the size of benchRequest's.
func benchKeys(n int) [][]byte {
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "user:%09d", i)
	}
	return keys
}

// BenchmarkGetMany compares one Client.GetMany of 100 keys with 100 sequential Client.Get calls,
// against the same server, for values of 1 KiB. An op is 100 values either way.
//
//	go test -run '^$' -bench 'GetMany' -benchmem -count 5 ./peer/
func BenchmarkGetMany(b *testing.B) {
	const size = 1 << 10
	_, addr := startServer(b, valueBackend{Value{Data: random(size)}})
	c := newClient(b)
	ctx := context.Background()
	keys := benchKeys(benchBatch)
	b.Run("getmany100", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(benchBatch * size)
		for b.Loop() {
			rs, err := c.GetMany(ctx, addr, benchRequest.Cache, keys)
			if err != nil || len(rs) != benchBatch || len(rs[benchBatch-1].Value.Data) != size {
				b.Fatal(err)
			}
		}
	})
	b.Run("get100", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(benchBatch * size)
		for b.Loop() {
			for _, k := range keys {
				v, err := c.Get(ctx, addr, benchRequest.Cache, k)
				if err != nil || len(v.Data) != size {
					b.Fatal(err)
				}
			}
		}
	})
}

// BenchmarkSlowRequests measures what slow requests at the peer (a load on a miss, say) cost the
// fast ones: 16 callers ask one server, one request in 50 takes 2 ms in the backend, the others
// are hits answered inline, over 1, 2 or 4 connections per peer. A slow request holds up none of
// the others: the server answers each when it is ready. Reported: the p50 and p99 latency of the
// fast requests, and their throughput.
//
//	go test -run '^$' -bench SlowRequests -benchtime 3s ./peer/
func BenchmarkSlowRequests(b *testing.B) {
	backend := newBackend()
	backend.inline = true
	for i := range 1000 {
		backend.set("c", "k-"+strconv.Itoa(i), Value{Data: []byte("v")})
	}
	backend.hook = func(_ context.Context, _ Op, key []byte) error {
		if bytes.HasPrefix(key, []byte("slow")) {
			time.Sleep(2 * time.Millisecond)
		}
		return nil
	}
	_, addr := startServer(b, backend)
	for _, conns := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
			c := newClient(b, WithConnsPerPeer(conns))
			var mu sync.Mutex
			var fast []time.Duration
			var n atomic.Int64
			parallel16(b)
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				var lat []time.Duration
				for pb.Next() {
					i := n.Add(1)
					key := "k-" + strconv.Itoa(int(i%1000))
					if i%50 == 0 {
						key = "slow-" + strconv.Itoa(int(i))
					}
					t0 := time.Now()
					if _, err := c.Get(context.Background(), addr, "c", []byte(key)); err != nil && StatusOf(err) != StatusNotFound {
						b.Error(err)
						return
					}
					if key[0] == 'k' {
						lat = append(lat, time.Since(t0))
					}
				}
				mu.Lock()
				fast = append(fast, lat...)
				mu.Unlock()
			})
			elapsed := time.Since(start)
			if len(fast) == 0 {
				return
			}
			slices.Sort(fast)
			b.ReportMetric(float64(fast[len(fast)/2].Microseconds()), "fast-p50-µs")
			b.ReportMetric(float64(fast[len(fast)*99/100].Microseconds()), "fast-p99-µs")
			b.ReportMetric(float64(len(fast))/elapsed.Seconds(), "fast/s")
		})
	}
}

// BenchmarkConnsPerPeer is BenchmarkGet's 16 callers of 1 KiB over 1, 2 or 4 connections per
// peer.
//
//	go test -run '^$' -bench ConnsPerPeer -benchmem ./peer/
func BenchmarkConnsPerPeer(b *testing.B) {
	_, addr := startServer(b, valueBackend{Value{Data: random(1 << 10)}})
	for _, conns := range []int{1, 2, 4} {
		c := newClient(b, WithConnsPerPeer(conns))
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
			b.ReportAllocs()
			parallel16(b)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := c.Get(context.Background(), addr, benchRequest.Cache, benchRequest.Key); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
