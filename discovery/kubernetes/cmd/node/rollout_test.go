//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gck8s "github.com/typedcache/groupcache/discovery/kubernetes"
	"github.com/typedcache/groupcache/discovery/kubernetes/internal/kubetest"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
)

// deploymentSim plays, for pods that run this program's run in this process, the parts of a
// cluster the test does not run: the kubelet (readiness probes, preStop, SIGTERM) and the
// EndpointSlice controller (a slice per pod, since all share 127.0.0.1 and each has its own port;
// the slices list made-up pod IPs, which kubetest.OnLoopback maps back to 127.0.0.1). The pods
// read the real API server with a token of the ServiceAccount groupcache, bound to a Role with
// the verbs of rbac.yaml; a Service routes the clients' requests to the ready pods.
type deploymentSim struct {
	t       *testing.T
	admin   kubernetes.Interface
	sa      kubernetes.Interface // the pods' client
	svc     *corev1.Service
	preStop time.Duration
	next    int // the next pod's number

	mu    sync.Mutex
	ready []*simPod // the pods the Service routes to
}

// simPod is one pod.
type simPod struct {
	name, ip, addr string
	slice          *discoveryv1.EndpointSlice
	sigterm        context.CancelFunc
	exited         chan error // receives run's result
	log            *kubetest.Buffer
}

func newDeploymentSim(t *testing.T, preStop time.Duration) *deploymentSim {
	t.Helper()
	c := kubetest.Start(t, 1)
	admin := c.Admin()
	ns := kubetest.Namespace(t, admin, nil)
	kubetest.RoleFor(t, admin, ns, "groupcache", roleVerbs(t)...)
	return &deploymentSim{
		t: t, admin: admin, preStop: preStop,
		sa:  c.Servers[0].Client(kubetest.SAToken(t, admin, ns, "groupcache")),
		svc: kubetest.Service(t, admin, ns, "groupcache"),
	}
}

// roleVerbs returns the verbs of the Role of rbac.yaml.
func roleVerbs(t *testing.T) []string {
	t.Helper()
	f, err := os.Open(filepath.Join(examples, "rbac.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := k8syaml.NewYAMLOrJSONDecoder(f, 4096)
	for {
		var r rbacv1.Role
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("rbac.yaml: no Role with one rule: %v", err)
		}
		if r.Kind == "Role" && len(r.Rules) == 1 {
			return r.Rules[0].Verbs
		}
	}
}

// start starts a pod with the given secrets and waits until it is ready: the kubelet's probe
// passes and the controller marks its endpoint ready. The Service then routes to it.
func (d *deploymentSim) start(secret, accepted string) *simPod {
	t := d.t
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(l.Addr().String())
	p := &simPod{name: fmt.Sprint("groupcache-", d.next), ip: fmt.Sprint("10.244.0.", d.next+1), addr: l.Addr().String(),
		exited: make(chan error, 1), log: &kubetest.Buffer{}}
	d.next++
	src, err := gck8s.New(gck8s.Config{Client: d.sa, Namespace: d.svc.Namespace, Service: d.svc.Name, PortName: "groupcache"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := config{podIP: "127.0.0.1", namespace: d.svc.Namespace, service: d.svc.Name, portName: "groupcache", port: port,
		secret: secret, accepted: accepted}
	ctx, sigterm := context.WithCancel(context.Background())
	p.sigterm = sigterm
	log := slog.New(slog.NewTextHandler(p.log, nil))
	go func() { p.exited <- run(ctx, log, cfg, l, kubetest.OnLoopback(src)) }()
	t.Cleanup(func() {
		sigterm()
		<-p.exited
		if t.Failed() {
			t.Logf("%s (%s) logs:\n%s", p.name, p.addr, p.log.Tail(4000))
		}
	})

	portNum := int32(l.Addr().(*net.TCPAddr).Port)
	p.slice = kubetest.Slice(d.svc, p.name+"-slice", portNum, kubetest.Endpoint(p.name, p.ip, kubetest.Starting))
	d.create(p.slice)
	probes := time.NewTicker(100 * time.Millisecond) // the kubelet's probe period
	defer probes.Stop()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := kubetest.Probe(t, p.addr)
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after 30 s: %d %s", p.name, code, body)
		}
		<-probes.C
	}
	p.slice.Endpoints[0] = kubetest.Endpoint(p.name, p.ip, kubetest.Ready)
	d.update(p.slice)
	d.mu.Lock()
	d.ready = append(d.ready, p)
	d.mu.Unlock()
	return p
}

// remove deletes the pod as the kubelet and the controller do: its endpoint turns terminating (the
// Service stops routing to it), preStop sleeps, then SIGTERM; once the program has exited, its
// endpoint goes. It returns at once; the returned channel receives, when the pod is gone, how
// long the other ready pods' rings took to drop it (measured while preStop sleeps; at most
// preStop) and the pod's stats read just before SIGTERM.
func (d *deploymentSim) remove(p *simPod) <-chan removal {
	d.mu.Lock()
	d.ready = slices.DeleteFunc(d.ready, func(q *simPod) bool { return q == p })
	others := slices.Clone(d.ready)
	d.mu.Unlock()
	p.slice.Endpoints[0] = kubetest.Endpoint(p.name, p.ip, kubetest.Leaving)
	d.update(p.slice)
	start := time.Now()
	done := make(chan removal, 1)
	go func() {
		r := removal{pod: p, dropped: -1}
		sigterm := time.NewTimer(d.preStop) // the kubelet's preStop sleep, then SIGTERM
		look := time.NewTicker(20 * time.Millisecond)
		defer look.Stop()
	wait:
		for {
			if r.dropped < 0 && !inAnyRing(others, p.addr) {
				r.dropped = time.Since(start)
			}
			select {
			case <-look.C:
			case <-sigterm.C:
				break wait
			}
		}
		r.stats, r.statsErr = readStats(p.addr)
		p.sigterm()
		r.err = <-p.exited
		p.exited <- r.err // for the cleanup
		done <- r
	}()
	return done
}

// removal is the account of a pod's end.
type removal struct {
	pod      *simPod
	dropped  time.Duration // how long the other pods' rings kept it; -1 if longer than preStop
	stats    stats         // the pod's, just before SIGTERM
	statsErr error
	err      error // run's
}

// finish waits for the end of a removed pod and deletes its slice.
func (d *deploymentSim) finish(ch <-chan removal) removal {
	d.t.Helper()
	r := <-ch
	if err := d.admin.DiscoveryV1().EndpointSlices(d.svc.Namespace).Delete(context.Background(), r.pod.slice.Name, metav1.DeleteOptions{}); err != nil {
		d.t.Fatal(err)
	}
	if r.err != nil {
		d.t.Errorf("%s: run = %v after SIGTERM, want nil", r.pod.name, r.err)
	}
	return r
}

func (d *deploymentSim) create(s *discoveryv1.EndpointSlice) {
	d.t.Helper()
	if _, err := d.admin.DiscoveryV1().EndpointSlices(s.Namespace).Create(context.Background(), s, metav1.CreateOptions{}); err != nil {
		d.t.Fatal(err)
	}
}

func (d *deploymentSim) update(s *discoveryv1.EndpointSlice) {
	d.t.Helper()
	if _, err := d.admin.DiscoveryV1().EndpointSlices(s.Namespace).Update(context.Background(), s, metav1.UpdateOptions{}); err != nil {
		d.t.Fatal(err)
	}
}

// inAnyRing reports whether one of pods (those that answer) has addr in its ring.
func inAnyRing(pods []*simPod, addr string) bool {
	for _, q := range pods {
		if s, err := readStats(q.addr); err == nil && slices.Contains(s.Peers, addr) {
			return true
		}
	}
	return false
}

func readStats(addr string) (stats, error) {
	var s stats
	resp, err := kubetest.PlainClient().Get("http://" + addr + "/stats")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return s, errors.New(resp.Status)
	}
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

// clients send GET /get requests to the ready pods, as through the Service, until stop; they
// count the requests and the failures (any answer but 200, or no answer).
type clients struct {
	requests, failures atomic.Int64
	firstFailure       atomic.Value // string
	stop               chan struct{}
	wg                 sync.WaitGroup
}

func (d *deploymentSim) clients(n int) *clients {
	c := &clients{stop: make(chan struct{})}
	for range n {
		c.wg.Go(func() {
			for {
				select {
				case <-c.stop:
					return
				default:
				}
				d.mu.Lock()
				p := d.ready[rand.N(len(d.ready))] // never empty: a pod is added before one is removed
				d.mu.Unlock()
				c.get(p.addr, fmt.Sprint("page-", rand.N(200)))
			}
		})
	}
	return c
}

func (c *clients) get(addr, key string) {
	c.requests.Add(1)
	resp, err := kubetest.PlainClient().Get("http://" + addr + "/get?key=" + key)
	if err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("%s: %s", resp.Status, body)
		}
	}
	if err != nil {
		c.failures.Add(1)
		c.firstFailure.CompareAndSwap(nil, fmt.Sprintf("GET %s of %s: %v", key, addr, err))
	}
}

func (c *clients) halt(t *testing.T) {
	close(c.stop)
	c.wg.Wait()
	t.Logf("%d requests, %d failed", c.requests.Load(), c.failures.Load())
	if c.failures.Load() > 0 {
		t.Errorf("%d of %d requests failed; the first: %v", c.failures.Load(), c.requests.Load(), c.firstFailure.Load())
	}
	if c.requests.Load() < 100 {
		t.Errorf("only %d requests made", c.requests.Load())
	}
}

// rollout replaces every pod of old by a new one with the given secrets, as the Deployment does
// with maxSurge 1 and maxUnavailable 0: a new pod, once ready, then the removal of an old one
// (which runs on: preStop does not hold the rollout up). It returns the new pods and the removals.
func (d *deploymentSim) rollout(old []*simPod, secret, accepted string) ([]*simPod, []removal) {
	var pods []*simPod
	var pending []<-chan removal
	for _, p := range old {
		pods = append(pods, d.start(secret, accepted))
		pending = append(pending, d.remove(p))
	}
	var removals []removal
	for _, ch := range pending {
		removals = append(removals, d.finish(ch))
	}
	return pods, removals
}

// A rolling update of three pods with the settings of deployment.yaml (its preStop, the program's
// leave and discovery.Run's defaults) fails no request, and the other pods' rings drop each
// deleted pod while its preStop sleeps, before it stops serving.
func TestRollingUpdate(t *testing.T) {
	_, c := deployment(t)
	d := newDeploymentSim(t, preStop(t, c))
	const secret = "a shared secret of 32 bytes....."
	var pods []*simPod
	for range 3 {
		pods = append(pods, d.start(secret, ""))
	}
	cl := d.clients(4)
	pods, removals := d.rollout(pods, secret, "")
	cl.halt(t)
	for _, r := range removals {
		t.Logf("%s: dropped from the other rings %v after its endpoint turned terminating (preStop %v)", r.pod.name, r.dropped, d.preStop)
		if r.dropped < 0 {
			t.Errorf("%s: still in another pod's ring when its preStop of %v ended", r.pod.name, d.preStop)
		}
	}
	var want []string
	for _, p := range pods {
		want = append(want, p.addr)
	}
	slices.Sort(want)
	for _, p := range pods {
		if s, err := readStats(p.addr); err != nil || !slices.Equal(s.Peers, want) {
			t.Errorf("%s: peers %v (%v), want %v", p.name, s.Peers, err, want)
		}
	}
}

// The three rollouts of docs/security.md rotate the shared secret with no request failed and no
// connection refused between pods: first every pod accepts the new secret while proving the old,
// then proves the new while accepting the old, then drops the old. A pod that proves a secret the
// others do not accept yet (a step skipped) is refused, which the test sees. preStop is left out:
// it changes nothing here.
func TestSecretRotation(t *testing.T) {
	d := newDeploymentSim(t, 0)
	const oldSecret, newSecret = "the old secret of 32 bytes......", "the new secret of 32 bytes......"
	var pods []*simPod
	for range 3 {
		pods = append(pods, d.start(oldSecret, ""))
	}
	cl := d.clients(2)
	refused := func(step string, removals []removal) int64 {
		var n, served int64
		for _, r := range removals {
			if r.statsErr != nil {
				t.Errorf("%s: stats of %s: %v", step, r.pod.name, r.statsErr)
			}
			n += r.stats.Node.Server.Refused
			served += r.stats.Node.Server.Requests
		}
		if served == 0 {
			t.Errorf("%s: the replaced pods served no peer request: the step was not exercised", step)
		}
		return n
	}
	for _, step := range []struct{ secret, accepted string }{{oldSecret, newSecret}, {newSecret, oldSecret}, {newSecret, ""}} {
		var removals []removal
		pods, removals = d.rollout(pods, step.secret, step.accepted)
		if n := refused(fmt.Sprintf("%+v", step), removals); n > 0 {
			t.Errorf("step %q accepting %q: %d connections refused by the pods it replaced", step.secret, step.accepted, n)
		}
	}
	cl.halt(t)
	for _, p := range pods {
		if st, err := readStats(p.addr); err != nil || st.Node.Server.Refused > 0 {
			t.Errorf("%s after the rotation: %d connections refused (%v)", p.name, st.Node.Server.Refused, err)
		}
	}

	// The wrong order: a pod proving a secret that the running pods do not accept yet. Its
	// requests for the keys they own are refused.
	bad := d.start("a secret nobody accepts yet.....", newSecret)
	for i := range 50 {
		cl.get(bad.addr, fmt.Sprint("page-", i))
	}
	var n int64
	for _, p := range pods {
		st, err := readStats(p.addr)
		if err != nil {
			t.Fatal(err)
		}
		n += st.Node.Server.Refused
	}
	if n == 0 {
		t.Errorf("a pod proving a secret the others do not accept was not refused: the test cannot see refusals")
	}
}
