//go:build linux

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Node states, as the parent sees them. Operations go to nodes that are up only.
const (
	stateUp      = iota
	stateStopped // SIGSTOP
	stateDown    // killed, leaving, or out of the peer set
)

// proc is one node of the cluster: the process of its current incarnation and its addresses.
type proc struct {
	id          int
	peerAddr    string // the same across restarts
	ctrlAddr    string
	cmd         *exec.Cmd
	state       int
	incarnation int
	exited      chan struct{} // closed when the process has exited
	expected    atomic.Bool   // its exit was asked for (killed or told to leave)
}

// cluster is the parent's view of the node processes.
type cluster struct {
	cfg    config
	mu     sync.Mutex
	procs  []*proc
	member []bool // in the peer set
	client *http.Client
	// crashes counts node processes that exited without being told to, or printed a panic or a
	// data race.
	crashes atomic.Int64
	stderr  io.Writer
	series  *series
}

func newCluster(cfg config, series *series) *cluster {
	tr := &http.Transport{MaxIdleConnsPerHost: 64, ResponseHeaderTimeout: 60 * time.Second}
	return &cluster{cfg: cfg, client: &http.Client{Transport: tr, Timeout: 60 * time.Second},
		stderr: os.Stderr, series: series}
}

// start starts every node, then gives each the full peer set.
func (c *cluster) start() error {
	for i := range c.cfg.nodes {
		p := &proc{id: i, peerAddr: "127.0.0.1:0"}
		c.procs = append(c.procs, p)
		c.member = append(c.member, true)
		if err := c.launch(p, ""); err != nil {
			return err
		}
	}
	return c.setPeersAll()
}

// peers returns the current peer set.
func (c *cluster) peers() string {
	var ps []string
	for i, p := range c.procs {
		if c.member[i] {
			ps = append(ps, p.peerAddr)
		}
	}
	return strings.Join(ps, ",")
}

// launch starts a new incarnation of p, listening on the peer address addr, and waits until it is
// ready. Its standard error goes to the parent's, and is watched for panics and data races.
func (c *cluster) launch(p *proc, peers string) error {
	cc := childConfig{addr: p.peerAddr, peers: peers, dbPath: c.cfg.dbPath, keys: c.cfg.keys,
		ttl: c.cfg.ttl, hotTTL: c.cfg.hotTTL}
	cmd := exec.Command(c.cfg.self, c.cfg.selfArgs...)
	cmd.Args = append(cmd.Args, cc.args()...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // no node outlives the soak
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	go c.watch(p, errPipe)
	line, err := bufio.NewReader(out).ReadString('\n')
	f := strings.Fields(line)
	if err != nil || len(f) != 3 || f[0] != "READY" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return fmt.Errorf("node %d did not start: %q %v", p.id, line, err)
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	exited := make(chan struct{})
	c.mu.Lock()
	p.peerAddr, p.ctrlAddr, p.cmd, p.state, p.exited = f[1], f[2], cmd, stateUp, exited
	p.incarnation++
	p.expected.Store(false)
	c.mu.Unlock()
	go func() {
		err := cmd.Wait()
		if !p.expected.Load() {
			c.crashes.Add(1)
			fmt.Fprintf(c.stderr, "soak: node %d exited unexpectedly: %v\n", p.id, err)
		}
		close(exited)
	}()
	return nil
}

// watch copies a node's standard error to the parent's and counts panics and data races.
func (c *cluster) watch(p *proc, r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "panic:") || strings.Contains(line, "DATA RACE") {
			c.crashes.Add(1)
		}
		fmt.Fprintf(c.stderr, "node %d: %s\n", p.id, line)
	}
}

// setPeersAll gives every running member the current peer set, one after the other.
func (c *cluster) setPeersAll() error {
	peers := c.peers()
	for i, p := range c.procs {
		if !c.member[i] || c.stateOf(p) == stateDown {
			continue
		}
		if err := c.control(p, "/peers", url.Values{"peers": {peers}}, nil); err != nil {
			return fmt.Errorf("node %d: set peers: %w", p.id, err)
		}
	}
	return nil
}

func (c *cluster) stateOf(p *proc) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return p.state
}

func (c *cluster) setState(p *proc, s int) {
	c.mu.Lock()
	p.state = s
	c.mu.Unlock()
}

// pickUp returns a node that is up, chosen by r, and its incarnation; nil if none is.
func (c *cluster) pickUp(r func(int) int) (*proc, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var up []*proc
	for _, p := range c.procs {
		if p.state == stateUp {
			up = append(up, p)
		}
	}
	if len(up) == 0 {
		return nil, 0
	}
	p := up[r(len(up))]
	return p, p.incarnation
}

// sameUp reports whether p is up, in incarnation inc.
func (c *cluster) sameUp(p *proc, inc int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return p.state == stateUp && p.incarnation == inc
}

// callProc is control for the workload.
func (c *cluster) callProc(p *proc, path string, q url.Values, out any) error {
	return c.control(p, path, q, out)
}

// control calls a node's control endpoint and decodes its JSON answer into out (if not nil).
func (c *cluster) control(p *proc, path string, q url.Values, out any) error {
	c.mu.Lock()
	addr := p.ctrlAddr
	c.mu.Unlock()
	return c.call(context.Background(), addr, path, q, out)
}

func (c *cluster) call(ctx context.Context, addr, path string, q url.Values, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+path+"?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// kill sends SIGKILL to p and waits until it has exited.
func (c *cluster) kill(p *proc) {
	c.setState(p, stateDown)
	p.expected.Store(true)
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// leave makes p leave gracefully (Node.Shutdown) and waits until it has exited; past 20 s it is
// killed.
func (c *cluster) leave(p *proc) {
	c.setState(p, stateDown)
	p.expected.Store(true)
	if err := c.control(p, "/shutdown", nil, nil); err != nil {
		fmt.Fprintf(c.stderr, "soak: node %d: shutdown: %v\n", p.id, err)
	}
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		fmt.Fprintf(c.stderr, "soak: node %d did not exit 20 s after Shutdown; killed\n", p.id)
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.exited
	}
}

// restart starts p again at its peer address, with the current peer set (three tries: the port
// may be held for a moment).
func (c *cluster) restart(p *proc) error {
	var err error
	for range 3 {
		if err = c.launch(p, c.peers()); err == nil {
			return nil
		}
		time.Sleep(300 * time.Millisecond)
	}
	return err
}

// stop pauses p (SIGSTOP) for d, then resumes it.
func (c *cluster) stop(p *proc, d time.Duration) {
	c.setState(p, stateStopped)
	_ = p.cmd.Process.Signal(syscall.SIGSTOP)
	time.Sleep(d)
	_ = p.cmd.Process.Signal(syscall.SIGCONT)
	c.setState(p, stateUp)
}

// closeAll makes every running node leave, for the end of the run.
func (c *cluster) closeAll() {
	var wg sync.WaitGroup
	for _, p := range c.procs {
		if p.cmd == nil {
			continue
		}
		select {
		case <-p.exited:
			continue
		default:
		}
		wg.Go(func() { c.leave(p) })
	}
	wg.Wait()
}
