package groupcache_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/typedcache/groupcache"
	"github.com/typedcache/groupcache/peer"
)

// The multi-process test re-executes this test binary as cluster nodes: with childEnv set,
// TestChildNode runs a node until its standard input closes.
const childEnv = "GROUPCACHE_TEST_CHILD_NODE"

// Timeouts of the child nodes: how long a Get waits for a peer, and how long a dead peer is skipped.
const (
	childPeerTimeout = 500 * time.Millisecond
	childBackoff     = time.Minute
)

// runResult is a child's report of one workload.
type runResult struct {
	Gets      int64
	Errors    int64
	Wrong     int64
	FirstErr  string
	MaxMillis float64
}

func TestChildNode(t *testing.T) {
	if os.Getenv(childEnv) == "" {
		t.Skip("helper process of TestClusterProcesses")
	}
	if err := runChildNode(); err != nil {
		fmt.Fprintln(os.Stderr, "child node:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func runChildNode() error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	self := l.Addr().String()
	node, err := groupcache.NewNode(self,
		groupcache.WithPeerOptions(peer.WithTimeout(childPeerTimeout), peer.WithDialTimeout(childPeerTimeout)),
		groupcache.WithPeerBackoff(childBackoff))
	if err != nil {
		return err
	}
	var loads atomic.Int64
	cache, err := groupcache.New[string, string]("c", groupcache.LoaderFunc[string, string](
		func(_ context.Context, k string) (string, error) {
			loads.Add(1)
			return "value-" + k, nil
		}), groupcache.WithNode(node))
	if err != nil {
		return err
	}

	mux := http.NewServeMux()
	mux.Handle(peer.DefaultBasePath, node.Handler())
	mux.HandleFunc("POST /control/peers", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := node.SetPeers(strings.Fields(string(body))...); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
	})
	mux.HandleFunc("GET /control/stats", func(w http.ResponseWriter, r *http.Request) {
		st := cache.Stats()
		json.NewEncoder(w).Encode(map[string]int64{"loads": loads.Load(), "fallback": st.FallbackLoads, "remote": st.RemoteGets})
	})
	mux.HandleFunc("POST /control/run", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		keys, _ := strconv.Atoi(q.Get("keys"))
		goroutines, _ := strconv.Atoi(q.Get("goroutines"))
		prefix := q.Get("prefix")
		view := q.Get("view") != "" // ask with View instead of Get
		var res runResult
		var mu sync.Mutex
		var wg sync.WaitGroup
		for g := range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range keys {
					k := prefix + strconv.Itoa((i+g*13)%keys)
					start := time.Now()
					var right bool
					var err error
					if view {
						err = cache.View(r.Context(), k, func(v string) error { right = v == "value-"+k; return nil })
					} else {
						var v string
						v, err = cache.Get(r.Context(), k)
						right = v == "value-"+k
					}
					took := time.Since(start)
					mu.Lock()
					res.Gets++
					res.MaxMillis = max(res.MaxMillis, float64(took)/float64(time.Millisecond))
					if err != nil {
						res.Errors++
						if res.FirstErr == "" {
							res.FirstErr = err.Error()
						}
					} else if !right {
						res.Wrong++
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		json.NewEncoder(w).Encode(res)
	})
	mux.HandleFunc("POST /control/get", func(w http.ResponseWriter, r *http.Request) {
		v, err := cache.Get(r.Context(), r.URL.Query().Get("key"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		io.WriteString(w, v)
	})
	mux.HandleFunc("POST /control/set", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if err := cache.Set(r.Context(), q.Get("key"), q.Get("value")); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	mux.HandleFunc("POST /control/remove", func(w http.ResponseWriter, r *http.Request) {
		if err := cache.Remove(r.Context(), r.URL.Query().Get("key")); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	mux.HandleFunc("POST /control/getmany", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		n, _ := strconv.Atoi(q.Get("keys"))
		keys := make([]string, n)
		for i := range keys {
			keys[i] = q.Get("prefix") + strconv.Itoa(i)
		}
		var res runResult
		for i, got := range cache.GetMany(r.Context(), keys) {
			res.Gets++
			if got.Err != nil {
				res.Errors++
				if res.FirstErr == "" {
					res.FirstErr = got.Err.Error()
				}
			} else if got.Value != "value-"+keys[i] {
				res.Wrong++
			}
		}
		json.NewEncoder(w).Encode(res)
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	fmt.Printf("ADDR %s\n", self)
	io.Copy(io.Discard, os.Stdin) // until the parent closes our stdin or dies
	srv.Close()
	cache.Close()
	return node.Close()
}

// childNode is a node running in another process.
type childNode struct {
	addr  string
	cmd   *exec.Cmd
	stdin io.Closer
}

func startChild(t *testing.T) *childNode {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestChildNode$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &childNode{cmd: cmd, stdin: stdin}
	t.Cleanup(func() { c.stop() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("child did not report its address: %v", err)
	}
	c.addr = strings.TrimPrefix(strings.TrimSpace(line), "ADDR ")
	go io.Copy(io.Discard, stdout)
	return c
}

// stop ends the child gracefully (by closing its stdin) and waits for it.
func (c *childNode) stop() {
	c.stdin.Close()
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		<-done
	}
}

// kill ends the child at once, as a crash would.
func (c *childNode) kill() {
	c.cmd.Process.Kill()
	c.cmd.Wait()
}

func (c *childNode) post(t *testing.T, path, body string) []byte {
	t.Helper()
	resp, err := http.Post("http://"+c.addr+path, "text/plain", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %s: %s", c.addr, path, resp.Status, b)
	}
	return b
}

// run makes the node's goroutines ask for keys prefix0..prefix<keys-1> with Get, or with View when
// view is set, and returns what they saw.
func (c *childNode) run(t *testing.T, prefix string, keys, goroutines int, view ...bool) runResult {
	t.Helper()
	q := url.Values{"prefix": {prefix}, "keys": {strconv.Itoa(keys)}, "goroutines": {strconv.Itoa(goroutines)}}
	if len(view) > 0 && view[0] {
		q.Set("view", "1")
	}
	var res runResult
	if err := json.Unmarshal(c.post(t, "/control/run?"+q.Encode(), ""), &res); err != nil {
		t.Fatal(err)
	}
	return res
}

func (c *childNode) stats(t *testing.T) map[string]int64 {
	t.Helper()
	resp, err := http.Get("http://" + c.addr + "/control/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st map[string]int64
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestClusterProcesses runs three nodes as separate OS processes and counts their loads.
func TestClusterProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	nodes := []*childNode{startChild(t), startChild(t), startChild(t)}
	var addrs []string
	for _, n := range nodes {
		addrs = append(addrs, n.addr)
	}
	for _, n := range nodes {
		n.post(t, "/control/peers", strings.Join(addrs, " "))
	}

	// 3 processes x 50 goroutines ask for the same 500 fresh keys: exactly 500 loads in all.
	const keys, goroutines = 500, 50
	results := make([]runResult, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() { defer wg.Done(); results[i] = n.run(t, "fresh-", keys, goroutines) }()
	}
	wg.Wait()
	var loads int64
	for i, n := range nodes {
		if r := results[i]; r.Errors != 0 || r.Wrong != 0 || r.Gets != keys*goroutines {
			t.Fatalf("node %d: %+v", i, r)
		}
		st := n.stats(t)
		loads += st["loads"]
		t.Logf("node %d: loads %d, remote gets %d", i, st["loads"], st["remote"])
	}
	if loads != keys {
		t.Fatalf("loads across 3 processes = %d, want exactly %d", loads, keys)
	}

	// Fresh keys with View, from every process at once: every value seen is the key's own (remote
	// ones read into memory each node reuses), each key is loaded once in all, by its owner, and
	// concurrent Views of a remote key share one request (on average under two per key and node;
	// without that sharing it was above six).
	var remoteBefore int64
	for _, n := range nodes {
		remoteBefore += n.stats(t)["remote"]
	}
	for i, n := range nodes {
		wg.Add(1)
		go func() { defer wg.Done(); results[i] = n.run(t, "view-", keys, 8, true) }()
	}
	wg.Wait()
	loads = 0
	var remoteAfter int64
	for i, n := range nodes {
		if r := results[i]; r.Errors != 0 || r.Wrong != 0 || r.Gets != keys*8 {
			t.Fatalf("node %d, View: %+v", i, r)
		}
		st := n.stats(t)
		loads += st["loads"]
		remoteAfter += st["remote"]
	}
	if views := remoteAfter - remoteBefore; loads != 2*keys || views == 0 || views > 2*keys*int64(len(nodes)) {
		t.Fatalf("after the Views: %d loads (want %d), %d remote gets", loads, 2*keys, views)
	}
	t.Logf("Views: %d remote gets", remoteAfter-remoteBefore)

	// Kill a node: Gets of its keys on the survivors fall back to local loads and succeed, and
	// none waits longer than the peer timeout plus a margin.
	nodes[2].kill()
	const margin = 2 * time.Second
	for i, n := range nodes[:2] {
		r := n.run(t, "after-", 200, 4)
		if r.Errors != 0 || r.Wrong != 0 {
			t.Fatalf("node %d after the kill: %+v", i, r)
		}
		if limit := float64(childPeerTimeout+margin) / float64(time.Millisecond); r.MaxMillis > limit {
			t.Fatalf("node %d: a Get took %.0f ms, more than the peer timeout plus margin (%.0f ms)", i, r.MaxMillis, limit)
		}
		if st := n.stats(t); st["fallback"] == 0 {
			t.Fatalf("node %d: no fallback loads after its peer died: %v", i, st)
		}
	}
}

// TestClusterProcessesWrites: Set, Remove and GetMany between nodes that are separate OS processes.
func TestClusterProcessesWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	nodes := []*childNode{startChild(t), startChild(t), startChild(t)}
	var addrs []string
	for _, n := range nodes {
		addrs = append(addrs, n.addr)
	}
	for _, n := range nodes {
		n.post(t, "/control/peers", strings.Join(addrs, " "))
	}
	getAll := func(want string) {
		t.Helper()
		for i, n := range nodes {
			// Twice: the second Get is answered from the node's hot copy once it has one.
			for range 2 {
				if v := string(n.post(t, "/control/get?key=k", "")); v != want {
					t.Fatalf("node %d: Get(k) = %q, want %q", i, v, want)
				}
			}
		}
	}
	getAll("value-k")
	nodes[0].post(t, "/control/set?key=k&value=written", "")
	getAll("written")
	nodes[1].post(t, "/control/remove?key=k", "")
	getAll("value-k")
	var loads int64
	for _, n := range nodes {
		loads += n.stats(t)["loads"]
	}
	if loads != 2 {
		t.Fatalf("loads of k = %d, want 2 (before the Set, after the Remove)", loads)
	}

	var res runResult
	if err := json.Unmarshal(nodes[2].post(t, "/control/getmany?prefix=batch-&keys=1000", ""), &res); err != nil {
		t.Fatal(err)
	}
	if res.Gets != 1000 || res.Errors != 0 || res.Wrong != 0 {
		t.Fatalf("GetMany of 1,000 keys: %+v", res)
	}
	loads = 0
	for _, n := range nodes {
		loads += n.stats(t)["loads"]
	}
	if loads != 1002 {
		t.Fatalf("loads after GetMany = %d, want 1002", loads)
	}
}
