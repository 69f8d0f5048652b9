//go:build linux

package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
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
	"github.com/typedcache/groupcache/internal/testpki"
	"github.com/typedcache/groupcache/peer"
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
	scheme  string
	http    *http.Client // the kubelet's and the clients'

	mu    sync.Mutex
	ready []*simPod // the pods the Service routes to
}

// simPod is one pod.
type simPod struct {
	name, ip, addr string
	tlsDir         string // its certificate files, with TLS
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
		t: t, admin: admin, preStop: preStop, scheme: "http", http: kubetest.PlainClient(),
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

// withSecret makes a pod prove secret and accept accepted too.
func withSecret(secret, accepted string) func(*config) {
	return func(c *config) { c.secret, c.accepted = secret, accepted }
}

// useTLS makes the kubelet and the clients speak HTTPS to the pods, trusting the CAs.
func (d *deploymentSim) useTLS(cas ...*testpki.CA) {
	pool := x509.NewCertPool()
	for _, ca := range cas {
		pool.AddCert(must(x509.ParseCertificate(ca.CertDER())))
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	d.t.Cleanup(tr.CloseIdleConnections) // goleak checks that no goroutine outlives the tests
	d.scheme = "https"
	d.http = &http.Client{Timeout: 10 * time.Second, Transport: tr}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// withTLS gives a pod certificate files in a directory of its own, as cert-manager writes them:
// its certificate from issuer, and the CA it trusts, the cluster's.
func (d *deploymentSim) withTLS(issuer, cluster *testpki.CA) func(*config) {
	return func(c *config) {
		c.tlsDir = d.t.TempDir()
		writeCert(d.t, c.tlsDir, issuer, cluster)
	}
}

// writeCert writes into dir a new certificate from issuer for 127.0.0.1 (tls.crt, tls.key) and
// the certificate of the CA trusted (ca.crt), all three replaced at once, as Kubernetes updates
// the files of a volume (a Secret's, or the CSI driver's of cert-manager): each file is a link
// into a directory that a link swapped atomically designates.
func writeCert(t *testing.T, dir string, issuer, trusted *testpki.CA) {
	t.Helper()
	cert, err := issuer.Node("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.MkdirTemp(dir, "..data-")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"tls.crt": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}),
		"tls.key": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}),
		"ca.crt":  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: trusted.CertDER()}),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(data, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	link := filepath.Join(dir, "..data")
	if err := os.Symlink(filepath.Base(data), link+"-new"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(link+"-new", link); err != nil {
		t.Fatal(err)
	}
	for name := range files {
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrExist) {
			t.Fatal(err)
		}
	}
}

// start starts a pod, its authentication set by auth, and waits until it is ready: the
// kubelet's probe passes and the controller marks its endpoint ready. The Service then routes to
// it.
func (d *deploymentSim) start(auth func(*config)) *simPod {
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
	cfg := config{podIP: "127.0.0.1", namespace: d.svc.Namespace, service: d.svc.Name, portName: "groupcache", port: port}
	auth(&cfg)
	p.tlsDir = cfg.tlsDir
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
		code, body, err := d.get(p.addr, peer.DefaultBasePath+"readyz")
		if err == nil && code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after 30 s: %d %s %v", p.name, code, body, err)
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
			if r.dropped < 0 && !d.inAnyRing(others, p.addr) {
				r.dropped = time.Since(start)
			}
			select {
			case <-look.C:
			case <-sigterm.C:
				break wait
			}
		}
		r.stats, r.statsErr = d.stats(p.addr)
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
func (d *deploymentSim) inAnyRing(pods []*simPod, addr string) bool {
	for _, q := range pods {
		if s, err := d.stats(q.addr); err == nil && slices.Contains(s.Peers, addr) {
			return true
		}
	}
	return false
}

// stats returns a pod's /stats.
func (d *deploymentSim) stats(addr string) (stats, error) {
	var s stats
	code, body, err := d.get(addr, "/stats")
	if err != nil {
		return s, err
	}
	if code != http.StatusOK {
		return s, fmt.Errorf("%d %s", code, body)
	}
	return s, json.Unmarshal(body, &s)
}

// get sends GET path to a pod, over HTTPS with TLS, and returns the status code and the body.
func (d *deploymentSim) get(addr, path string) (int, []byte, error) {
	resp, err := d.http.Get(d.scheme + "://" + addr + path)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// clients send GET /get requests to the ready pods, as through the Service, until stop; they
// count the requests and the failures (any answer but 200, or no answer).
type clients struct {
	d                  *deploymentSim
	requests, failures atomic.Int64
	firstFailure       atomic.Value // string
	stop               chan struct{}
	wg                 sync.WaitGroup
}

func (d *deploymentSim) clients(n int) *clients {
	c := &clients{d: d, stop: make(chan struct{})}
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
	code, body, err := c.d.get(addr, "/get?key="+key)
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("%d: %s", code, body)
	}
	if err != nil {
		c.failures.Add(1)
		c.firstFailure.CompareAndSwap(nil, fmt.Sprintf("GET %s of %s: %v", key, addr, err))
	}
}

// halt stops the clients once they have made at least 100 requests (a loaded machine may need
// longer than the rollout for that), and checks that none failed.
func (c *clients) halt(t *testing.T) {
	for deadline := time.Now().Add(time.Minute); c.requests.Load() < 100 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
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
func (d *deploymentSim) rollout(old []*simPod, auth func(*config)) ([]*simPod, []removal) {
	var pods []*simPod
	var pending []<-chan removal
	for _, p := range old {
		pods = append(pods, d.start(auth))
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
		pods = append(pods, d.start(withSecret(secret, "")))
	}
	cl := d.clients(4)
	pods, removals := d.rollout(pods, withSecret(secret, ""))
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
		if s, err := d.stats(p.addr); err != nil || !slices.Equal(s.Peers, want) {
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
		pods = append(pods, d.start(withSecret(oldSecret, "")))
	}
	cl := d.clients(2)
	for _, step := range []struct{ secret, accepted string }{{oldSecret, newSecret}, {newSecret, oldSecret}, {newSecret, ""}} {
		var removals []removal
		pods, removals = d.rollout(pods, withSecret(step.secret, step.accepted))
		if n := refusedBy(t, fmt.Sprintf("%+v", step), removals); n > 0 {
			t.Errorf("step %q accepting %q: %d connections refused by the pods it replaced", step.secret, step.accepted, n)
		}
	}
	cl.halt(t)
	for _, p := range pods {
		if st, err := d.stats(p.addr); err != nil || st.Node.Server.Refused > 0 {
			t.Errorf("%s after the rotation: %d connections refused (%v)", p.name, st.Node.Server.Refused, err)
		}
	}

	// The wrong order: a pod proving a secret that the running pods do not accept yet. Its
	// requests for the keys they own are refused.
	bad := d.start(withSecret("a secret nobody accepts yet.....", newSecret))
	for i := range 50 {
		cl.get(bad.addr, fmt.Sprint("page-", i))
	}
	if d.refusedNow(pods) == 0 {
		t.Errorf("a pod proving a secret the others do not accept was not refused: the test cannot see refusals")
	}
}

// refusedBy returns how many connections the removed pods refused, checking that they served
// peers at all.
func refusedBy(t *testing.T, step string, removals []removal) int64 {
	t.Helper()
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

// refusedNow returns how many connections the pods have refused.
func (d *deploymentSim) refusedNow(pods []*simPod) int64 {
	d.t.Helper()
	var n int64
	for _, p := range pods {
		st, err := d.stats(p.addr)
		if err != nil {
			d.t.Fatal(err)
		}
		n += st.Node.Server.Refused
	}
	return n
}

// With mutual TLS instead of the secret: every pod reads its certificate files in cert-manager's
// layout (GROUPCACHE_TLS_DIR) and serves HTTPS on its port (probes and application too). A rolling
// update fails no request and no connection between pods is refused. A certificate renewed in
// place (the files replaced) is served from the next connection on, without a restart. A pod whose
// certificate another CA issued is refused.
func TestTLSRollingUpdate(t *testing.T) {
	ca, other := must(testpki.New()), must(testpki.New())
	d := newDeploymentSim(t, 0)
	d.useTLS(ca, other)
	var pods []*simPod
	for range 3 {
		pods = append(pods, d.start(d.withTLS(ca, ca)))
	}
	cl := d.clients(2)
	pods, removals := d.rollout(pods, d.withTLS(ca, ca))
	if n := refusedBy(t, "rollout", removals); n > 0 {
		t.Errorf("%d connections refused during the rollout", n)
	}

	before := servedSerial(t, pods[0].addr, ca)
	writeCert(t, pods[0].tlsDir, ca, ca)
	if after := servedSerial(t, pods[0].addr, ca); after == before {
		t.Errorf("%s still serves the certificate %s after its renewal", pods[0].name, before)
	}
	cl.halt(t)
	if n := d.refusedNow(pods); n > 0 {
		t.Errorf("%d connections refused after the rollout", n)
	}

	foreign := d.start(d.withTLS(other, ca))
	for i := range 50 {
		cl.get(foreign.addr, fmt.Sprint("page-", i))
	}
	if d.refusedNow(pods) == 0 {
		t.Errorf("a pod with a certificate of another CA was not refused: the test cannot see refusals")
	}
}

// servedSerial returns the serial number of the certificate the pod at addr serves on a new
// connection.
func servedSerial(t *testing.T, addr string, ca *testpki.CA) string {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
}
