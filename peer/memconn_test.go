package peer

import (
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// memPipe returns the two ends of a connection in memory. Unlike net.Pipe's, its writes do not
// wait for the other end to read (each direction buffers up to 4096 writes, as a socket buffers
// bytes), and everything it blocks on is a channel, so a synctest bubble sees its goroutines
// durably blocked and fake time can pass: deadlines follow the bubble's clock.
func memPipe() (net.Conn, net.Conn) {
	ab, ba := newMemHalf(), newMemHalf()
	return &memConn{in: ba, out: ab, rd: newDeadline(), wd: newDeadline(), local: make(chan struct{})},
		&memConn{in: ab, out: ba, rd: newDeadline(), wd: newDeadline(), local: make(chan struct{})}
}

// memHalf is one direction of a memPipe: the chunks written and not read yet.
type memHalf struct {
	ch     chan []byte
	closed chan struct{} // closed when the writing end closes
	once   sync.Once
}

func newMemHalf() *memHalf { return &memHalf{ch: make(chan []byte, 4096), closed: make(chan struct{})} }

type memConn struct {
	in, out *memHalf
	rest    []byte // of the chunk being read
	rd, wd  *deadline
	local   chan struct{} // closed by Close
	once    sync.Once
}

func (c *memConn) Read(b []byte) (int, error) {
	for len(c.rest) == 0 {
		select {
		case chunk := <-c.in.ch:
			c.rest = chunk
			continue
		default:
		}
		select {
		case chunk := <-c.in.ch:
			c.rest = chunk
		case <-c.in.closed:
			select {
			case chunk := <-c.in.ch:
				c.rest = chunk
			default:
				return 0, io.EOF
			}
		case <-c.local:
			return 0, net.ErrClosed
		case <-c.rd.wait():
			return 0, os.ErrDeadlineExceeded
		}
	}
	n := copy(b, c.rest)
	c.rest = c.rest[n:]
	return n, nil
}

func (c *memConn) Write(b []byte) (int, error) {
	select {
	case <-c.local:
		return 0, net.ErrClosed
	case <-c.out.closed:
		return 0, io.ErrClosedPipe
	case <-c.wd.wait():
		return 0, os.ErrDeadlineExceeded
	default:
	}
	select {
	case c.out.ch <- append([]byte(nil), b...):
		return len(b), nil
	case <-c.local:
		return 0, net.ErrClosed
	case <-c.wd.wait():
		return 0, os.ErrDeadlineExceeded
	}
}

func (c *memConn) Close() error {
	c.once.Do(func() {
		close(c.local)
		c.out.once.Do(func() { close(c.out.closed) })
	})
	return nil
}

func (c *memConn) LocalAddr() net.Addr  { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }
func (c *memConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2} }

func (c *memConn) SetDeadline(t time.Time) error {
	c.rd.set(t)
	c.wd.set(t)
	return nil
}

func (c *memConn) SetReadDeadline(t time.Time) error  { c.rd.set(t); return nil }
func (c *memConn) SetWriteDeadline(t time.Time) error { c.wd.set(t); return nil }

// deadline is a channel closed when the deadline passes.
type deadline struct {
	mu    sync.Mutex
	timer *time.Timer
	ch    chan struct{}
}

func newDeadline() *deadline { return &deadline{ch: make(chan struct{})} }

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		d.ch = make(chan struct{}) // it fired: a new deadline starts open
	}
	d.timer = nil
	select {
	case <-d.ch:
		d.ch = make(chan struct{})
	default:
	}
	if t.IsZero() {
		return
	}
	if until := time.Until(t); until > 0 {
		ch := d.ch
		d.timer = time.AfterFunc(until, func() { close(ch) })
		return
	}
	close(d.ch)
}

func (d *deadline) wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ch
}
