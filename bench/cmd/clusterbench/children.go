package main

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// child is this binary re-executed in another role. It prints "ADDR host:port" once it listens
// and exits when its standard input closes.
type child struct {
	addr   string
	cmd    *exec.Cmd
	stdin  io.Closer
	client *http.Client // of the control calls
	scheme string
}

func startChild(role string, size int, auth string) *child {
	cmd := exec.Command(os.Args[0], append([]string{"-role", role, "-size", strconv.Itoa(size)}, childArgs(auth)...)...)
	if *childCPUs != "" {
		// Pinned apart from the measuring process (which the caller pins with taskset itself).
		cmd = exec.Command("taskset", append([]string{"-c", *childCPUs}, cmd.Args...)...)
	}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	fatalIf(err)
	stdout, err := cmd.StdoutPipe()
	fatalIf(err)
	fatalIf(cmd.Start())
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		log.Fatalf("child %s did not start: %v", role, err)
	}
	go io.Copy(io.Discard, stdout)
	client, scheme := controlClient(auth)
	return &child{addr: strings.TrimPrefix(strings.TrimSpace(line), "ADDR "), cmd: cmd, stdin: stdin, client: client, scheme: scheme}
}

func (c *child) stop() {
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

// control calls a child's control endpoint and decodes its JSON answer into out (if not nil).
func (c *child) control(path string, q url.Values, out any) {
	resp, err := c.client.Post(c.scheme+"://"+c.addr+path+"?"+q.Encode(), "text/plain", nil)
	fatalIf(err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		log.Fatalf("%s %s: %s: %s", c.addr, path, resp.Status, b)
	}
	if out != nil {
		fatalIf(json.Unmarshal(b, out))
	}
}

// serveUntilStdinCloses announces l's address, serves h on it (over TLS with cfg) and returns
// when stdin closes.
func serveUntilStdinCloses(l net.Listener, h http.Handler, cfg *tls.Config) {
	srv := newServer(h, cfg)
	go serve(srv, l)
	fmt.Printf("ADDR %s\n", l.Addr())
	io.Copy(io.Discard, os.Stdin)
	srv.Close()
}

// newServer returns an http.Server of h with a header timeout and, with cfg, TLS over HTTP/1.1.
func newServer(h http.Handler, cfg *tls.Config) *http.Server {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, TLSConfig: cfg}
	if cfg != nil {
		srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
	}
	return srv
}

// serve serves srv on l, over TLS if srv has a TLS configuration.
func serve(srv *http.Server, l net.Listener) error {
	if srv.TLSConfig != nil {
		return srv.ServeTLS(l, "", "")
	}
	return srv.Serve(l)
}

func listenLoopback() net.Listener {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	fatalIf(err)
	return l
}

// ---- the floor: a raw TCP request/response between two processes ----

// runEcho answers each length-prefixed request with a length-prefixed payload of size bytes.
func runEcho(size int) {
	l := listenLoopback()
	reply := make([]byte, 4+size)
	binary.BigEndian.PutUint32(reply, uint32(size))
	copy(reply[4:], payload("echo", size))
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReaderSize(c, 8<<10)
				var hdr [4]byte
				buf := make([]byte, 1024)
				for {
					if _, err := io.ReadFull(br, hdr[:]); err != nil {
						return
					}
					n := binary.BigEndian.Uint32(hdr[:])
					if int(n) > len(buf) {
						return
					}
					if _, err := io.ReadFull(br, buf[:n]); err != nil {
						return
					}
					if _, err := c.Write(reply); err != nil {
						return
					}
				}
			}()
		}
	}()
	fmt.Printf("ADDR %s\n", l.Addr())
	io.Copy(io.Discard, os.Stdin)
	l.Close()
}

// floor is the raw TCP request/response: the calling process sends a key, an echo process
// answers with size bytes. With servers = 2 the keys are spread over two echo processes, the same
// topology as a 3-node cluster measured from one of its nodes.
type floor struct {
	children []*child
	size     int
	mu       sync.Mutex
	conns    map[[2]int]*floorConn
	// fresh reads each reply into new memory, as a Get must (its value belongs to its caller),
	// instead of a buffer reused by the connection.
	fresh bool
}

type floorConn struct {
	c   net.Conn
	br  *bufio.Reader
	req []byte
	buf []byte
}

func newFloor(size, servers int) *floor {
	f := &floor{size: size, conns: map[[2]int]*floorConn{}}
	for range servers {
		f.children = append(f.children, startChild("echo", size, ""))
	}
	return f
}

func (f *floor) name() string {
	if len(f.children) == 1 {
		return "raw TCP floor (1 server process)"
	}
	if f.fresh {
		return fmt.Sprintf("raw TCP floor (%d server processes, new memory per reply)", len(f.children))
	}
	return fmt.Sprintf("raw TCP floor (%d server processes)", len(f.children))
}

func (f *floor) remoteKeys(n int) []int {
	keys := make([]int, n)
	for i := range keys {
		keys[i] = i
	}
	return keys
}

func (f *floor) conn(caller, server int) *floorConn {
	f.mu.Lock()
	defer f.mu.Unlock()
	fc, ok := f.conns[[2]int{caller, server}]
	if !ok {
		c, err := net.Dial("tcp", f.children[server].addr)
		fatalIf(err)
		fc = &floorConn{c: c, br: bufio.NewReaderSize(c, 64<<10), req: make([]byte, 0, 64), buf: make([]byte, f.size)}
		f.conns[[2]int{caller, server}] = fc
	}
	return fc
}

func (f *floor) get(caller, i int) error {
	fc := f.conn(caller, i%len(f.children))
	key := keyName(i)
	fc.req = binary.BigEndian.AppendUint32(fc.req[:0], uint32(len(key)))
	fc.req = append(fc.req, key...)
	if _, err := fc.c.Write(fc.req); err != nil {
		return err
	}
	var hdr [4]byte
	if _, err := io.ReadFull(fc.br, hdr[:]); err != nil {
		return err
	}
	n := int(binary.BigEndian.Uint32(hdr[:]))
	if n != f.size {
		return fmt.Errorf("reply of %d bytes", n)
	}
	buf := fc.buf[:n]
	if f.fresh {
		buf = make([]byte, n)
	}
	_, err := io.ReadFull(fc.br, buf)
	return err
}

func (f *floor) close() {
	for _, fc := range f.conns {
		fc.c.Close()
	}
	for _, c := range f.children {
		c.stop()
	}
}
