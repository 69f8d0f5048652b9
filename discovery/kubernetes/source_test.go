package kubernetes_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/typedcache/groupcache"
	"github.com/typedcache/groupcache/discovery"
	gck8s "github.com/typedcache/groupcache/discovery/kubernetes"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// The first update is the merged set of the Service's slices as they are when Watch starts:
// every ready endpoint once, sorted, whatever slice lists it; slices of other Services and of
// other namespaces are not read.
func TestInitialSet(t *testing.T) {
	t.Parallel()
	other := slice("other-1", "other", nil, ep("10.0.9.1"))
	elsewhere := slice("gc-x", svc, nil, ep("10.0.9.2"))
	elsewhere.Namespace = "elsewhere"
	c := client(t,
		slice("gc-1", svc, nil, ep("10.0.0.3"), ep("10.0.0.1")),
		slice("gc-2", svc, nil, ep("10.0.0.2"), ep("10.0.0.1")), // 10.0.0.1 in two slices, as during a rollout
		slice("gc-3", svc, nil),                                 // an empty slice, as a Service without pods has
		other, elsewhere,
	)
	w := watch(t, newSource(t, gck8s.Config{Client: c, PortName: "groupcache"}))
	w.expect("10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080")
}

// A Service with no slices at all is reported as an empty set once the first list is in
// (discovery.Run keeps the node's last good set), then the set as pods appear.
func TestNoSlicesYet(t *testing.T) {
	t.Parallel()
	c := client(t)
	w := watch(t, newSource(t, gck8s.Config{Client: c, PortName: "groupcache"}))
	w.expect()
	create(t, c, slice("gc-1", svc, nil, ep("10.0.0.1")))
	w.expect("10.0.0.1:8080")
}

// Readiness: ready true and ready nil (unknown) count; ready false (probe failing) does not;
// a terminating endpoint does not, whether ready is false (as the EndpointSlice controller sets
// it) or true (publishNotReadyAddresses). An endpoint that becomes not ready leaves the set and
// comes back when it is ready again.
func TestReadiness(t *testing.T) {
	t.Parallel()
	readyTerminating := ep("10.0.0.6")
	readyTerminating.Conditions.Terminating = ptr(true)
	s := slice("gc-1", svc, nil,
		ep("10.0.0.1"), unknown("10.0.0.2"), notReady("10.0.0.3"), terminating("10.0.0.4"), ep("10.0.0.5"), readyTerminating)
	c := client(t, s)
	w := watch(t, newSource(t, gck8s.Config{Client: c, PortName: "groupcache"}))
	w.expect("10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.5:8080")

	s.Endpoints[4] = notReady("10.0.0.5")
	update(t, c, s)
	w.expect("10.0.0.1:8080", "10.0.0.2:8080")

	s.Endpoints[2] = ep("10.0.0.3")
	s.Endpoints[4] = ep("10.0.0.5")
	update(t, c, s)
	w.expect("10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080", "10.0.0.5:8080")

	// A rolling update: the old pod terminates (ready false), then its endpoint goes away.
	s.Endpoints[0] = terminating("10.0.0.1")
	update(t, c, s)
	w.expect("10.0.0.2:8080", "10.0.0.3:8080", "10.0.0.5:8080")
	s.Endpoints = s.Endpoints[1:]
	update(t, c, s)
	// Nothing changed in the ready set, so nothing is sent: the next update is the next change.
	s.Endpoints = append(s.Endpoints, ep("10.0.0.7"))
	update(t, c, s)
	w.expect("10.0.0.2:8080", "10.0.0.3:8080", "10.0.0.5:8080", "10.0.0.7:8080")
}

// Slices added, updated and deleted change the set; an endpoint listed in two slices stays
// until neither lists it.
func TestSlicesAddedUpdatedRemoved(t *testing.T) {
	t.Parallel()
	a := slice("gc-a", svc, nil, ep("10.0.0.1"))
	c := client(t, a)
	w := watch(t, newSource(t, gck8s.Config{Client: c, PortName: "groupcache"}))
	w.expect("10.0.0.1:8080")

	create(t, c, slice("gc-b", svc, nil, ep("10.0.0.2"), ep("10.0.0.1")))
	w.expect("10.0.0.1:8080", "10.0.0.2:8080")

	a.Endpoints = []discoveryv1.Endpoint{ep("10.0.0.3")}
	update(t, c, a)
	w.expect("10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080") // 10.0.0.1 is still in gc-b

	remove(t, c, ns, "gc-b")
	w.expect("10.0.0.3:8080")

	remove(t, c, ns, "gc-a")
	w.expect()
}

// Slices of other Services in the namespace, and of the same Service name in other namespaces,
// never change the set. Events are handled in order, so if the other slices counted they would
// show in the update that follows the change made after them.
func TestOtherServicesIgnored(t *testing.T) {
	t.Parallel()
	c := client(t, slice("gc-1", svc, nil, ep("10.0.0.1")))
	w := watch(t, newSource(t, gck8s.Config{Client: c, PortName: "groupcache"}))
	w.expect("10.0.0.1:8080")

	create(t, c, slice("other-1", "other", nil, ep("10.0.9.1")))
	elsewhere := slice("gc-1", svc, nil, ep("10.0.9.2"))
	elsewhere.Namespace = "elsewhere"
	create(t, c, elsewhere)
	unlabelled := slice("gc-unlabelled", svc, nil, ep("10.0.9.3"))
	unlabelled.Labels = nil
	create(t, c, unlabelled)
	create(t, c, slice("gc-2", svc, nil, ep("10.0.0.2")))
	w.expect("10.0.0.1:8080", "10.0.0.2:8080")
}

// The port: by name (each slice's own number for that name), by fixed number, or the only port.
func TestPortSelection(t *testing.T) {
	t.Parallel()
	mk := func() []*discoveryv1.EndpointSlice {
		return []*discoveryv1.EndpointSlice{
			slice("gc-1", svc, []discoveryv1.EndpointPort{port("metrics", 9090), port("groupcache", 8080)}, ep("10.0.0.1")),
			slice("gc-2", svc, []discoveryv1.EndpointPort{port("groupcache", 8081), port("metrics", 9090)}, ep("10.0.0.2")),
			slice("gc-3", svc, []discoveryv1.EndpointPort{port("metrics", 9090)}, ep("10.0.0.3")), // no groupcache port
			slice("gc-4", svc, []discoveryv1.EndpointPort{port("", 7000)}, ep("10.0.0.4")),        // a single unnamed port
		}
	}
	for _, tc := range []struct {
		name string
		cfg  gck8s.Config
		want []string
	}{
		{"by name", gck8s.Config{PortName: "groupcache"}, []string{"10.0.0.1:8080", "10.0.0.2:8081"}},
		{"by other name", gck8s.Config{PortName: "metrics"}, []string{"10.0.0.1:9090", "10.0.0.2:9090", "10.0.0.3:9090"}},
		{"by number", gck8s.Config{Port: 9999}, []string{"10.0.0.1:9999", "10.0.0.2:9999", "10.0.0.3:9999", "10.0.0.4:9999"}},
		{"the only port", gck8s.Config{}, []string{"10.0.0.3:9090", "10.0.0.4:7000"}}, // gc-1 and gc-2 have two
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			logs := &logRecorder{}
			tc.cfg.Client = client(t, mk()...)
			tc.cfg.Logger = slog.New(logs)
			w := watch(t, newSource(t, tc.cfg))
			w.expect(tc.want...)
			if tc.name == "the only port" && !logs.has("endpoints left out") {
				t.Errorf("slices with several ports and no PortName were not logged: %v", logs.messages())
			}
		})
	}
}

// IPv6 addresses are bracketed. With AddressType set, a dual-stack Service's slices of the other
// family are ignored, so each pod is in the set once.
func TestIPv6AndAddressType(t *testing.T) {
	t.Parallel()
	dual := func() *fake.Clientset {
		return client(t,
			slice("gc-v4", svc, nil, ep("10.0.0.1"), ep("10.0.0.2")),
			slice("gc-v6", svc, nil, ep("2001:db8::1"), ep("2001:DB8:0:0::2")), // not canonical: normalised
		)
	}
	t.Run("all", func(t *testing.T) {
		t.Parallel()
		w := watch(t, newSource(t, gck8s.Config{Client: dual(), PortName: "groupcache"}))
		w.expect("10.0.0.1:8080", "10.0.0.2:8080", "[2001:db8::1]:8080", "[2001:db8::2]:8080")
	})
	t.Run("IPv6", func(t *testing.T) {
		t.Parallel()
		w := watch(t, newSource(t, gck8s.Config{Client: dual(), PortName: "groupcache", AddressType: discoveryv1.AddressTypeIPv6}))
		w.expect("[2001:db8::1]:8080", "[2001:db8::2]:8080")
	})
	t.Run("IPv4", func(t *testing.T) {
		t.Parallel()
		w := watch(t, newSource(t, gck8s.Config{Client: dual(), Port: 9000, AddressType: discoveryv1.AddressTypeIPv4}))
		w.expect("10.0.0.1:9000", "10.0.0.2:9000")
	})
}

// Invalid addresses are left out (and logged), the rest of the slice still counts.
func TestInvalidAddressLeftOut(t *testing.T) {
	t.Parallel()
	logs := &logRecorder{}
	c := client(t, slice("gc-1", svc, nil, ep("10.0.0.1"), ep("not-an-ip"), ep("10.0.0.2")))
	w := watch(t, newSource(t, gck8s.Config{Client: c, PortName: "groupcache", Logger: slog.New(logs)}))
	w.expect("10.0.0.1:8080", "10.0.0.2:8080")
	if !logs.has("endpoints left out") {
		t.Errorf("invalid address not logged: %v", logs.messages())
	}
}

// Changes made while nobody receives are merged: the receiver then gets the latest set, never a
// stale one after it, and never the same set twice in a row (watcher.next checks).
func TestCoalesces(t *testing.T) {
	t.Parallel()
	s := slice("gc-1", svc, nil, ep("10.0.0.1"))
	c := client(t, s)
	w := watch(t, newSource(t, gck8s.Config{Client: c, PortName: "groupcache"}))
	w.expect("10.0.0.1:8080")
	var want []string
	for i := 2; i <= 30; i++ {
		s.Endpoints = append(s.Endpoints, ep(addrN(i)))
		update(t, c, s)
		want = append(want, addrN(i)+":8080")
	}
	want = append([]string{"10.0.0.1:8080"}, want...)
	slices.Sort(want)
	w.until(want...)
	// The final set is also the last: the next update reflects the next change, not an
	// intermediate set sent late.
	remove(t, c, ns, "gc-1")
	w.expect()
}

// Watch returns ctx.Err() promptly when its context ends: while waiting for a change, while
// blocked on a send nobody receives, and before the first list succeeded. goleak (TestMain)
// checks that the informer's goroutines are gone afterwards.
func TestWatchStopsWithContext(t *testing.T) {
	t.Parallel()
	t.Run("waiting", func(t *testing.T) {
		t.Parallel()
		w := watch(t, newSource(t, gck8s.Config{Client: client(t, slice("gc-1", svc, nil, ep("10.0.0.1"))), PortName: "groupcache"}))
		w.expect("10.0.0.1:8080")
		if err := w.stop(); !errors.Is(err, context.Canceled) {
			t.Fatalf("Watch = %v, want context.Canceled", err)
		}
	})
	t.Run("blocked on a send", func(t *testing.T) {
		t.Parallel()
		c := client(t, slice("gc-1", svc, nil, ep("10.0.0.1")))
		listed := make(chan struct{})
		var once sync.Once
		c.PrependReactor("list", "endpointslices", func(k8stesting.Action) (bool, runtime.Object, error) {
			once.Do(func() { close(listed) })
			return false, nil, nil // the default reactor answers
		})
		src := newSource(t, gck8s.Config{Client: c, PortName: "groupcache"})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- src.Watch(ctx, make(chan discovery.Update)) }() // nobody receives
		select {
		case <-listed:
		case <-time.After(wait):
			t.Fatal("the informer never listed")
		}
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Watch = %v, want context.Canceled", err)
			}
		case <-time.After(wait):
			t.Fatalf("Watch did not return within %v of its context's end", wait)
		}
	})
	t.Run("never synced", func(t *testing.T) {
		t.Parallel()
		c := client(t)
		listed := make(chan struct{}, 1)
		c.PrependReactor("list", "endpointslices", func(k8stesting.Action) (bool, runtime.Object, error) {
			select {
			case listed <- struct{}{}:
			default:
			}
			return true, nil, errors.New("API server unreachable")
		})
		w := watch(t, newSource(t, gck8s.Config{Client: c, PortName: "groupcache"}))
		select {
		case <-listed:
		case <-time.After(wait):
			t.Fatal("the informer never listed")
		}
		if err := w.stop(); !errors.Is(err, context.Canceled) {
			t.Fatalf("Watch = %v, want context.Canceled", err)
		}
	})
	t.Run("already done", func(t *testing.T) {
		t.Parallel()
		src := newSource(t, gck8s.Config{Client: client(t), Port: 8080})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := src.Watch(ctx, make(chan discovery.Update)); !errors.Is(err, context.Canceled) {
			t.Fatalf("Watch = %v, want context.Canceled", err)
		}
	})
}

// A failing list (here: RBAC forbids it) is sent as an Update with Err, wrapping the API error,
// and Watch keeps going: once the list succeeds, the set follows. The informer's back-off runs on
// the fake clock of a synctest bubble.
func TestListErrorsReported(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		c := client(t, slice("gc-1", svc, nil, ep("10.0.0.1")))
		var fail atomic.Bool
		fail.Store(true)
		forbidden := apierrors.NewForbidden(schema.GroupResource{Group: "discovery.k8s.io", Resource: "endpointslices"}, "",
			errors.New(`User "system:serviceaccount:cache:default" cannot list resource "endpointslices"`))
		c.PrependReactor("list", "endpointslices", func(k8stesting.Action) (bool, runtime.Object, error) {
			if fail.Load() {
				return true, nil, forbidden
			}
			return false, nil, nil
		})
		w := watch(t, newSource(t, gck8s.Config{Client: c, PortName: "groupcache"}))
		u := w.next()
		if u.Err == nil || !apierrors.IsForbidden(u.Err) || !strings.Contains(u.Err.Error(), ns+"/"+svc) {
			t.Fatalf("first update %+v, want a Forbidden error naming %s/%s", u, ns, svc)
		}
		fail.Store(false) // the Role is fixed; the informer's next list (after its back-off) succeeds
		for {
			u := w.next()
			if u.Err != nil {
				continue // more failed attempts may be reported before the fix is seen
			}
			if len(u.Peers) != 1 || u.Peers[0] != "10.0.0.1:8080" {
				t.Fatalf("set %v after the list succeeded, want [10.0.0.1:8080]", u.Peers)
			}
			break
		}
	})
}

// A cold start: while no endpoint is ready, the set is that of the endpoints not ready and not
// terminating (the pods starting), so that each node gets a ring of them all and can turn ready;
// terminating ones never count. Once one is ready, the set is the ready ones only.
func TestColdStartReportsStartingPods(t *testing.T) {
	t.Parallel()
	s := slice("gc-1", svc, nil, notReady("10.0.0.2"), notReady("10.0.0.1"), terminating("10.0.0.3"))
	c := client(t, s)
	w := watch(t, newSource(t, gck8s.Config{Client: c, PortName: "groupcache"}))
	w.expect("10.0.0.1:8080", "10.0.0.2:8080")

	s.Endpoints[1] = ep("10.0.0.1")
	update(t, c, s)
	w.expect("10.0.0.1:8080")
	s.Endpoints[0] = ep("10.0.0.2")
	update(t, c, s)
	w.expect("10.0.0.1:8080", "10.0.0.2:8080")

	// All terminating (the Deployment deleted): nothing is left, and discovery.Run keeps the
	// node's last set.
	s.Endpoints = []discoveryv1.Endpoint{terminating("10.0.0.1"), terminating("10.0.0.2"), terminating("10.0.0.3")}
	update(t, c, s)
	w.expect()
}

// Several Watch calls on one Source run independent informers.
func TestConcurrentWatches(t *testing.T) {
	t.Parallel()
	c := client(t, slice("gc-1", svc, nil, ep("10.0.0.1")))
	src := newSource(t, gck8s.Config{Client: c, PortName: "groupcache"})
	w1, w2 := watch(t, src), watch(t, src)
	w1.expect("10.0.0.1:8080")
	w2.expect("10.0.0.1:8080")
	create(t, c, slice("gc-2", svc, nil, ep("10.0.0.2")))
	w1.expect("10.0.0.1:8080", "10.0.0.2:8080")
	w2.expect("10.0.0.1:8080", "10.0.0.2:8080")
	if err := w1.stop(); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	remove(t, c, ns, "gc-1")
	w2.expect("10.0.0.2:8080")
}

// Resync replays the cache to the source (client-go runs it at most once a second); an unchanged
// set is not sent again, while changes still are. The informer runs in a synctest bubble: the
// resyncs come on its fake clock, at once.
func TestResync(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		c := client(t, slice("gc-1", svc, nil, ep("10.0.0.1")))
		w := watch(t, newSource(t, gck8s.Config{Client: c, PortName: "groupcache", Resync: time.Second}))
		w.expect("10.0.0.1:8080")
		w.none(2500 * time.Millisecond) // two resyncs or so
		create(t, c, slice("gc-2", svc, nil, ep("10.0.0.2")))
		w.expect("10.0.0.1:8080", "10.0.0.2:8080")
	})
}

func TestNewInvalid(t *testing.T) {
	t.Parallel()
	c := fake.NewClientset()
	for _, tc := range []struct {
		name string
		cfg  gck8s.Config
	}{
		{"nil client", gck8s.Config{Namespace: ns, Service: svc}},
		{"no namespace", gck8s.Config{Client: c, Service: svc}},
		{"bad namespace", gck8s.Config{Client: c, Namespace: "Cache_1", Service: svc}},
		{"no service", gck8s.Config{Client: c, Namespace: ns}},
		{"bad service", gck8s.Config{Client: c, Namespace: ns, Service: "1cache"}},
		{"long service", gck8s.Config{Client: c, Namespace: ns, Service: strings.Repeat("a", 64)}},
		{"bad port name", gck8s.Config{Client: c, Namespace: ns, Service: svc, PortName: "Group Cache"}},
		{"port name and number", gck8s.Config{Client: c, Namespace: ns, Service: svc, PortName: "groupcache", Port: 8080}},
		{"negative port", gck8s.Config{Client: c, Namespace: ns, Service: svc, Port: -1}},
		{"port too large", gck8s.Config{Client: c, Namespace: ns, Service: svc, Port: 65536}},
		{"bad address type", gck8s.Config{Client: c, Namespace: ns, Service: svc, AddressType: "IPX"}},
		{"negative resync", gck8s.Config{Client: c, Namespace: ns, Service: svc, Resync: -time.Second}},
		{"resync under client-go's minimum", gck8s.Config{Client: c, Namespace: ns, Service: svc, Resync: 10 * time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := gck8s.New(tc.cfg)
			if !errors.Is(err, groupcache.ErrInvalidOption) {
				t.Fatalf("New = %v, %v; want an error wrapping groupcache.ErrInvalidOption", s, err)
			}
		})
	}
	if _, err := gck8s.New(gck8s.Config{Client: c, Namespace: ns, Service: svc}); err != nil {
		t.Errorf("New with the required fields only: %v", err)
	}
}

// Outside a pod, InCluster fails (no service account), with an error saying why.
func TestInClusterOutsideAPod(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
	if _, err := gck8s.InCluster("", svc, "groupcache"); err == nil {
		t.Fatal("InCluster outside a pod succeeded")
	}
}

func TestString(t *testing.T) {
	t.Parallel()
	s := newSource(t, gck8s.Config{Client: fake.NewClientset(), Port: 8080})
	if got, want := s.String(), "kubernetes endpointslices cache/groupcache"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func addrN(i int) string { return "10.0.1." + strconv.Itoa(i) }

// logRecorder is a slog.Handler that keeps every record's message.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logRecorder) WithGroup(string) slog.Handler            { return h }
func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.msgs = append(h.msgs, r.Message)
	return nil
}

func (h *logRecorder) messages() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.msgs...)
}

func (h *logRecorder) has(substr string) bool {
	for _, m := range h.messages() {
		if strings.Contains(m, substr) {
			return true
		}
	}
	return false
}
