package groupcache_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/typedcache/groupcache"
	"github.com/typedcache/groupcache/codec"
	"github.com/typedcache/groupcache/observe"
	"github.com/typedcache/groupcache/store"
)

type UserID int64

type Profile struct {
	Name string
	Age  int
}

// loadProfileFromDB stands in for a database query.
func loadProfileFromDB(_ context.Context, id UserID) (Profile, error) {
	if id <= 0 {
		return Profile{}, fmt.Errorf("user %d: %w", id, groupcache.ErrNotFound)
	}
	return Profile{Name: "user" + strconv.FormatInt(int64(id), 10), Age: 30}, nil
}

// A typed cache: the loader, Get and the returned value all use UserID and Profile.
func Example() {
	users, err := groupcache.New[UserID, Profile]("users",
		groupcache.LoaderFunc[UserID, Profile](loadProfileFromDB),
		groupcache.WithMaxBytes(64<<20),
	)
	if err != nil {
		panic(err)
	}
	defer users.Close()

	ctx := context.Background()
	p, _ := users.Get(ctx, 42) // a miss: the loader runs
	p, _ = users.Get(ctx, 42)  // a hit: no load, no decoding
	fmt.Println(p.Name, p.Age)

	_, err = users.Get(ctx, -1)
	fmt.Println(errors.Is(err, groupcache.ErrNotFound))

	st := users.Stats()
	fmt.Printf("gets=%d hits=%d loads=%d\n", st.Gets, st.Hits, st.Loads)
	// Output:
	// user42 30
	// true
	// gets=3 hits=1 loads=2
}

// profileCodec is a hand-written codec: "name|age".
type profileCodec struct{}

func (profileCodec) Append(dst []byte, p Profile) ([]byte, error) {
	dst = append(dst, p.Name...)
	dst = append(dst, '|')
	return strconv.AppendInt(dst, int64(p.Age), 10), nil
}

func (profileCodec) Decode(data []byte) (Profile, error) {
	name, age, ok := strings.Cut(string(data), "|")
	if !ok {
		return Profile{}, errors.New("profile: missing separator")
	}
	n, err := strconv.Atoi(age)
	return Profile{Name: name, Age: n}, err
}

// A custom value codec replaces the default CBOR one. The codec measures each loaded value and,
// in a cluster, encodes what travels between nodes.
func ExampleWithCodec() {
	users := must(groupcache.New[UserID, Profile]("users",
		groupcache.LoaderFunc[UserID, Profile](loadProfileFromDB),
		groupcache.WithCodec[Profile](profileCodec{}),
	))
	defer users.Close()

	p, err := users.Get(context.Background(), 7)
	fmt.Println(p, err)
	fmt.Println(users.Stats().Bytes > 0)
	// Output:
	// {user7 30} <nil>
	// true
}

type Point struct{ X, Y int }

// Keys of other than string and integer kinds need a key codec; the deterministic CBOR codec
// serves for struct keys.
func ExampleWithKeyCodec() {
	dist := must(groupcache.New[Point, int]("manhattan",
		groupcache.LoaderFunc[Point, int](func(_ context.Context, p Point) (int, error) {
			return max(p.X, -p.X) + max(p.Y, -p.Y), nil
		}),
		groupcache.WithKeyCodec(codec.CBOR[Point]()),
	))
	defer dist.Close()
	d, _ := dist.Get(context.Background(), Point{3, -4})
	fmt.Println(d)

	_, err := groupcache.New[Point, int]("no-key-codec",
		groupcache.LoaderFunc[Point, int](func(context.Context, Point) (int, error) { return 0, nil }))
	fmt.Println(errors.Is(err, groupcache.ErrInvalidOption))
	// Output:
	// 7
	// true
}

// Two nodes on 127.0.0.1, each with the same cache: every key is loaded once, by its owner, and
// the other node fetches it from there.
func ExampleNewNode() {
	var listeners []net.Listener
	var addrs []string
	for range 2 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			panic(err)
		}
		listeners = append(listeners, l)
		addrs = append(addrs, l.Addr().String())
	}
	var loads atomic.Int64
	var caches []*groupcache.Cache[string, string]
	for i, l := range listeners {
		node, err := groupcache.NewNode(addrs[i], groupcache.WithPeers(addrs...))
		if err != nil {
			panic(err)
		}
		defer node.Close()
		go node.Serve(l) // or mount node.Handler() on your own mux
		c := must(groupcache.New[string, string]("greetings",
			groupcache.LoaderFunc[string, string](func(_ context.Context, name string) (string, error) {
				loads.Add(1)
				return "hello, " + name, nil
			}),
			groupcache.WithNode(node)))
		defer c.Close()
		caches = append(caches, c)
	}
	for _, c := range caches {
		for _, name := range []string{"ada", "grace", "edsger"} {
			v, err := c.Get(context.Background(), name)
			if err != nil {
				panic(err)
			}
			fmt.Println(v)
		}
	}
	fmt.Println("loads:", loads.Load())
	// Output:
	// hello, ada
	// hello, grace
	// hello, edsger
	// hello, ada
	// hello, grace
	// hello, edsger
	// loads: 3
}

// Shutdown takes a node out of its cluster without failing a Get: its peers are told at once and
// load its keys themselves, and the requests it was serving are answered before it closes.
func ExampleNode_Shutdown() {
	var listeners []net.Listener
	var addrs []string
	for range 2 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			panic(err)
		}
		listeners = append(listeners, l)
		addrs = append(addrs, l.Addr().String())
	}
	var nodes []*groupcache.Node
	var caches []*groupcache.Cache[string, string]
	for i, l := range listeners {
		node, err := groupcache.NewNode(addrs[i], groupcache.WithPeers(addrs...))
		if err != nil {
			panic(err)
		}
		defer node.Close()
		go node.Serve(l)
		c := must(groupcache.New[string, string]("greetings",
			groupcache.LoaderFunc[string, string](func(_ context.Context, name string) (string, error) {
				return "hello, " + name, nil
			}),
			groupcache.WithNode(node)))
		defer c.Close()
		nodes, caches = append(nodes, node), append(caches, c)
	}
	// Leave the discovery source first, where there is one (docs/design.md, "Faults").
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fmt.Println("shutdown:", nodes[1].Shutdown(ctx))
	for _, name := range []string{"ada", "grace", "edsger"} {
		v, err := caches[0].Get(context.Background(), name) // whichever node owns it
		fmt.Println(v, err)
	}
	// Output:
	// shutdown: <nil>
	// hello, ada <nil>
	// hello, grace <nil>
	// hello, edsger <nil>
}

// View lends the value to a function instead of returning it: a large value fetched from its
// owner is read into memory the cache reuses for the next View, so serving it costs no garbage.
// The function must be done with the value when it returns (here, it writes it out).
func ExampleCache_View() {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	other, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	addrs := []string{l.Addr().String(), other.Addr().String()}
	var caches []*groupcache.Cache[string, []byte]
	for i, ln := range []net.Listener{l, other} {
		node, err := groupcache.NewNode(addrs[i], groupcache.WithPeers(addrs...))
		if err != nil {
			panic(err)
		}
		defer node.Close()
		go node.Serve(ln)
		c := must(groupcache.New[string, []byte]("blobs",
			groupcache.LoaderFunc[string, []byte](func(_ context.Context, name string) ([]byte, error) {
				return []byte(strings.Repeat(name, 3)), nil // a large object in real life
			}),
			groupcache.WithNode(node), groupcache.WithCodec(codec.Bytes())))
		defer c.Close()
		caches = append(caches, c)
	}
	var out strings.Builder
	for _, name := range []string{"ab", "cd", "ef"} {
		// Whichever node owns the name, the value comes to the function the same way.
		err := caches[0].View(context.Background(), name, func(blob []byte) error {
			_, err := out.Write(blob) // e.g. an http.ResponseWriter
			return err
		})
		if err != nil {
			panic(err)
		}
		out.WriteByte(' ')
	}
	fmt.Println(out.String())
	// Output:
	// ababab cdcdcd efefef
}

// profileStore stands in for a database that can read many rows in one query.
type profileStore struct{ queries atomic.Int64 }

func (s *profileStore) Load(ctx context.Context, id UserID) (Profile, error) {
	s.queries.Add(1)
	return loadProfileFromDB(ctx, id)
}

// LoadMany makes profileStore a BatchLoader: GetMany loads its misses with one query.
func (s *profileStore) LoadMany(ctx context.Context, ids []UserID) ([]groupcache.Loaded[Profile], error) {
	s.queries.Add(1)
	out := make([]groupcache.Loaded[Profile], len(ids))
	for i, id := range ids {
		out[i].Value, out[i].Err = loadProfileFromDB(ctx, id)
	}
	return out, nil
}

// GetMany fills the keys it misses together: with one LoadMany call here, and with one request
// per owning peer on a node. Each key gets its own value or error.
func ExampleCache_GetMany() {
	db := &profileStore{}
	users := must(groupcache.New[UserID, Profile]("users", db))
	defer users.Close()

	for _, r := range users.GetMany(context.Background(), []UserID{1, 2, -3, 2}) {
		if r.Err != nil {
			fmt.Println("error:", errors.Is(r.Err, groupcache.ErrNotFound))
			continue
		}
		fmt.Println(r.Value.Name)
	}
	fmt.Println("queries:", db.queries.Load())
	// Output:
	// user1
	// user2
	// error: true
	// user2
	// queries: 1
}

// Set replaces a value on its owner (and drops copies on other nodes); Remove makes the next Get
// load it again.
func ExampleCache_Set() {
	db := &profileStore{}
	users := must(groupcache.New[UserID, Profile]("users", db))
	defer users.Close()
	ctx := context.Background()

	if err := users.Set(ctx, 7, Profile{Name: "renamed", Age: 31}); err != nil {
		panic(err)
	}
	p, _ := users.Get(ctx, 7)
	fmt.Println(p.Name, "queries:", db.queries.Load())

	users.Remove(ctx, 7)
	p, _ = users.Get(ctx, 7)
	fmt.Println(p.Name, "queries:", db.queries.Load())
	// Output:
	// renamed queries: 0
	// user7 queries: 1
}

// A loader can give its value a TTL of its own; a missing key can be remembered for a while.
func ExampleSetTTL() {
	db := &profileStore{}
	users := must(groupcache.New[UserID, Profile]("users",
		groupcache.LoaderFunc[UserID, Profile](func(ctx context.Context, id UserID) (Profile, error) {
			if id == 1 {
				groupcache.SetTTL(ctx, 5*time.Second) // the admin's profile changes often
			}
			return db.Load(ctx, id)
		}),
		groupcache.WithTTL(10*time.Minute),
		groupcache.WithNegativeTTL(30*time.Second),
	))
	defer users.Close()
	ctx := context.Background()
	users.Get(ctx, -1)
	_, err := users.Get(ctx, -1) // answered from the cached "not found"
	fmt.Println(errors.Is(err, groupcache.ErrNotFound), "queries:", db.queries.Load())
	// Output:
	// true queries: 1
}

// A removal listener releases what a value holds when the value leaves the cache: here a
// connection per tenant, closed when its entry is removed, evicted, expired or replaced (and,
// for what is left, at Close).
func ExampleWithRemovalListener() {
	conns := must(groupcache.New[string, *tenantConn]("conns",
		groupcache.LoaderFunc[string, *tenantConn](func(_ context.Context, tenant string) (*tenantConn, error) {
			return &tenantConn{tenant: tenant}, nil
		}),
		groupcache.WithRemovalListener(func(tenant string, c *tenantConn, why store.Reason) {
			fmt.Println("closing", tenant, "because", why)
			c.Close()
		}),
	))
	ctx := context.Background()
	conns.Get(ctx, "acme")
	conns.Get(ctx, "globex")
	conns.Remove(ctx, "acme")
	conns.Close()
	// Output:
	// closing acme because explicit
	// closing globex because explicit
}

type tenantConn struct{ tenant string }

func (c *tenantConn) Close() {}

// A tracer is told of each step of a miss, with the context it runs in; hits tell it nothing.
// The module observe/otel has one that makes OpenTelemetry spans.
func ExampleWithTracer() {
	tracer := observe.TracerFunc(func(ctx context.Context, s observe.Span) (context.Context, func(error)) {
		fmt.Println("start", s.Step, s.Cache)
		return ctx, func(err error) { fmt.Println("end", s.Step, err) }
	})
	users := must(groupcache.New[UserID, Profile]("users",
		groupcache.LoaderFunc[UserID, Profile](loadProfileFromDB), groupcache.WithTracer(tracer)))
	defer users.Close()
	users.Get(context.Background(), 7)
	users.Get(context.Background(), 7) // a hit
	// Output:
	// start get_miss users
	// start load users
	// end load <nil>
	// end get_miss <nil>
}

// must returns v, or panics with err: the examples' shorthand for "check the error".
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
