package peer

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// inlineValueBackend is valueBackend answering inline (InlineBackend), as the root package's
// nodes answer hits: a multiplexed server answers it on the connection's goroutine, without a
// goroutine or a copy of the request of its own.
type inlineValueBackend struct{ valueBackend }

func (b inlineValueBackend) GetInline(string, []byte) (Value, bool, error) { return b.v, true, nil }

// BenchmarkPipelinedSlowRequests measures what slow requests at the peer (a load on a miss, say)
// cost the fast ones: 16 callers ask one server, one request in 50 takes 2 ms in the backend, the
// others are hits (answered inline, as the root package's nodes answer hits). On framing 1 a
// connection's requests are answered in order, so a request pipelined behind a slow one waited
// for it; on the multiplexed framing a slow request holds up none of the others. Reported: the
// p50 and p99 latency of the fast requests, and their throughput.
//
//	go test -run '^$' -bench PipelinedSlowRequests -benchtime 3s ./peer/
func BenchmarkPipelinedSlowRequests(b *testing.B) {
	backend := &inlineEcho{echoBackend{hook: func(ctx context.Context, key string) {
		if strings.HasPrefix(key, "slow") {
			time.Sleep(2 * time.Millisecond)
		}
	}}}
	_, addr := startServer(b, backend)
	for _, conns := range []int{0, 1, 2, 4} {
		b.Run(fmt.Sprintf("pipelining=%d", conns), func(b *testing.B) {
			c := newClient(b, WithPipelining(conns))
			var mu sync.Mutex
			var fast []time.Duration
			var n atomic.Int64
			b.SetParallelism(8) // 16 callers on 2 cores
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				var lat []time.Duration
				for pb.Next() {
					i := n.Add(1)
					key := "k-" + itoa(int(i%1000))
					if i%50 == 0 {
						key = "slow-" + itoa(int(i))
					}
					t0 := time.Now()
					if _, err := c.Get(context.Background(), addr, "c", []byte(key)); err != nil {
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
			b.StopTimer()
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

// BenchmarkPipelinedGet is BenchmarkGet with the client pipelining over 0 (off), 1 or 2
// multiplexed connections: a lone caller (serial), 16 callers (par16), and a lone caller with a
// cancellable context. The server answers inline (InlineBackend), as the root package's nodes
// answer hits.
//
//	go test -run '^$' -bench 'PipelinedGet' -benchmem ./peer/
func BenchmarkPipelinedGet(b *testing.B) {
	for _, sz := range benchSizes {
		_, addr := startServer(b, inlineValueBackend{valueBackend{Value{Data: random(sz.n)}}})
		for _, conns := range []int{0, 1, 2} {
			c := newClient(b, WithPipelining(conns))
			get := func(ctx context.Context, b *testing.B) {
				v, err := c.Get(ctx, addr, benchRequest.Cache, benchRequest.Key)
				if err != nil || len(v.Data) != sz.n {
					b.Fatal(err)
				}
			}
			name := fmt.Sprintf("%s/pipelining=%d", sz.name, conns)
			b.Run(name+"/serial", func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(sz.n))
				for b.Loop() {
					get(context.Background(), b)
				}
			})
			b.Run(name+"/par16", func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(sz.n))
				parallel16(b)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						get(context.Background(), b)
					}
				})
			})
			b.Run(name+"/serial-cancelctx", func(b *testing.B) {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				b.ReportAllocs()
				b.SetBytes(int64(sz.n))
				for b.Loop() {
					get(ctx, b)
				}
			})
		}
	}
}
