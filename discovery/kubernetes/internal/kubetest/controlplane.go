//go:build linux

package kubetest

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// BinDirEnv names the directory holding kube-apiserver and etcd, instead of the cache directory
// build.sh uses by default.
const BinDirEnv = "GROUPCACHE_K8S_BIN_DIR"

// SkipEnv, set to 1, skips the tests that need the control plane (./test.sh sets it when the
// binaries cannot be built).
const SkipEnv = "GROUPCACHE_SKIP_KUBE_APISERVER"

// AdminToken authenticates the test itself, a member of system:masters, through a static token
// file: the workloads' own identities are ServiceAccounts, with tokens from the TokenRequest API.
const AdminToken = "groupcache-test-admin"

// startTimeout bounds the start of a server: generous, since the machine running the tests may be
// loaded (an idle one starts kube-apiserver in about 2 s).
const startTimeout = 90 * time.Second

// BinDir returns the directory where build.sh puts the binaries: $GROUPCACHE_K8S_BIN_DIR,
// or groupcache-k8s/kube-apiserver-<version>-etcd-<version> in the user's cache directory, with
// the versions the go.mod files of testdata/controlplane pin.
func BinDir() (string, error) {
	if d := os.Getenv(BinDirEnv); d != "" {
		return d, nil
	}
	testdata, err := testdataDir()
	if err != nil {
		return "", err
	}
	k8s, err := pinnedVersion(filepath.Join(testdata, "kube-apiserver", "go.mod"), "k8s.io/kubernetes")
	if err != nil {
		return "", err
	}
	etcd, err := pinnedVersion(filepath.Join(testdata, "etcd", "go.mod"), "go.etcd.io/etcd/server/v3")
	if err != nil {
		return "", err
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(cache, "groupcache-k8s", "kube-apiserver-"+k8s+"-etcd-"+etcd), nil
}

// testdataDir returns the module's testdata/controlplane directory, looked for from the working
// directory (a test's: its package's directory) upwards.
func testdataDir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		d := filepath.Join(dir, "testdata", "controlplane")
		if _, err := os.Stat(filepath.Join(d, "build.sh")); err == nil {
			return d, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("testdata/controlplane not found above the working directory")
		}
		dir = parent
	}
}

// pinnedVersion returns the version of module that the go.mod file modFile requires.
func pinnedVersion(modFile, module string) (string, error) {
	b, err := os.ReadFile(modFile)
	if err != nil {
		return "", err
	}
	re := regexp.MustCompile(`(?m)^\s*(?:require\s+)?` + regexp.QuoteMeta(module) + `\s+(v\S+)`)
	m := re.FindSubmatch(b)
	if m == nil {
		return "", fmt.Errorf("%s requires no %s", modFile, module)
	}
	return string(m[1]), nil
}

// controlPlane is the paths of the two binaries.
type controlPlane struct {
	apiserver, etcd string
}

// need returns the binaries, or skips the test when they are not built.
func need(t testing.TB) controlPlane {
	t.Helper()
	if os.Getenv(SkipEnv) == "1" {
		t.Skipf("real-API-server test skipped: %s=1", SkipEnv)
	}
	dir, err := BinDir()
	if err != nil {
		t.Skipf("real-API-server test skipped: %v", err)
	}
	cp := controlPlane{apiserver: filepath.Join(dir, "kube-apiserver"), etcd: filepath.Join(dir, "etcd")}
	for _, bin := range []string{cp.apiserver, cp.etcd} {
		if _, err := os.Stat(bin); err != nil {
			t.Skipf("real-API-server test skipped: %v; build kube-apiserver and etcd with "+
				"discovery/kubernetes/testdata/controlplane/build.sh (several minutes, once; ./test.sh runs it)", err)
		}
	}
	return cp
}

// Cluster is a control plane started by a test: one etcd server and the kube-apiservers on it
// (several make a highly available control plane, as production clusters run), all on
// 127.0.0.1, RBAC authorization on, stopped when the test ends.
type Cluster struct {
	t       testing.TB
	cp      controlPlane
	dir     string
	etcd    *process
	etcdURL string
	Servers []*APIServer
}

// APIServer is one kube-apiserver of a Cluster.
type APIServer struct {
	c     *Cluster
	i     int
	port  int
	args  []string
	proc  *process // nil while stopped
	caPEM []byte   // the self-signed serving certificate it made, and its CA
}

// Start starts etcd and n kube-apiservers with the extra flags given, and waits until
// every server is ready.
func Start(t testing.TB, n int, flags ...string) *Cluster {
	t.Helper()
	c := &Cluster{t: t, cp: need(t), dir: t.TempDir()}
	t.Cleanup(c.stopAll)
	c.startEtcd()
	c.writeCredentials()
	for i := range n {
		a := &APIServer{c: c, i: i}
		c.Servers = append(c.Servers, a)
		a.port = freePort(t)
		certDir := filepath.Join(c.dir, fmt.Sprint("apiserver-", i))
		a.args = append([]string{
			"--etcd-servers=" + c.etcdURL,
			"--bind-address=127.0.0.1",
			"--advertise-address=127.0.0.1",
			"--endpoint-reconciler-type=none", // no endpoints for the Service "kubernetes": nothing here dials it
			fmt.Sprint("--secure-port=", a.port),
			"--cert-dir=" + certDir,
			"--authorization-mode=RBAC",
			"--token-auth-file=" + filepath.Join(c.dir, "tokens.csv"),
			"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
			"--service-account-key-file=" + filepath.Join(c.dir, "sa.pub"),
			"--service-account-signing-key-file=" + filepath.Join(c.dir, "sa.key"),
			"--service-cluster-ip-range=10.96.0.0/16",
			"--profiling=false",
			// On SIGTERM, end the watches in flight within 2 s: by default it leaves them open
			// and exits only after its shutdown timeout, a minute.
			"--shutdown-watch-termination-grace-period=2s",
		}, flags...)
		a.Start()
	}
	return c
}

// startEtcd starts the cluster's etcd server and waits until it is healthy.
func (c *Cluster) startEtcd() {
	c.t.Helper()
	client, peer := freePort(c.t), freePort(c.t)
	c.etcdURL = fmt.Sprint("http://127.0.0.1:", client)
	peerURL := fmt.Sprint("http://127.0.0.1:", peer)
	c.etcd = startProcess(c.t, "etcd", c.cp.etcd,
		"--name=default",
		"--data-dir="+filepath.Join(c.dir, "etcd"),
		"--listen-client-urls="+c.etcdURL,
		"--advertise-client-urls="+c.etcdURL,
		"--listen-peer-urls="+peerURL,
		"--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=default="+peerURL,
		"--log-level=warn",
	)
	c.waitFor(c.etcd, "etcd", func() error {
		var health struct{ Health string }
		if err := getJSON(PlainClient(), c.etcdURL+"/health", &health); err != nil {
			return err
		}
		if health.Health != "true" {
			return fmt.Errorf("health %q", health.Health)
		}
		return nil
	})
}

// writeCredentials writes the service-account signing key (shared by the servers, so that each
// accepts the tokens of the others) and the static token of the test's administrator.
func (c *Cluster) writeCredentials() {
	c.t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		c.t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		c.t.Fatal(err)
	}
	files := map[string][]byte{
		"sa.key":     pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}),
		"sa.pub":     pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}),
		"tokens.csv": []byte(AdminToken + ",test-admin,test-admin,system:masters\n"),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(c.dir, name), b, 0o600); err != nil {
			c.t.Fatal(err)
		}
	}
}

// Start starts the server again, after Stop, and waits until it is ready.
func (a *APIServer) Start() {
	c := a.c
	c.t.Helper()
	a.proc = startProcess(c.t, fmt.Sprint("kube-apiserver ", a.i), c.cp.apiserver, a.args...)
	certFile := filepath.Join(c.dir, fmt.Sprint("apiserver-", a.i), "apiserver.crt")
	c.waitFor(a.proc, "kube-apiserver", func() error {
		ca, err := os.ReadFile(certFile) // written before it serves
		if err != nil {
			return err
		}
		a.caPEM = ca
		req, err := http.NewRequest(http.MethodGet, a.url()+"/readyz", nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+AdminToken)
		resp, err := a.httpClient().Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz %d: %s", resp.StatusCode, body)
		}
		return nil
	})
}

// Stop stops the server with sig, SIGTERM (graceful: it ends the watches it serves, as in a
// restart or an upgrade) or SIGKILL (a crash), and waits for it to exit.
func (a *APIServer) Stop(sig syscall.Signal) {
	if a.proc != nil {
		a.proc.stop(sig)
		a.proc = nil
	}
}

func (a *APIServer) url() string { return fmt.Sprint("https://127.0.0.1:", a.port) }

func (a *APIServer) httpClient() *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(a.caPEM)
	return &http.Client{
		// No idle connection outlives a request: goleak checks that no goroutine outlives the tests.
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true},
		Timeout:   10 * time.Second,
	}
}

// Config returns a client configuration for this server with the given bearer token.
func (a *APIServer) Config(token string) *rest.Config {
	return &rest.Config{
		Host:            a.url(),
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: a.caPEM},
		QPS:             -1, // no client-side rate limit: the tests make bursts of changes
	}
}

// Client returns a clientset for this server with the given bearer token.
func (a *APIServer) Client(token string) kubernetes.Interface {
	a.c.t.Helper()
	cs, err := kubernetes.NewForConfig(a.Config(token))
	if err != nil {
		a.c.t.Fatal(err)
	}
	return cs
}

// Admin returns a clientset of the test's administrator on the first server.
func (c *Cluster) Admin() kubernetes.Interface { return c.Servers[0].Client(AdminToken) }

// Compact compacts etcd's history up to its current revision (as kube-apiserver does every five
// minutes, and etcd's own auto-compaction): a watch from an older revision then fails with
// "required revision has been compacted", which kube-apiserver turns into 410 Gone.
func (c *Cluster) Compact() {
	c.t.Helper()
	var rng struct{ Header struct{ Revision string } }
	if err := postJSON(c.etcdURL+"/v3/kv/range", `{"key":"AA=="}`, &rng); err != nil {
		c.t.Fatalf("etcd revision: %v", err)
	}
	body := fmt.Sprintf(`{"revision":%s,"physical":true}`, rng.Header.Revision)
	if err := postJSON(c.etcdURL+"/v3/kv/compaction", body, nil); err != nil {
		c.t.Fatalf("etcd compaction: %v", err)
	}
	c.t.Logf("etcd compacted at revision %s", rng.Header.Revision)
}

// waitFor waits until ready returns nil, failing the test if p exits first or it takes longer
// than startTimeout.
func (c *Cluster) waitFor(p *process, name string, ready func() error) {
	c.t.Helper()
	deadline := time.Now().Add(startTimeout)
	for {
		err := ready()
		if err == nil {
			return
		}
		select {
		case <-p.exited:
			c.t.Fatalf("%s exited before it was ready: %v; its output:\n%s", name, p.cmd.ProcessState, p.log.Tail(6000))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s not ready after %v: %v; its output:\n%s", name, startTimeout, err, p.log.Tail(6000))
		}
	}
}

// stopAll stops the servers, then etcd, and prints their output if the test failed.
func (c *Cluster) stopAll() {
	for _, a := range c.Servers {
		if a.proc != nil {
			if c.t.Failed() {
				c.t.Logf("kube-apiserver %d output:\n%s", a.i, a.proc.log.Tail(6000))
			}
			a.proc.stop(syscall.SIGKILL)
		}
	}
	if c.etcd != nil {
		if c.t.Failed() {
			c.t.Logf("etcd output:\n%s", c.etcd.log.Tail(3000))
		}
		c.etcd.stop(syscall.SIGKILL)
	}
}

// process is a server run by a test; it dies with the test's process (Pdeathsig).
type process struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed when it has exited
	log    *Buffer       // its output
}

func startProcess(t testing.TB, name, bin string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(bin, args...), exited: make(chan struct{}), log: &Buffer{}}
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.cmd.Wait()
		close(p.exited)
	}()
	return p
}

// stop sends sig and waits for the process to exit; SIGKILL after 30 s.
func (p *process) stop(sig syscall.Signal) {
	p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// PlainClient is an HTTP client that keeps no idle connection (goleak checks that no goroutine
// outlives the tests).
func PlainClient() *http.Client {
	return &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
}

func getJSON(c *http.Client, url string, v any) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// postJSON posts body to etcd's JSON gateway and decodes the answer into v, if not nil.
func postJSON(url, body string, v any) error {
	resp, err := PlainClient().Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: %s: %s", url, resp.Status, b)
	}
	if v == nil {
		return nil
	}
	return json.Unmarshal(b, v)
}

// Buffer is a bytes.Buffer safe for concurrent writes (a server's stdout and stderr).
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// Tail returns the last n bytes written.
func (b *Buffer) Tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.buf.String()
	if len(s) > n {
		s = "..." + s[len(s)-n:]
	}
	return s
}
