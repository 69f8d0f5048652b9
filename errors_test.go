package groupcache_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/typedcache/groupcache"
	"github.com/typedcache/groupcache/codec"
	"github.com/typedcache/groupcache/internal/testcluster"
)

var quiet = groupcache.WithLogger(slog.New(slog.DiscardHandler))

// panicky is a codec that panics when told to, in Append or Decode.
type panicky struct {
	codec.Codec[string]
	onAppend, onDecode bool
}

func (p panicky) Append(dst []byte, v string) ([]byte, error) {
	if p.onAppend {
		panic("append bug")
	}
	return p.Codec.Append(dst, v)
}

func (p panicky) Decode(data []byte) (string, error) {
	if p.onDecode {
		panic("decode bug")
	}
	return p.Codec.Decode(data)
}

type panickyBatch struct{}

func (panickyBatch) Load(context.Context, string) (string, error) { return "v", nil }
func (panickyBatch) LoadMany(context.Context, []string) ([]groupcache.Loaded[string], error) {
	panic("batch bug")
}

var plain = groupcache.LoaderFunc[string, string](func(context.Context, string) (string, error) { return "v", nil })

// wantPanic checks that err is this package's *PanicError for the panic value want, with a one-line
// message naming what panicked.
func wantPanic(t *testing.T, err error, want any, in string) {
	t.Helper()
	pe, ok := errors.AsType[*groupcache.PanicError](err)
	if !ok || pe.Value != want || len(pe.Stack) == 0 {
		t.Fatalf("err = %v (%T), want a *groupcache.PanicError for %v", err, err, want)
	}
	if msg := err.Error(); !strings.HasPrefix(msg, "groupcache: ") || !strings.Contains(msg, "panic in "+in) || strings.Contains(msg, "\n") {
		t.Fatalf("message %q: want one line starting groupcache: and naming %s", msg, in)
	}
}

// TestPanicErrorAlone checks that a panic in each kind of user code reaches the caller of a cache
// without a node as a *groupcache.PanicError.
func TestPanicErrorAlone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		loader groupcache.Loader[string, string]
		opts   []groupcache.Option
		call   func(c *groupcache.Cache[string, string]) error
		want   any
		in     string
	}{
		{"loader", groupcache.LoaderFunc[string, string](func(context.Context, string) (string, error) { panic("load bug") }),
			nil, get, "load bug", "loader"},
		{"batch loader", panickyBatch{}, nil, getMany, "batch bug", "batch loader"},
		{"value codec", plain, []groupcache.Option{groupcache.WithCodec[string](panicky{Codec: codec.String(), onAppend: true})},
			get, "append bug", "codec"},
		{"key codec", plain, []groupcache.Option{groupcache.WithKeyCodec[string](panicky{Codec: codec.String(), onAppend: true})},
			get, "append bug", "key codec"},
		{"sizer", plain, []groupcache.Option{groupcache.WithSizer(func(string) int64 { panic("size bug") })},
			get, "size bug", "sizer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := groupcache.New("p", tc.loader, append(tc.opts, quiet)...)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			wantPanic(t, tc.call(c), tc.want, tc.in)
			if tc.opts != nil { // the codecs and the sizer run in Set too
				wantPanic(t, c.Set(ctx, "k", "v"), tc.want, tc.in)
			}
		})
	}
}

func get(c *groupcache.Cache[string, string]) error {
	_, err := c.Get(context.Background(), "k")
	return err
}

func getMany(c *groupcache.Cache[string, string]) error {
	return c.GetMany(context.Background(), []string{"k"})[0].Err
}

// TestPanicErrorOnNode checks the panics of user code that runs only on a node: the codec decoding
// a peer's value and the promoter.
func TestPanicErrorOnNode(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts func(node int) []groupcache.Option
		want any
		in   string
	}{
		{"decoding codec", func(node int) []groupcache.Option {
			return []groupcache.Option{groupcache.WithCodec[string](panicky{Codec: codec.String(), onDecode: node == 1})}
		}, "decode bug", "codec"},
		{"promoter", func(node int) []groupcache.Option {
			return []groupcache.Option{groupcache.WithPromoter(func(uint64, int) bool { panic("promote bug") })}
		}, "promote bug", "promoter"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cl := testcluster.Start(t, 2)
			var caches []*groupcache.Cache[string, string]
			for i, n := range cl.Nodes {
				c, err := groupcache.New("p", plain, append(tc.opts(i), groupcache.WithNode(n), quiet)...)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				caches = append(caches, c)
			}
			k := keyOwnedBy(t, cl, 0)
			_, err := caches[1].Get(context.Background(), k)
			wantPanic(t, err, tc.want, tc.in)
			err = caches[1].View(context.Background(), keyOwnedBy(t, cl, 0, k), func(string) error { return nil })
			wantPanic(t, err, tc.want, tc.in)
		})
	}
}

// TestPeerRequestsAreNotGets checks that the requests of a remote node move the owner's
// PeerRequests, not its Gets, Hits or Misses.
func TestPeerRequestsAreNotGets(t *testing.T) {
	t.Parallel()
	cl := testcluster.Start(t, 2)
	caches := stringCaches(t, cl, "c", newLoadLog(), nil, groupcache.WithHotFraction(0))
	ctx := context.Background()
	k := keyOwnedBy(t, cl, 0)
	for range 3 {
		if _, err := caches[1].Get(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	caches[1].GetMany(ctx, []string{k, keyOwnedBy(t, cl, 0, k)})
	owner := caches[0].Stats()
	if owner.Gets != 0 || owner.Hits != 0 || owner.Misses != 0 || owner.PeerRequests != 5 || owner.PeerLoads != 2 {
		t.Fatalf("owner stats %+v: want 5 peer requests, 2 peer loads, no Gets", owner)
	}
	caches[0].Get(ctx, k)
	if st := caches[0].Stats(); st.Gets != 1 || st.Hits != 1 || st.Misses != 0 {
		t.Fatalf("owner stats after its own Get %+v: want 1 get, 1 hit", st)
	}
	if st := caches[1].Stats(); st.Gets != 5 || st.Misses != 5 || st.RemoteGets != 5 {
		t.Fatalf("asking node's stats %+v: want 5 gets, all misses fetched from the owner", st)
	}
}
