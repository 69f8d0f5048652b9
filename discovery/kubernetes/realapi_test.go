//go:build linux

package kubernetes_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/typedcache/groupcache/discovery"
	gck8s "github.com/typedcache/groupcache/discovery/kubernetes"
	"github.com/typedcache/groupcache/discovery/kubernetes/internal/kubetest"
	"github.com/typedcache/groupcache/internal/discoverytest"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

// The manifests of examples/kubernetes are accepted by a real API server as they are. Every
// object passes a server-side dry run (validation with unknown fields refused, defaulting,
// admission) with no warning, in a namespace that enforces the "restricted" Pod Security
// Standard; so does the Secret the README creates, and, once the RBAC objects are applied for
// real, the pod the Deployment would create (which the ServiceAccount admission gives the
// account's token, as InCluster reads it).
func TestRealManifests(t *testing.T) {
	t.Parallel()
	c := kubetest.Start(t, 1)
	admin := c.Admin()
	ns := kubetest.Namespace(t, admin, map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted",
		"pod-security.kubernetes.io/warn":    "restricted",
	})
	ap := newApplier(t, c.Servers[0].Config(kubetest.AdminToken))

	files := []string{"deployment.yaml", "rbac.yaml", "service.yaml"}
	all, err := filepath.Glob(filepath.Join(examplesDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range all {
		all[i] = filepath.Base(all[i])
	}
	if !slices.Equal(all, files) {
		t.Fatalf("examples/kubernetes has the manifests %v; this test applies %v", all, files)
	}
	var kinds []string
	var deployment *unstructured.Unstructured
	for _, f := range files {
		for _, obj := range manifests(t, f) {
			got, warns, err := ap.apply(ns, obj, true)
			name := f + ": " + obj.GetKind() + " " + obj.GetName()
			if err != nil {
				t.Errorf("%s: server-side dry run: %v", name, err)
				continue
			}
			if len(warns) > 0 {
				t.Errorf("%s: warnings: %q", name, warns)
			}
			kinds = append(kinds, obj.GetKind())
			if obj.GetKind() == "Deployment" {
				deployment = got
			}
		}
	}
	slices.Sort(kinds)
	if want := []string{"Deployment", "Role", "RoleBinding", "Service", "ServiceAccount"}; !slices.Equal(kinds, want) {
		t.Fatalf("objects dry-run: %v, want %v", kinds, want)
	}

	// The Secret, as the README's kubectl create secret makes it.
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "groupcache"}, StringData: map[string]string{"secret": "0123456789abcdef0123456789abcdef"}}
	if _, err := admin.CoreV1().Secrets(ns).Create(context.Background(), secret, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
		t.Errorf("Secret: server-side dry run: %v", err)
	}

	for _, obj := range manifests(t, "rbac.yaml") {
		if _, _, err := ap.apply(ns, obj, false); err != nil {
			t.Fatalf("apply %s %s: %v", obj.GetKind(), obj.GetName(), err)
		}
	}
	pod := podOf(t, deployment)
	got, warns, err := ap.apply(ns, pod, true)
	if err != nil || len(warns) > 0 {
		t.Fatalf("the Deployment's pod: server-side dry run: %v; warnings %q", err, warns)
	}
	var p corev1.Pod
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(got.Object, &p); err != nil {
		t.Fatal(err)
	}
	mounted := false
	for _, m := range p.Spec.Containers[0].VolumeMounts {
		mounted = mounted || m.MountPath == "/var/run/secrets/kubernetes.io/serviceaccount"
	}
	if p.Spec.ServiceAccountName != "groupcache" || !mounted {
		t.Errorf("the pod runs as %q with mounts %+v; want the ServiceAccount groupcache and its token mounted where InCluster reads it",
			p.Spec.ServiceAccountName, p.Spec.Containers[0].VolumeMounts)
	}
}

// podOf returns the pod that the Deployment's ReplicaSet would create from its template.
func podOf(t *testing.T, deployment *unstructured.Unstructured) *unstructured.Unstructured {
	t.Helper()
	tmpl, found, err := unstructured.NestedMap(deployment.Object, "spec", "template")
	if err != nil || !found {
		t.Fatalf("the Deployment has no pod template: %v", err)
	}
	pod := &unstructured.Unstructured{Object: tmpl}
	pod.SetAPIVersion("v1")
	pod.SetKind("Pod")
	pod.SetName("groupcache-test")
	pod.SetCreationTimestamp(metav1.Time{})
	return pod
}

// The Role of rbac.yaml suffices: the source, running with a token of the ServiceAccount
// groupcache (from the TokenRequest API, as the kubelet mounts it into the pod), reports the
// Service's endpoints and follows their changes; the same token reads nothing else.
func TestRealRoleSuffices(t *testing.T) {
	t.Parallel()
	c := kubetest.Start(t, 1)
	admin := c.Admin()
	ns := kubetest.Namespace(t, admin, nil)
	ap := newApplier(t, c.Servers[0].Config(kubetest.AdminToken))
	for _, obj := range manifests(t, "rbac.yaml") {
		if _, _, err := ap.apply(ns, obj, false); err != nil {
			t.Fatalf("apply %s %s: %v", obj.GetKind(), obj.GetName(), err)
		}
	}
	s := kubetest.Service(t, admin, ns, svc)
	sl := kubetest.Slice(s, svc+"-x7k2p", 8080, kubetest.Endpoint("gc-0", "10.244.0.10", kubetest.Ready), kubetest.Endpoint("gc-1", "10.244.0.11", kubetest.Ready))
	create(t, admin, sl)

	sa := c.Servers[0].Client(kubetest.SAToken(t, admin, ns, "groupcache"))
	w := watch(t, newSource(t, gck8s.Config{Client: sa, Namespace: ns, Service: svc, PortName: "groupcache"}))
	w.expect("10.244.0.10:8080", "10.244.0.11:8080")
	sl.Endpoints[1] = kubetest.Endpoint("gc-1", "10.244.0.11", kubetest.Leaving)
	update(t, admin, sl)
	w.expect("10.244.0.10:8080")

	ctx := context.Background()
	if _, err := sa.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("the ServiceAccount lists Secrets: %v, want Forbidden", err)
	}
	if _, err := sa.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("the ServiceAccount lists Pods: %v, want Forbidden", err)
	}
	if _, err := sa.DiscoveryV1().EndpointSlices("default").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("the ServiceAccount lists the EndpointSlices of another namespace: %v, want Forbidden", err)
	}
}

// A Role that lacks a verb the source needs is reported clearly: Updates with Err set, Forbidden
// (apierrors.IsForbidden), naming the namespace and Service watched, the ServiceAccount and the
// verb it lacks. Without watch, the first list still works and its set is sent. get is not
// needed. Without list, the source still works against this API server: client-go's informer
// streams the initial list over a watch (sendInitialEvents) and lists only where a server cannot.
func TestRealMissingVerbReported(t *testing.T) {
	t.Parallel()
	c := kubetest.Start(t, 1)
	admin := c.Admin()
	ns := kubetest.Namespace(t, admin, nil)
	s := kubetest.Service(t, admin, ns, svc)
	create(t, admin, kubetest.Slice(s, svc+"-x7k2p", 8080, kubetest.Endpoint("gc-0", "10.244.0.10", kubetest.Ready)))
	for _, tc := range []struct {
		verbs []string
		want  string // in the error; "" for none
	}{
		{verbs: []string{"list", "watch"}},
		{verbs: []string{"watch"}},
		{verbs: []string{"get", "list"}, want: `cannot watch resource "endpointslices" in API group "discovery.k8s.io"`},
		{verbs: []string{"get"}, want: `cannot list resource "endpointslices" in API group "discovery.k8s.io"`},
	} {
		t.Run(strings.Join(tc.verbs, ","), func(t *testing.T) {
			account := kubetest.RoleFor(t, admin, ns, "reader-"+strings.Join(tc.verbs, "-"), tc.verbs...)
			client := c.Servers[0].Client(kubetest.SAToken(t, admin, ns, account))
			w := watch(t, newSource(t, gck8s.Config{Client: client, Namespace: ns, Service: svc, PortName: "groupcache"}))
			if tc.want == "" {
				w.expect("10.244.0.10:8080")
				return
			}
			for {
				u := w.next()
				if u.Err == nil {
					continue // the set, from a list that was allowed
				}
				msg := u.Err.Error()
				for _, part := range []string{tc.want, ns + "/" + svc, "system:serviceaccount:" + ns + ":" + account} {
					if !strings.Contains(msg, part) {
						t.Errorf("error %q does not say %q", msg, part)
					}
				}
				if !apierrors.IsForbidden(u.Err) {
					t.Errorf("error %v is not Forbidden (apierrors.IsForbidden)", u.Err)
				}
				t.Logf("reported: %v", u.Err)
				return
			}
		})
	}
}

// EndpointSlices created, updated and deleted as Kubernetes' EndpointSlice controller does
// (several slices per Service, all three conditions set, ports by name, endpoints moved between
// slices), and the set follows: pods join when ready and leave when not ready or terminating.
func TestRealEndpointSliceChanges(t *testing.T) {
	t.Parallel()
	c := kubetest.Start(t, 1)
	admin := c.Admin()
	ns := kubetest.Namespace(t, admin, nil)
	s := kubetest.Service(t, admin, ns, svc)
	const p0, p1, p2, p3 = "10.244.0.10:8080", "10.244.0.11:8080", "10.244.1.12:8080", "10.244.2.13:8080"
	a := kubetest.Slice(s, svc+"-aaaaa", 8080, kubetest.Endpoint("gc-0", "10.244.0.10", kubetest.Starting), kubetest.Endpoint("gc-1", "10.244.0.11", kubetest.Starting))
	b := kubetest.Slice(s, svc+"-bbbbb", 8080, kubetest.Endpoint("gc-2", "10.244.1.12", kubetest.Starting))
	create(t, admin, a)
	create(t, admin, b)
	other := kubetest.Slice(s, "other-ccccc", 8080, kubetest.Endpoint("other-0", "10.244.9.9", kubetest.Ready))
	other.Labels[discoveryv1.LabelServiceName] = "other"
	create(t, admin, other)

	w := watch(t, newSource(t, gck8s.Config{Client: admin, Namespace: ns, Service: svc, PortName: "groupcache"}))
	w.expect(p0, p1, p2) // none ready yet: the pods starting (a cold start)

	// The pods pass their readiness probes, one (then only the ready one counts), then two at once.
	a.Endpoints[0] = kubetest.Endpoint("gc-0", "10.244.0.10", kubetest.Ready)
	update(t, admin, a)
	w.expect(p0)
	a.Endpoints[1] = kubetest.Endpoint("gc-1", "10.244.0.11", kubetest.Ready)
	b.Endpoints[0] = kubetest.Endpoint("gc-2", "10.244.1.12", kubetest.Ready)
	update(t, admin, a)
	update(t, admin, b)
	w.until(p0, p1, p2)

	// One fails its probe, then passes again.
	b.Endpoints[0] = kubetest.Endpoint("gc-2", "10.244.1.12", kubetest.Unready)
	update(t, admin, b)
	w.expect(p0, p1)
	b.Endpoints[0] = kubetest.Endpoint("gc-2", "10.244.1.12", kubetest.Ready)
	update(t, admin, b)
	w.expect(p0, p1, p2)

	// Scale-out: the controller adds a slice.
	d := kubetest.Slice(s, svc+"-ddddd", 8080, kubetest.Endpoint("gc-3", "10.244.2.13", kubetest.Ready))
	create(t, admin, d)
	w.expect(p0, p1, p2, p3)

	// A pod is deleted: terminating while its probe still passes (serving), then not serving,
	// then gone from its slice. It leaves the set at the first step.
	a.Endpoints[0] = kubetest.Endpoint("gc-0", "10.244.0.10", kubetest.Leaving)
	update(t, admin, a)
	w.expect(p1, p2, p3)
	a.Endpoints[0] = kubetest.Endpoint("gc-0", "10.244.0.10", kubetest.LeavingDown)
	update(t, admin, a)
	a.Endpoints = a.Endpoints[1:]
	update(t, admin, a)

	// The controller moves gc-2 from slice b to slice d (it packs endpoints into fewer slices):
	// added to d first, then removed from b. It stays in the set throughout.
	d.Endpoints = append(d.Endpoints, kubetest.Endpoint("gc-2", "10.244.1.12", kubetest.Ready))
	update(t, admin, d)
	b.Endpoints = nil
	update(t, admin, b)
	remove(t, admin, ns, b.Name)
	// The deletion of slice d takes both its pods away.
	remove(t, admin, ns, d.Name)
	for {
		u := w.next()
		if u.Err != nil {
			t.Fatalf("error update: %v", u.Err)
		}
		if slices.Equal(u.Peers, []string{p1}) {
			break
		}
		if !slices.Equal(u.Peers, []string{p1, p2, p3}) {
			t.Fatalf("set %v while gc-2 moved between slices, want %v (then %v)", u.Peers, []string{p1, p2, p3}, []string{p1})
		}
	}
}

// The API server of the source restarts and its watch expires, and the source misses nothing.
// While the server is down, the other server of a highly available control plane changes the
// Service's slices and etcd's history is compacted. When the server is back, the informer resumes
// its watch from its last resourceVersion, which fails with 410 Gone (the version is older than
// the restarted server's watch cache, or compacted away in etcd when the watch cache is off, as
// for a resource the cache is disabled for); it lists again, and the source reports the new set.
// It never reports an empty set meanwhile (only errors, if anything, which discovery.Run ignores,
// keeping the node's last good set). The server crashes (SIGKILL: the connection breaks, and the
// informer resumes its watch once the server is back) or stops gracefully (SIGTERM: it ends the
// watches it serves; the informer may then resume its watch, or list again at once if the server,
// shutting down, ends its next watch within a second).
func TestRealWatchExpiresAndServerRestarts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		stop    syscall.Signal
		flags   []string
		expires bool // the watch must expire (410 Gone)
	}{
		{"crash", syscall.SIGKILL, nil, true},
		{"crash without watch cache", syscall.SIGKILL, []string{"--watch-cache=false"}, true},
		{"restart", syscall.SIGTERM, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := kubetest.Start(t, 2, tc.flags...)
			via0, via1 := c.Servers[0].Client(kubetest.AdminToken), c.Servers[1].Client(kubetest.AdminToken)
			ns := kubetest.Namespace(t, via0, nil)
			s := kubetest.Service(t, via0, ns, svc)
			const p0, p1, p2, p3 = "10.244.0.10:8080", "10.244.0.11:8080", "10.244.1.12:8080", "10.244.2.13:8080"
			a := kubetest.Slice(s, svc+"-aaaaa", 8080, kubetest.Endpoint("gc-0", "10.244.0.10", kubetest.Ready), kubetest.Endpoint("gc-1", "10.244.0.11", kubetest.Ready))
			b := kubetest.Slice(s, svc+"-bbbbb", 8080, kubetest.Endpoint("gc-2", "10.244.1.12", kubetest.Starting))
			create(t, via0, a)
			create(t, via0, b)

			logs := &kubetest.Buffer{}
			logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			w := watch(t, newSource(t, gck8s.Config{Client: via0, Namespace: ns, Service: svc, PortName: "groupcache", Logger: logger}))
			w.expect(p0, p1)
			// A change seen through the watch: the informer now resumes the watch from its
			// resourceVersion when it ends.
			b.Endpoints[0] = kubetest.Endpoint("gc-2", "10.244.1.12", kubetest.Ready)
			update(t, via0, b)
			w.expect(p0, p1, p2)

			c.Servers[0].Stop(tc.stop)
			a.Endpoints[0] = kubetest.Endpoint("gc-0", "10.244.0.10", kubetest.Leaving)
			update(t, via1, a)
			create(t, via1, kubetest.Slice(s, svc+"-ddddd", 8080, kubetest.Endpoint("gc-3", "10.244.2.13", kubetest.Ready)))
			for i := range 20 { // more history for the compaction to drop
				b.Annotations = map[string]string{"test/revision": strconv.Itoa(i)}
				update(t, via1, b)
			}
			c.Compact()
			c.Servers[0].Start()

			errs := 0
			for {
				u := w.next()
				if u.Err != nil {
					errs++
					continue
				}
				if !slices.Equal(u.Peers, []string{p1, p2, p3}) {
					t.Fatalf("set %v after the restart, want %v", u.Peers, []string{p1, p2, p3})
				}
				break
			}
			// The watch is live again: a change through the restarted server is seen.
			b.Endpoints[0] = kubetest.Endpoint("gc-2", "10.244.1.12", kubetest.Unready)
			update(t, via0, b)
			w.expect(p1, p3)

			var expired []string
			for _, l := range strings.Split(logs.Tail(1<<20), "\n") {
				if strings.Contains(l, "too old") {
					expired = append(expired, l)
				}
			}
			t.Logf("%d error updates while the server was down; the watch expired: %q", errs, expired)
			if tc.expires && len(expired) == 0 {
				t.Errorf("the informer's watch did not expire (no 410 Gone in its logs): the test no longer covers expiry; logs:\n%s", logs.Tail(8000))
			}
		})
	}
}

// A cold start: three pods start at once and none is ready yet, so the Service's slices list
// them all as not ready. The pods turn ready, as the kubelet's readiness probe
// (/_groupcache/readyz, as in deployment.yaml) finds them ready, and the EndpointSlice controller
// then marks them ready (both played by the test). Every node ends with the same ring of the
// three: none stays alone, and every key is then loaded once in the cluster.
func TestRealColdStart(t *testing.T) {
	t.Parallel()
	c := kubetest.Start(t, 1)
	admin := c.Admin()
	ns := kubetest.Namespace(t, admin, nil)
	s := kubetest.Service(t, admin, ns, svc)
	loads := new(discoverytest.LoadCount)
	type pod struct {
		m     *discoverytest.Member
		slice *discoveryv1.EndpointSlice
		ready bool
	}
	var pods []*pod
	var addrs []string
	for i := range 3 {
		m := discoverytest.NewMember(t, loads)
		_, portStr, _ := net.SplitHostPort(m.Node.Self())
		port, _ := strconv.Atoi(portStr)
		name := fmt.Sprint("gc-", i)
		// A slice each: every node has a port of its own (see onLoopback).
		p := &pod{m: m, slice: kubetest.Slice(s, svc+"-"+name, int32(port), kubetest.Endpoint(name, fmt.Sprint("10.244.0.", i+1), kubetest.Starting))}
		create(t, admin, p.slice)
		pods = append(pods, p)
		addrs = append(addrs, m.Node.Self())
	}
	for _, p := range pods {
		p.m.Run(kubetest.OnLoopback(newSource(t, gck8s.Config{Client: admin, Namespace: ns, Service: svc, PortName: "groupcache"})), nil,
			discovery.WithDebounce(10*time.Millisecond))
	}

	// The kubelet probes every pod each period; the controller marks the ready ones ready.
	const period, limit = 100 * time.Millisecond, 30 * time.Second
	tick := time.NewTicker(period)
	defer tick.Stop()
	deadline := time.Now().Add(limit)
	for readyPods := 0; readyPods < len(pods); {
		var answers []string
		for i, p := range pods {
			if p.ready {
				continue
			}
			code, body := kubetest.Probe(t, p.m.Node.Self())
			answers = append(answers, fmt.Sprintf("gc-%d: %d %s", i, code, body))
			if code == http.StatusOK {
				p.ready = true
				readyPods++
				p.slice.Endpoints[0] = kubetest.Endpoint(fmt.Sprint("gc-", i), p.slice.Endpoints[0].Addresses[0], kubetest.Ready)
				update(t, admin, p.slice)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v, pods still not ready: %q", limit, answers)
		}
		<-tick.C
	}
	for _, p := range pods {
		p.m.WaitPeers(t, addrs, wait)
	}
	const keys = 60
	for _, p := range pods {
		p.m.GetKeys(t, "k", keys)
	}
	loads.CheckSpread(t, keys, 3)
}
