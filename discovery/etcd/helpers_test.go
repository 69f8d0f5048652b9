package etcd_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/typedcache/groupcache/discovery"
	gcetcd "github.com/typedcache/groupcache/discovery/etcd"
	"github.com/typedcache/groupcache/internal/discoverytest"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// skipEnv, set to 1, skips the tests that need an etcd server when the etcd binary is missing.
const skipEnv = "GROUPCACHE_SKIP_ETCD"

// etcdServer is a single-member etcd cluster run by a test: Debian's etcd-server package (the
// "etcd" binary) or any etcd 3.4 or later in PATH, listening on 127.0.0.1 only, with its data in
// a test directory.
type etcdServer struct {
	t         *testing.T
	bin       string
	dir       string
	clientURL string
	peerURL   string

	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
	log    *syncBuffer   // the server's output, printed if the test fails
}

// startEtcd starts an etcd server for t, and stops it when t ends. If the etcd binary is not in
// PATH the test fails, unless GROUPCACHE_SKIP_ETCD=1, which skips it.
func startEtcd(t *testing.T) *etcdServer {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		if os.Getenv(skipEnv) == "1" {
			t.Skipf("etcd binary not found, skipped as %s=1", skipEnv)
		}
		t.Fatalf("etcd binary not found in PATH (%v): these tests run a real etcd server; install "+
			"Debian's etcd-server package (apt-get install -y etcd-server), or set %s=1 to skip them", err, skipEnv)
	}
	e := &etcdServer{t: t, bin: bin, dir: t.TempDir(), log: &syncBuffer{}}
	t.Cleanup(func() {
		e.kill()
		if t.Failed() {
			t.Logf("etcd output:\n%s", e.log.tail(8000))
		}
	})
	// Free ports may be taken between picking and binding them: try a few times.
	for attempt := 1; ; attempt++ {
		e.clientURL = "http://" + freeAddr(t)
		e.peerURL = "http://" + freeAddr(t)
		err := e.start()
		if err == nil {
			return e
		}
		if attempt == 3 {
			t.Fatalf("etcd did not start: %v", err)
		}
		t.Logf("etcd did not start (%v); again with other ports", err)
		e.dir = t.TempDir()
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// start runs the server and waits (at most 30 s) until it answers a read.
func (e *etcdServer) start() error {
	cmd := exec.Command(e.bin,
		"--name", "default",
		"--data-dir", e.dir,
		"--listen-client-urls", e.clientURL,
		"--advertise-client-urls", e.clientURL,
		"--listen-peer-urls", e.peerURL,
		"--initial-advertise-peer-urls", e.peerURL,
		"--initial-cluster", "default="+e.peerURL,
		"--initial-cluster-state", "new",
		// Faster elections; the minimum lease TTL becomes 1 s (1.5 election timeouts).
		"--heartbeat-interval", "50",
		"--election-timeout", "500",
		"--logger", "zap",
		"--log-outputs", "stderr",
		"--log-level", "warn",
	)
	cmd.Env = os.Environ()
	if runtime.GOARCH != "amd64" {
		cmd.Env = append(cmd.Env, "ETCD_UNSUPPORTED_ARCH="+runtime.GOARCH) // etcd 3.4 refuses to run otherwise
	}
	cmd.Stdout, cmd.Stderr = e.log, e.log
	if err := cmd.Start(); err != nil {
		return err
	}
	e.cmd, e.exited = cmd, make(chan struct{})
	go func(exited chan struct{}) {
		cmd.Wait()
		close(exited)
	}(e.exited)

	cli := e.newClient()
	defer cli.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		_, err := cli.Get(ctx, "ready")
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-e.exited:
			return fmt.Errorf("etcd exited: %v; output:\n%s", cmd.ProcessState, e.log.tail(4000))
		default:
		}
		if time.Now().After(deadline) {
			e.kill()
			return fmt.Errorf("etcd not ready after 30s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill stops the server abruptly (SIGKILL) and waits for it to exit.
func (e *etcdServer) kill() {
	if e.cmd == nil {
		return
	}
	e.cmd.Process.Signal(syscall.SIGKILL)
	<-e.exited
	e.cmd = nil
}

// restart kills the server and starts it again on the same ports and data.
func (e *etcdServer) restart() {
	e.t.Helper()
	e.kill()
	if err := e.start(); err != nil {
		e.t.Fatalf("etcd restart: %v", err)
	}
}

func (e *etcdServer) newClient() *clientv3.Client {
	e.t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: []string{e.clientURL},
		Logger:    zap.NewNop(),
	})
	if err != nil {
		e.t.Fatalf("etcd client: %v", err)
	}
	return cli
}

// client returns a new client of the server, closed when the test ends.
func (e *etcdServer) client() *clientv3.Client {
	e.t.Helper()
	cli := e.newClient()
	e.t.Cleanup(func() { cli.Close() })
	return cli
}

// syncBuffer is a bytes.Buffer safe for concurrent writes (the server's stdout and stderr).
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.buf.String()
	if len(s) > n {
		s = "..." + s[len(s)-n:]
	}
	return s
}

// peerAddr is the groupcache address registered by test node i (nothing listens there).
func peerAddr(i int) string { return fmt.Sprintf("127.0.0.1:%d", 10001+i) }

// newSource makes a Source on cli with a short TTL; peer "" makes a watch-only one.
func newSource(t *testing.T, cli *clientv3.Client, peer string) *gcetcd.Source {
	t.Helper()
	s, err := gcetcd.New(gcetcd.Config{Client: cli, PeerAddr: peer, TTL: 2 * time.Second})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// watcher runs Watch on a source in the background (discoverytest.Watch) and checks what it
// sends.
type watcher struct {
	t       *testing.T
	name    string
	updates chan discovery.Update
	done    chan struct{} // closed when Watch returned, with its error in err
	err     error
	stop    func() error // cancels the Watch and waits for it to return; it returns Watch's error
	last    []string
	n       int // sets received
	errs    int // errors received
}

func watch(t *testing.T, name string, s *gcetcd.Source) *watcher {
	t.Helper()
	w := &watcher{t: t, name: name}
	w.updates, w.done, w.stop = discoverytest.Watch(t, name, s, &w.err)
	return w
}

// receive handles one update: errors are counted, sets must differ from the previous one.
func (w *watcher) receive(u discovery.Update) {
	w.t.Helper()
	if u.Err != nil {
		w.t.Logf("%s: error update: %v", w.name, u.Err)
		w.errs++
		return
	}
	if !slices.IsSorted(u.Peers) {
		w.t.Errorf("%s: unsorted set %v", w.name, u.Peers)
	}
	if w.n > 0 && slices.Equal(u.Peers, w.last) {
		w.t.Errorf("%s: the same set twice in a row: %v", w.name, u.Peers)
	}
	w.last = u.Peers
	w.n++
}

// waitFor reads updates until one carries exactly want (in any order) and returns how long it
// took. Error updates fail the test unless allowErrs.
func (w *watcher) waitFor(want []string, timeout time.Duration, allowErrs ...bool) time.Duration {
	w.t.Helper()
	want = slices.Sorted(slices.Values(want))
	start := time.Now()
	if w.n > 0 && slices.Equal(w.last, want) {
		return 0
	}
	deadline := time.After(timeout)
	for {
		select {
		case u := <-w.updates:
			if u.Err != nil && (len(allowErrs) == 0 || !allowErrs[0]) {
				w.t.Fatalf("%s: update with error %v", w.name, u.Err)
			}
			w.receive(u)
			if u.Err == nil && slices.Equal(u.Peers, want) {
				return time.Since(start)
			}
		case <-w.done:
			w.t.Fatalf("%s: Watch returned %v while waiting for %v (last %v)", w.name, w.err, want, w.last)
		case <-deadline:
			w.t.Fatalf("%s: no update with %v within %v; last %v after %d sets", w.name, want, timeout, w.last, w.n)
		}
	}
}

// waitErr reads updates until an error arrives and returns it.
func (w *watcher) waitErr(timeout time.Duration) error {
	w.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case u := <-w.updates:
			w.receive(u)
			if u.Err != nil {
				return u.Err
			}
		case <-w.done:
			w.t.Fatalf("%s: Watch returned %v while waiting for an error", w.name, w.err)
		case <-deadline:
			w.t.Fatalf("%s: no error update within %v; last %v", w.name, timeout, w.last)
		}
	}
}

// quiet checks that no set other than the current one arrives for d (errors are allowed).
func (w *watcher) quiet(d time.Duration) {
	w.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case u := <-w.updates:
			w.receive(u)
			if u.Err == nil {
				w.t.Fatalf("%s: unexpected set %v", w.name, u.Peers)
			}
		case <-w.done:
			w.t.Fatalf("%s: Watch returned %v", w.name, w.err)
		case <-deadline:
			return
		}
	}
}

// logBuffer collects log records as text, for tests that look for one.
type logBuffer struct {
	syncBuffer
}

func (b *logBuffer) contains(s string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Contains(b.buf.String(), s)
}
