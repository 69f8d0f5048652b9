package kubernetes_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/typedcache/groupcache/discovery"
	gck8s "github.com/typedcache/groupcache/discovery/kubernetes"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
)

const (
	ns  = "cache"
	svc = "groupcache"
)

// wait bounds every wait for an update. It is generous: the machine running the tests may be
// loaded, and the race detector slows the informer down.
const wait = 10 * time.Second

// slice builds an EndpointSlice of service in namespace ns, with IPv4 addresses unless the
// first endpoint's address contains a colon, and one port named "groupcache" unless ports says
// otherwise.
func slice(name, service string, ports []discoveryv1.EndpointPort, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	at := discoveryv1.AddressTypeIPv4
	if len(eps) > 0 && strings.Contains(eps[0].Addresses[0], ":") {
		at = discoveryv1.AddressTypeIPv6
	}
	if ports == nil {
		ports = []discoveryv1.EndpointPort{port("groupcache", 8080)}
	}
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name:      name,
			Namespace: ns,
			Labels:    map[string]string{discoveryv1.LabelServiceName: service},
		},
		AddressType: at,
		Endpoints:   eps,
		Ports:       ports,
	}
}

func port(name string, number int32) discoveryv1.EndpointPort {
	return discoveryv1.EndpointPort{Name: &name, Port: &number}
}

func ptr[T any](v T) *T { return &v }

// ep is a ready endpoint.
func ep(addr string) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: []string{addr}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}}
}

// notReady is an endpoint whose pod fails its readiness probe.
func notReady(addr string) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: []string{addr}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(false), Serving: ptr(false)}}
}

// terminating is an endpoint whose pod is shutting down while still passing its probe, as the
// EndpointSlice controller reports it: ready false, serving true, terminating true.
func terminating(addr string) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: []string{addr}, Conditions: discoveryv1.EndpointConditions{
		Ready: ptr(false), Serving: ptr(true), Terminating: ptr(true)}}
}

// unknown is an endpoint with no readiness condition.
func unknown(addr string) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: []string{addr}}
}

func newSource(t *testing.T, cfg gck8s.Config) *gck8s.Source {
	t.Helper()
	if cfg.Namespace == "" {
		cfg.Namespace = ns
	}
	if cfg.Service == "" {
		cfg.Service = svc
	}
	s, err := gck8s.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// watcher runs Watch in the background and checks what it sends.
type watcher struct {
	t       *testing.T
	updates chan discovery.Update
	cancel  context.CancelFunc
	done    chan error
	last    []string // the set received last
	got     bool     // a set was received
}

// watch starts src.Watch; the test's cleanup stops it and checks that it returned
// context.Canceled.
func watch(t *testing.T, src discovery.Source) *watcher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{t: t, updates: make(chan discovery.Update), cancel: cancel, done: make(chan error, 1)}
	go func() { w.done <- src.Watch(ctx, w.updates) }()
	t.Cleanup(func() {
		if err := w.stop(); err != context.Canceled {
			t.Errorf("Watch = %v, want context.Canceled", err)
		}
	})
	return w
}

// stop cancels the Watch and returns its result; it fails the test if Watch does not return
// within wait. Calls after the first return the first result.
func (w *watcher) stop() error {
	w.cancel()
	select {
	case err, ok := <-w.done:
		if ok {
			close(w.done)
		} else {
			err = context.Canceled
		}
		return err
	case <-time.After(wait):
		w.t.Fatalf("Watch did not return within %v of its context's end", wait)
		return nil
	}
}

// next returns the next update. A set must differ from the one received before it.
func (w *watcher) next() discovery.Update {
	w.t.Helper()
	select {
	case u := <-w.updates:
		if u.Err == nil {
			if w.got && slices.Equal(u.Peers, w.last) {
				w.t.Errorf("the same set %v was sent twice in a row", u.Peers)
			}
			if !slices.IsSorted(u.Peers) || len(slices.Compact(slices.Clone(u.Peers))) != len(u.Peers) {
				w.t.Errorf("set %v is not sorted and deduplicated", u.Peers)
			}
			w.last, w.got = u.Peers, true
		}
		return u
	case err := <-w.done:
		w.t.Fatalf("Watch returned %v, want it to keep running", err)
	case <-time.After(wait):
		w.t.Fatalf("no update within %v; last set %v", wait, w.last)
	}
	return discovery.Update{}
}

// none checks that nothing is sent for d.
func (w *watcher) none(d time.Duration) {
	w.t.Helper()
	select {
	case u := <-w.updates:
		w.t.Fatalf("unexpected update %+v", u)
	case err := <-w.done:
		w.t.Fatalf("Watch returned %v, want it to keep running", err)
	case <-time.After(d):
	}
}

// expect checks that the next update is exactly the set want.
func (w *watcher) expect(want ...string) {
	w.t.Helper()
	if want == nil {
		want = []string{}
	}
	u := w.next()
	if u.Err != nil || !slices.Equal(u.Peers, want) {
		w.t.Fatalf("update %v (err %v), want %v", u.Peers, u.Err, want)
	}
}

// until waits for the set want, skipping the sets the source may send before it: after several
// changes in a row, the intermediate sets may or may not be sent (updates are coalesced).
func (w *watcher) until(want ...string) {
	w.t.Helper()
	if want == nil {
		want = []string{}
	}
	if w.got && slices.Equal(w.last, want) {
		return
	}
	for {
		u := w.next()
		if u.Err != nil {
			w.t.Fatalf("unexpected error update while waiting for %v: %v", want, u.Err)
		}
		if slices.Equal(u.Peers, want) {
			return
		}
	}
}

// client returns a fake clientset holding the given slices.
func client(t *testing.T, objs ...*discoveryv1.EndpointSlice) *fake.Clientset {
	t.Helper()
	c := fake.NewClientset()
	for _, s := range objs {
		create(t, c, s)
	}
	return c
}

func create(t *testing.T, c kubernetes.Interface, s *discoveryv1.EndpointSlice) {
	t.Helper()
	if _, err := c.DiscoveryV1().EndpointSlices(s.Namespace).Create(context.Background(), s, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create slice %s: %v", s.Name, err)
	}
}

func update(t *testing.T, c kubernetes.Interface, s *discoveryv1.EndpointSlice) {
	t.Helper()
	if _, err := c.DiscoveryV1().EndpointSlices(s.Namespace).Update(context.Background(), s, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update slice %s: %v", s.Name, err)
	}
}

func remove(t *testing.T, c kubernetes.Interface, namespace, name string) {
	t.Helper()
	if err := c.DiscoveryV1().EndpointSlices(namespace).Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete slice %s: %v", name, err)
	}
}
