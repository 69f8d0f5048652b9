package otel

import (
	"context"
	"strconv"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/typedcache/groupcache"
	"github.com/typedcache/groupcache/codec"
	"github.com/typedcache/groupcache/hash"
	"github.com/typedcache/groupcache/internal/testcluster"
)

// discard is a span exporter that drops what it is given.
type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }

// BenchmarkTracing compares Gets with and without this package's tracer, on two real nodes of
// one process: hits (nothing is traced), and remote hits (a miss here, a hit on the owner: a
// get_miss and a fetch span here, the trace context on the wire), with every span sampled and
// with 1% sampled, the spans batched to an exporter that drops them. Run it with
//
//	go test -run '^$' -bench Tracing -benchmem -count 6 ./observe/otel/
func BenchmarkTracing(b *testing.B) {
	for _, tc := range []struct {
		name    string
		sampler sdktrace.Sampler // nil: no tracer
	}{{"none", nil}, {"all", sdktrace.AlwaysSample()}, {"ratio1pct", sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.01))}} {
		cl := testcluster.Start(b, 2, groupcache.WithNodeLogger(quiet()))
		opts := []groupcache.Option{groupcache.WithHotFraction(0), groupcache.WithLogger(quiet())}
		if tc.sampler != nil {
			tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(discard{}), sdktrace.WithSampler(tc.sampler))
			b.Cleanup(func() { tp.Shutdown(context.Background()) })
			opts = append(opts, groupcache.WithTracer(NewTracer(tp)))
		}
		var caches []*groupcache.Cache[string, string]
		for _, n := range cl.Nodes {
			c, err := groupcache.New[string, string]("c", groupcache.LoaderFunc[string, string](func(_ context.Context, k string) (string, error) {
				return "value-" + k, nil
			}), append([]groupcache.Option{groupcache.WithNode(n)}, opts...)...)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { c.Close() })
			caches = append(caches, c)
		}
		ring, err := hash.NewRing(cl.Addrs)
		if err != nil {
			b.Fatal(err)
		}
		var remote, local []string
		for i := 0; len(remote) < 256 || len(local) < 256; i++ {
			k := strconv.Itoa(i)
			kb, _ := codec.String().Append(nil, k)
			if owner, _ := ring.Owner(kb); owner == cl.Addrs[1] {
				remote = append(remote, k)
			} else {
				local = append(local, k)
			}
		}
		ctx := context.Background()
		for _, k := range append(remote, local...) {
			if _, err := caches[0].Get(ctx, k); err != nil {
				b.Fatal(err)
			}
		}
		for _, set := range []struct {
			name string
			keys []string
		}{{"hit", local[:256]}, {"remote", remote[:256]}} {
			b.Run(tc.name+"/"+set.name, func(b *testing.B) {
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					if _, err := caches[0].Get(ctx, set.keys[i%len(set.keys)]); err != nil {
						b.Fatal(err)
					}
					i++
				}
			})
		}
	}
}
