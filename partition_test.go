package groupcache_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/typedcache/groupcache"
	"github.com/typedcache/groupcache/hash"
	"github.com/typedcache/groupcache/internal/clock"
	"github.com/typedcache/groupcache/peer"
)

// The partition tests run three nodes as separate processes, each in a network namespace of its
// own that the test creates, joined by veth pairs to a bridge in a fourth namespace. Every address
// is in 10.213.0.0/24 and exists only inside those namespaces. Links are cut with nftables rules
// inside a node's namespace that drop packets silently (no reset, no ICMP), as a partition does,
// in both directions or in one, and healed by deleting the rules.
//
// Each node is this test binary run again under `ip netns exec` (TestNetnsNode), driven through
// its standard input and output; it never talks to the test over the network. The loader reads a
// "database" of files the test writes (a key's value, or "value-<key>" when it has no file), so
// the test knows at every moment what a correct value is. Each node's cache reads a fake clock
// that the test advances, to expire hot copies without sleeping.

// netnsEnv makes TestNetnsNode run a node: its value is the node's address.
const netnsEnv = "GROUPCACHE_TEST_NETNS_NODE"

// Settings of the nodes in namespaces.
const (
	netnsSubnet   = "10.213.0."
	netnsPort     = 7000
	netnsTimeout  = 250 * time.Millisecond // peer request and dial timeout
	netnsBackoff  = time.Second
	netnsHotTTL   = 5 * time.Second  // by the nodes' fake clocks
	netnsTTL      = 10 * time.Minute // by the nodes' fake clocks
	netnsReplyMax = 10 * time.Second // the longest a node may take to answer the test
	// netnsRecoveryMax bounds how long after a heal a write may still fail: a connection that
	// carried requests during the cut is stuck until TCP retransmits on it (docs/reliability.md).
	netnsRecoveryMax = 20 * time.Second
)

// nodeReply is a node's answer to one command.
type nodeReply struct {
	Value    string  `json:"value,omitempty"`
	Err      string  `json:"err,omitempty"`
	Class    string  `json:"class,omitempty"` // incomplete, unavailable, other
	Millis   float64 `json:"ms"`
	Remote   int64   `json:"remote"`   // Stats.RemoteGets so far
	Fallback int64   `json:"fallback"` // Stats.FallbackLoads so far
}

func TestNetnsNode(t *testing.T) {
	self := os.Getenv(netnsEnv)
	if self == "" {
		t.Skip("helper process of TestPartitions")
	}
	if err := runNetnsNode(self, strings.Split(os.Getenv(netnsEnv+"_PEERS"), ","), os.Getenv(netnsEnv+"_DB")); err != nil {
		fmt.Fprintln(os.Stderr, "netns node:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func runNetnsNode(self string, peers []string, db string) error {
	l, err := net.Listen("tcp", self)
	if err != nil {
		return err
	}
	node, err := groupcache.NewNode(self, groupcache.WithPeers(peers...), groupcache.WithPeerBackoff(netnsBackoff),
		groupcache.WithPeerOptions(peer.WithSecret([]byte("partition test secret")),
			peer.WithTimeout(netnsTimeout), peer.WithDialTimeout(netnsTimeout)))
	if err != nil {
		return err
	}
	go node.Serve(l)
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	cache, err := groupcache.New[string, string]("c", groupcache.LoaderFunc[string, string](
		func(_ context.Context, k string) (string, error) { return readDB(db, k) }),
		groupcache.WithNode(node), groupcache.WithClock(clk.Now), groupcache.WithTTL(netnsTTL),
		groupcache.WithHotTTL(netnsHotTTL), alwaysPromote)
	if err != nil {
		return err
	}
	defer node.Close()
	defer cache.Close()
	in, out := bufio.NewScanner(os.Stdin), json.NewEncoder(os.Stdout)
	for in.Scan() { // one command a line, until the test closes our stdin
		if err := out.Encode(netnsCommand(cache, clk, strings.Fields(in.Text()))); err != nil {
			return err
		}
	}
	return nil
}

// netnsCommand runs one command of the test on a node: get k, set k v, remove k, advance d.
func netnsCommand(cache *groupcache.Cache[string, string], clk *clock.Fake, f []string) nodeReply {
	var r nodeReply
	var err error
	ctx := context.Background()
	start := time.Now()
	switch f[0] {
	case "get":
		r.Value, err = cache.Get(ctx, f[1])
	case "set":
		err = cache.Set(ctx, f[1], f[2])
	case "remove":
		err = cache.Remove(ctx, f[1])
	case "advance":
		d, _ := time.ParseDuration(f[1])
		clk.Advance(d)
	default:
		err = fmt.Errorf("unknown command %q", f[0])
	}
	r.Millis = float64(time.Since(start)) / float64(time.Millisecond)
	if err != nil {
		r.Err, r.Class = err.Error(), "other"
		switch {
		case errors.Is(err, groupcache.ErrIncomplete):
			r.Class = "incomplete"
		case errors.Is(err, groupcache.ErrUnavailable):
			r.Class = "unavailable"
		}
	}
	st := cache.Stats()
	r.Remote, r.Fallback = st.RemoteGets, st.FallbackLoads
	return r
}

// readDB returns the value of k in the database directory db: its file's content, or
// "value-<k>" when it has none.
func readDB(db, k string) (string, error) {
	b, err := os.ReadFile(filepath.Join(db, k))
	if errors.Is(err, os.ErrNotExist) {
		return "value-" + k, nil
	}
	return string(b), err
}

// netnsNode is a node running in a namespace, as seen by the test.
type netnsNode struct {
	name, addr string // the namespace's name and the node's address
	cmd        *exec.Cmd
	stdin      io.WriteCloser
	replies    chan nodeReply
	stderr     *strings.Builder
}

// do sends the node a command and returns its reply.
func (n *netnsNode) do(t *testing.T, format string, args ...any) nodeReply {
	t.Helper()
	if _, err := fmt.Fprintf(n.stdin, format+"\n", args...); err != nil {
		t.Fatalf("node %s: %v", n.addr, err)
	}
	select {
	case r, ok := <-n.replies:
		if !ok {
			t.Fatalf("node %s exited; its log:\n%s", n.addr, n.stderr.String())
		}
		return r
	case <-time.After(netnsReplyMax):
		t.Fatalf("node %s did not answer %q within %v", n.addr, fmt.Sprintf(format, args...), netnsReplyMax)
	}
	return nodeReply{}
}

// netns is the namespaces of one test and the nodes in them.
type netns struct {
	t      *testing.T
	prefix string // of every namespace's name
	db     string
	nodes  []*netnsNode
	cut    map[string]bool // namespaces with rules to delete when healing
}

// netnsNamePattern matches the namespaces these tests create, with the pid of the test process.
var netnsNamePattern = regexp.MustCompile(`^gcpart(\d+)-`)

// run runs a command and fails the test if it fails.
func run(t *testing.T, stdin string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// startNetns creates the namespaces and starts n nodes in them; everything is removed when the
// test ends, whatever happens.
func startNetns(t *testing.T, n int) *netns {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("partition tests need root, to create network namespaces: skipped")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("partition tests need %q (packages iproute2 and nftables): skipped", tool)
		}
	}
	removeStaleNetns(t)
	ns := &netns{t: t, prefix: fmt.Sprintf("gcpart%d-", os.Getpid()), db: t.TempDir(), cut: map[string]bool{}}
	t.Cleanup(ns.remove)
	sw := ns.prefix + "sw"
	if out, err := exec.Command("ip", "netns", "add", sw).CombinedOutput(); err != nil {
		t.Skipf("cannot create a network namespace (%v: %s): skipped", err, strings.TrimSpace(string(out)))
	}
	run(t, "", "ip", "-n", sw, "link", "add", "br0", "type", "bridge")
	run(t, "", "ip", "-n", sw, "link", "set", "br0", "up")
	var addrs []string
	for i := range n {
		name := ns.prefix + strconv.Itoa(i)
		ip := netnsSubnet + strconv.Itoa(i+1)
		run(t, "", "ip", "netns", "add", name)
		run(t, "", "ip", "-n", sw, "link", "add", "v"+strconv.Itoa(i), "type", "veth", "peer", "name", "eth0", "netns", name)
		run(t, "", "ip", "-n", sw, "link", "set", "v"+strconv.Itoa(i), "master", "br0", "up")
		run(t, "", "ip", "-n", name, "link", "set", "lo", "up")
		run(t, "", "ip", "-n", name, "addr", "add", ip+"/24", "dev", "eth0")
		run(t, "", "ip", "-n", name, "link", "set", "eth0", "up")
		addrs = append(addrs, net.JoinHostPort(ip, strconv.Itoa(netnsPort)))
		ns.nodes = append(ns.nodes, &netnsNode{name: name, addr: addrs[i]})
	}
	for _, node := range ns.nodes {
		ns.start(node, addrs)
	}
	return ns
}

// start runs a node in its namespace: this test binary, under ip netns exec.
func (ns *netns) start(n *netnsNode, peers []string) {
	exe, err := os.Executable()
	if err != nil {
		ns.t.Fatal(err)
	}
	n.cmd = exec.Command("ip", "netns", "exec", n.name, exe, "-test.run=^TestNetnsNode$", "-test.count=1")
	n.cmd.Env = append(os.Environ(), netnsEnv+"="+n.addr, netnsEnv+"_PEERS="+strings.Join(peers, ","), netnsEnv+"_DB="+ns.db)
	n.stderr = &strings.Builder{}
	n.cmd.Stderr = &lockedWriter{w: n.stderr}
	if n.stdin, err = n.cmd.StdinPipe(); err != nil {
		ns.t.Fatal(err)
	}
	stdout, err := n.cmd.StdoutPipe()
	if err != nil {
		ns.t.Fatal(err)
	}
	if err := n.cmd.Start(); err != nil {
		ns.t.Fatal(err)
	}
	n.replies = make(chan nodeReply)
	go func() {
		defer close(n.replies)
		dec := json.NewDecoder(stdout)
		for {
			var r nodeReply
			if dec.Decode(&r) != nil {
				return
			}
			n.replies <- r
		}
	}()
}

// lockedWriter serialises writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// remove stops the nodes and deletes the namespaces (which deletes their links).
func (ns *netns) remove() {
	for _, n := range ns.nodes {
		if n.cmd == nil || n.cmd.Process == nil {
			continue
		}
		n.stdin.Close()
		done := make(chan struct{})
		go func() { n.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			n.cmd.Process.Kill()
			<-done
		}
	}
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, name := range netnsNames(out) {
		if strings.HasPrefix(name, ns.prefix) {
			if err := exec.Command("ip", "netns", "del", name).Run(); err != nil {
				ns.t.Errorf("deleting namespace %s: %v", name, err)
			}
		}
	}
}

// removeStaleNetns deletes the namespaces of earlier runs whose process is gone (killed before
// its cleanup ran).
func removeStaleNetns(t *testing.T) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Skipf("ip netns list: %v: network namespaces unavailable: skipped", err)
	}
	for _, name := range netnsNames(out) {
		m := netnsNamePattern.FindStringSubmatch(name)
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		if syscall.Kill(pid, 0) == syscall.ESRCH {
			_ = exec.Command("ip", "netns", "del", name).Run()
		}
	}
}

// netnsNames returns the names in the output of ip netns list ("name" or "name (id: n)").
func netnsNames(out []byte) []string {
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names
}

// cutRule is one nftables rule of a cut: in node from's namespace, drop what it sends to node
// to's address (out), or what it receives from it (in).
type cutRule struct {
	from, to int
	in       bool
}

// partition applies rules, each silently dropping packets in one direction between two nodes.
func (ns *netns) partition(rules ...cutRule) {
	byNode := map[int][]string{}
	for _, r := range rules {
		ip, _, _ := net.SplitHostPort(ns.nodes[r.to].addr)
		if r.in {
			byNode[r.from] = append(byNode[r.from], "add rule inet gcpart in ip saddr "+ip+" drop")
		} else {
			byNode[r.from] = append(byNode[r.from], "add rule inet gcpart out ip daddr "+ip+" drop")
		}
	}
	for i, lines := range byNode {
		script := "add table inet gcpart\n" +
			"add chain inet gcpart in { type filter hook input priority 0; policy accept; }\n" +
			"add chain inet gcpart out { type filter hook output priority 0; policy accept; }\n" +
			strings.Join(lines, "\n") + "\n"
		run(ns.t, script, "ip", "netns", "exec", ns.nodes[i].name, "nft", "-f", "-")
		ns.cut[ns.nodes[i].name] = true
	}
}

// heal deletes every rule of partition.
func (ns *netns) heal() {
	for name := range ns.cut {
		run(ns.t, "", "ip", "netns", "exec", name, "nft", "delete", "table", "inet", "gcpart")
		delete(ns.cut, name)
	}
}

// isolate returns the rules that cut node i off from every other node, both ways.
func (ns *netns) isolate(i int) []cutRule {
	var rules []cutRule
	for j := range ns.nodes {
		if j != i {
			rules = append(rules, cutRule{from: i, to: j}, cutRule{from: i, to: j, in: true})
		}
	}
	return rules
}

// write sets the database's value of k (empty: none) and returns it as the loader will read it.
func (ns *netns) write(k, v string) string {
	p := filepath.Join(ns.db, k)
	if v == "" {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			ns.t.Fatal(err)
		}
		return "value-" + k
	}
	if err := os.WriteFile(p+".tmp", []byte(v), 0o644); err != nil {
		ns.t.Fatal(err)
	}
	if err := os.Rename(p+".tmp", p); err != nil {
		ns.t.Fatal(err)
	}
	return v
}

// owners returns the index of the node owning each key, by the ring every node uses.
func (ns *netns) owners(keys []string) []int {
	var addrs []string
	for _, n := range ns.nodes {
		addrs = append(addrs, n.addr)
	}
	r, err := hash.NewRing(addrs)
	if err != nil {
		ns.t.Fatal(err)
	}
	owners := make([]int, len(keys))
	for i, k := range keys {
		o, _ := r.Owner(keyBytes(ns.t, k))
		for j, a := range addrs {
			if a == o {
				owners[i] = j
			}
		}
	}
	return owners
}

// TestPartitions cuts links between nodes in network namespaces, both ways and one way, writes and
// reads during the cut, heals, and checks what docs/reliability.md ("Partitions") states: every
// Get answers during the cut (a peer that cannot be reached is loaded around), a write reports
// ErrUnavailable when its owner cannot be reached and ErrIncomplete when another peer cannot, and
// once the cut heals, the writes that reported ErrUnavailable are retried and the hot TTL has
// passed, every node serves every key's current value.
func TestPartitions(t *testing.T) {
	ns := startNetns(t, 3)
	for _, sc := range []struct {
		name  string
		rules []cutRule
	}{
		{"isolated", ns.isolate(0)},             // node 0 cut off from both others, both ways
		{"oneway", []cutRule{{from: 0, to: 1}}}, // what node 0 sends node 1 is lost; the rest arrives
	} {
		start := time.Now()
		stats := checkPartition(t, ns, sc.name, sc.rules)
		t.Logf("%s: %s (%v)", sc.name, stats, time.Since(start).Round(time.Millisecond))
	}
}

// partitionStats is what one scenario observed.
type partitionStats struct {
	gets, staleGets    int
	fallbacks          int64 // keys the nodes loaded themselves because the owner was cut off
	maxGet             time.Duration
	writes             map[string]int // by class ("ok", "incomplete", "unavailable")
	retries, maxRetry  int
	recovery           time.Duration // from the heal to the last retry that went through
	healedAfterAdvance int           // Gets right after healing and advancing the clocks (all must be right)
}

func (s partitionStats) String() string {
	return fmt.Sprintf("%d Gets during the cut (%d loaded around an owner cut off, %d served a value older than the database's, within the hot TTL), slowest %v; writes %v; %d retried after healing (at most %d attempts, the last through %v after the heal); %d Gets after healing, all current",
		s.gets, s.fallbacks, s.staleGets, s.maxGet.Round(time.Millisecond), s.writes, s.retries, s.maxRetry,
		s.recovery.Round(time.Millisecond), s.healedAfterAdvance)
}

// checkPartition runs one scenario: warm every node with half the keys, cut with rules, read
// every key (the other half is in no node's memory: its Gets go to the owners), write and read
// again during the cut, heal, retry, expire the hot copies and check every value.
func checkPartition(t *testing.T, ns *netns, name string, rules []cutRule) partitionStats {
	t.Helper()
	keys := make([]string, 36)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s-%d", name, i)
	}
	owners := ns.owners(keys)
	old := make([]string, len(keys))
	for i, k := range keys {
		old[i] = ns.write(k, "")
	}
	for _, n := range ns.nodes { // warm: owners load, the others keep hot copies
		for i, k := range keys[:len(keys)/2] {
			if r := n.do(t, "get %s", k); r.Err != "" || r.Value != old[i] {
				t.Fatalf("%s: warming %s on %s = %q, %s", name, k, n.addr, r.Value, r.Err)
			}
		}
	}
	fallbacks := func() (sum int64) {
		for _, n := range ns.nodes {
			sum += n.do(t, "advance 0s").Fallback
		}
		return sum
	}
	before := fallbacks()
	ns.partition(rules...)
	st := partitionStats{writes: map[string]int{}}
	readAll(t, ns, name+" (cut, before writes)", keys, old, old, nil, &st)
	cur, classes := writeAll(t, ns, name, keys, owners, rules, &st)
	readAll(t, ns, name+" (cut, after writes)", keys, old, cur, func(i, node int) bool {
		return classes[i] == "ok" || (node == owners[i] && classes[i] == "incomplete")
	}, &st)
	st.fallbacks = fallbacks() - before
	if st.fallbacks == 0 {
		t.Errorf("%s: no node loaded a key around a cut owner: the cut was not exercised", name)
	}
	ns.heal()
	retryUnavailable(t, ns, name, keys, cur, classes, &st)
	for _, n := range ns.nodes {
		n.do(t, "advance %s", netnsHotTTL+time.Second)
	}
	for _, n := range ns.nodes {
		for i, k := range keys {
			if r := n.do(t, "get %s", k); r.Err != "" || r.Value != cur[i] {
				t.Errorf("%s: after healing, %s on %s = %q, %s; want %q", name, k, n.addr, r.Value, r.Err, cur[i])
			}
			st.healedAfterAdvance++
		}
	}
	return st
}

// readAll Gets every key on every node: each must answer without error, with the key's current
// value, or its old one unless mustBeCurrent says the node must have the current one.
func readAll(t *testing.T, ns *netns, what string, keys, old, cur []string, mustBeCurrent func(i, node int) bool, st *partitionStats) {
	t.Helper()
	for j, n := range ns.nodes {
		for i, k := range keys {
			r := n.do(t, "get %s", k)
			st.gets++
			st.maxGet = max(st.maxGet, time.Duration(r.Millis*float64(time.Millisecond)))
			switch {
			case r.Err != "":
				t.Errorf("%s: Get(%s) on %s failed: %s", what, k, n.addr, r.Err)
			case r.Value == cur[i]:
			case r.Value == old[i] && (mustBeCurrent == nil || !mustBeCurrent(i, j)):
				st.staleGets++
			default:
				t.Errorf("%s: Get(%s) on %s = %q, want %q (or the old %q within the hot TTL)", what, k, n.addr, r.Value, cur[i], old[i])
			}
		}
	}
	if st.maxGet > 2*time.Second {
		t.Errorf("%s: slowest Get took %v, want about one peer timeout (%v)", what, st.maxGet, netnsTimeout)
	}
}

// writeAll writes every key during the cut, from node i%3: a Set of a new value, or a Remove for
// every third key; the database first, as an application does. It checks each write's error
// against what the cut allows and returns the keys' current values and the writes' classes.
func writeAll(t *testing.T, ns *netns, name string, keys []string, owners []int, rules []cutRule, st *partitionStats) ([]string, []string) {
	t.Helper()
	cut := func(a, b int) bool {
		for _, r := range rules {
			if (r.from == a && r.to == b) || (r.from == b && r.to == a) {
				return true
			}
		}
		return false
	}
	cur, classes := make([]string, len(keys)), make([]string, len(keys))
	for i, k := range keys {
		writer := i % len(ns.nodes)
		var r nodeReply
		if i%3 == 2 {
			cur[i] = ns.write(k, "")
			r = ns.nodes[writer].do(t, "remove %s", k)
		} else {
			cur[i] = ns.write(k, name+"-new-"+strconv.Itoa(i))
			r = ns.nodes[writer].do(t, "set %s %s", k, cur[i])
		}
		classes[i] = cmpOr(r.Class, "ok")
		st.writes[classes[i]]++
		want := "ok"
		for j := range ns.nodes {
			if j != writer && cut(writer, j) {
				want = "incomplete"
			}
		}
		if writer != owners[i] && cut(writer, owners[i]) {
			want = "unavailable"
		}
		if classes[i] != want {
			t.Errorf("%s: write of %s from node %d (owner %d) = %s (%s), want %s", name, k, writer, owners[i], classes[i], r.Err, want)
		}
	}
	return cur, classes
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// retryUnavailable writes again, once the cut is healed, every key whose write reported
// ErrUnavailable: it may not have been written on its owner, and the caller retries (writes are
// idempotent). A retry that fails (it waits a peer timeout) is tried again, for at most
// netnsRecoveryMax after the heal.
func retryUnavailable(t *testing.T, ns *netns, name string, keys, cur, classes []string, st *partitionStats) {
	t.Helper()
	healed := time.Now()
	for i, k := range keys {
		if classes[i] != "unavailable" {
			continue
		}
		st.retries++
		writer := ns.nodes[i%len(ns.nodes)]
		for attempt := 1; ; attempt++ {
			var r nodeReply
			if cur[i] == "value-"+k {
				r = writer.do(t, "remove %s", k)
			} else {
				r = writer.do(t, "set %s %s", k, cur[i])
			}
			st.maxRetry = max(st.maxRetry, attempt)
			if r.Class != "unavailable" {
				st.recovery = max(st.recovery, time.Since(healed))
				break
			}
			if time.Since(healed) > netnsRecoveryMax {
				t.Fatalf("%s: %v after healing, the write of %s still fails: %s", name, netnsRecoveryMax, k, r.Err)
			}
		}
	}
}
