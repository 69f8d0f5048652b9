package peer

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// The multiplexed framing on the server side (see docs/protocol.md, "Multiplexed framing").
//
// The connection's goroutine reads the request frames. What it can answer at once it answers
// itself: a refusal (malformed, over a limit), a Peek or PeekMany (memory only), and a Get that
// the Backend answers inline (InlineBackend). Any other request is served on a goroutine of its
// own, at most MaxConnRequests at a time per connection; beyond that the connection's goroutine
// waits for one to end before it reads on. Replies go out in the order they are ready: each is
// appended to the connection's pending replies, and the goroutine that finds no write in progress
// writes them all (and those that come while it writes) in one write, or one writev when large
// values are among them. The connection's goroutine writes only when no further request frame is
// whole in its read buffer, so the replies to the requests of one read go out together.

// muxConn is a connection on the multiplexed framing: its serverConn and what the goroutines
// serving its requests share.
type muxConn struct {
	c      *serverConn
	ctx    context.Context
	inline InlineBackend // nil when the Backend is not one
	slots  chan struct{} // one per request served on its own goroutine
	wg     sync.WaitGroup

	mu         sync.Mutex
	wbuf       []byte // replies not handed to a write yet (of a large one, its head)
	large      []cut  // the values of large replies in wbuf not handed to a write yet
	writing    bool   // a goroutine writes, and will write what is pending when it is done
	broken     bool   // a write failed, or the connection ends: replies are dropped
	spare      []byte // the buffer of the write in progress, for the replies after it
	largeSpare []cut

	// The writer's (whoever holds writing).
	iov    net.Buffers
	iovw   net.Buffers // what WriteTo consumes (a field, so that it does not escape per write)
	wArmed time.Time   // when the write deadline was last pushed
}

// serveMux serves the connection on the multiplexed framing until it ends; cancel cancels ctx.
func (c *serverConn) serveMux(ctx context.Context, cancel context.CancelFunc) {
	s := c.s
	m := &muxConn{c: c, ctx: ctx, slots: make(chan struct{}, MaxConnRequests), wbuf: c.wbuf[:0]}
	m.inline, _ = s.backend.(InlineBackend)
	s.muxConns.Add(1)
	defer func() {
		// Replies still to come have nobody to read them: drop them, end the requests in
		// progress and wait for them.
		m.mu.Lock()
		m.broken = true
		m.mu.Unlock()
		cancel()
		m.wg.Wait()
	}()
	c.armRead(false)
	for {
		hdr, err := c.br.Peek(muxPrefixLen)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && len(m.slots) > 0 && ctx.Err() == nil {
				// Idle, but requests are in progress: their replies are still due.
				c.armRead(true)
				continue
			}
			return // closed by the client, idle timeout, or Close
		}
		n, id := parseMuxPrefix(hdr)
		_, _ = c.br.Discard(muxPrefixLen)
		if n > s.reqFrameMax {
			// A frame of any length cannot be skipped safely: answer and close.
			c.st.requests.Add(1)
			s.log.Debug("peer: refused a request frame", "bytes", n, "limit", s.reqFrameMax)
			m.reply(id, &Response{Status: StatusBadRequest,
				Msg: fmt.Sprintf("request frame of %d bytes over the limit of %d", n, s.reqFrameMax)})
			m.wg.Wait() // a write in progress could have missed the reply
			m.flush()
			return
		}
		frame, peeked, err := c.readRequest(n)
		if err != nil {
			return
		}
		if !m.handle(id, frame, !peeked) {
			return
		}
		if peeked {
			_, _ = c.br.Discard(n)
		} else if cap(c.rbuf) > keepBuffer {
			c.rbuf = nil
		}
		c.armRead(false)
		if !c.nextBufferedMux() {
			m.flush()
		}
	}
}

// handle answers the request frame with the given id at once if it can, or starts a goroutine
// that serves it. owned says the frame lies in c.rbuf, which the goroutine may take instead of a
// copy. It reports false when the connection ends while it waits for room for a goroutine.
func (m *muxConn) handle(id uint32, frame []byte, owned bool) bool {
	c := m.c
	s := c.s
	c.st.requests.Add(1)
	c.st.bytesIn.Add(int64(len(frame)) + muxPrefixLen)
	var req Request
	if err := parseRequest(frame, s.lim, &c.scratch, &req); err != nil {
		pe := err.(*Error)
		s.log.Debug("peer: refused a request", "status", pe.Status.String(), "reason", pe.Msg)
		m.reply(id, &Response{Status: pe.Status, Msg: pe.Msg})
		return true
	}
	c.st.byOp[req.Op].Add(1)
	switch req.Op {
	case OpPeek, OpPeekMany:
		// From memory: answered here (a PeekMany's body in memory of its own, as the reply
		// may be written after the next request reused the connection's scratch).
		resp := s.handle(m.ctx, &req, &c.st, nil)
		m.reply(id, &resp)
		return true
	case OpGet:
		if m.inline != nil {
			if v, ok, err := m.getInline(&req); ok || err != nil {
				resp := s.valueResponse(v, err)
				m.reply(id, &resp)
				return true
			}
		}
	}
	// Served on a goroutine of its own: the frame must outlive the connection's buffers.
	if owned {
		c.rbuf = nil
	} else {
		frame = bytes.Clone(frame)
	}
	select {
	case m.slots <- struct{}{}:
	default:
		// MaxConnRequests in progress: write what is ready, then wait for one to end.
		m.flush()
		select {
		case m.slots <- struct{}{}:
		case <-m.ctx.Done():
			return false
		}
	}
	s.detached.Add(1)
	m.wg.Add(1)
	go m.serveDetached(id, frame)
	return true
}

// getInline asks the InlineBackend, turning a panic into an error (with ok false: the caller
// answers any error).
func (m *muxConn) getInline(req *Request) (v Value, ok bool, err error) {
	defer m.c.s.recoverBackend(req, &m.c.st, &err)
	return m.inline.GetInline(req.Cache, req.Key)
}

// serveDetached serves one request on its own goroutine and writes its reply.
func (m *muxConn) serveDetached(id uint32, frame []byte) {
	defer m.wg.Done()
	s := m.c.s
	var req Request
	var resp Response
	// The frame parsed on the connection's goroutine: it parses again.
	if err := parseRequest(frame, s.lim, nil, &req); err != nil {
		pe := err.(*Error)
		resp = Response{Status: pe.Status, Msg: pe.Msg}
	} else {
		resp = s.handle(m.ctx, &req, &m.c.st, nil)
	}
	m.reply(id, &resp)
	<-m.slots // room for the next request before this write, which may take a while
	m.flush()
}

// reply appends the reply to the request with the given id to the pending replies (or drops it
// when the connection ends). A value over smallReply bytes is not copied: it is written from
// where it lies.
func (m *muxConn) reply(id uint32, r *Response) {
	st := &m.c.st
	st.byStatus[r.Status].Add(1)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.broken {
		return
	}
	start := len(m.wbuf)
	buf := appendResponseHead(appendMuxPrefix(m.wbuf, 0, id), r)
	n := responseFrameLen(len(buf)-start-muxPrefixLen, r)
	binary.BigEndian.PutUint32(buf[start:], uint32(n))
	st.bytesOut.Add(int64(n) + muxPrefixLen) // before the write, so a reader of the reply sees it counted
	if r.Status != StatusOK || len(r.Value.Data) <= smallReply {
		if r.Status == StatusOK {
			buf = append(buf, r.Value.Data...)
		}
		m.wbuf = buf
		return
	}
	// The head stays in wbuf; the value is written after it, from where it lies.
	m.wbuf = buf
	m.large = append(m.large, cut{at: len(buf), data: r.Value.Data})
}

// cut is a large value to be written at offset at of the pending replies, right after its head.
type cut struct {
	at   int
	data []byte
}

// flush writes the pending replies, and those that come meanwhile, unless a write is in progress,
// whose writer writes them.
func (m *muxConn) flush() {
	m.mu.Lock()
	if m.writing {
		m.mu.Unlock()
		return
	}
	m.writing = true
	for !m.broken && (len(m.wbuf) > 0 || len(m.large) > 0) {
		buf, large := m.wbuf, m.large
		m.wbuf, m.large = m.spare[:0], m.largeSpare[:0]
		m.mu.Unlock()
		err := m.write(buf, large)
		m.mu.Lock()
		if cap(buf) <= keepBuffer {
			m.spare = buf[:0]
		} else {
			m.spare = nil
		}
		clear(large)
		m.largeSpare = large[:0]
		if err != nil {
			// The client cannot get its replies: close, which ends the connection's goroutine.
			m.broken = true
			m.wbuf, m.large = m.wbuf[:0], m.large[:0]
			_ = m.c.nc.Close()
		}
	}
	m.writing = false
	m.mu.Unlock()
}

// write writes buf with the values of large inserted at their offsets, in one system call where
// it can. Only the holder of writing calls it.
func (m *muxConn) write(buf []byte, large []cut) error {
	nc := m.c.nc
	if now := time.Now(); now.Sub(m.wArmed) >= m.c.s.idleTimeout/16 {
		_ = nc.SetWriteDeadline(now.Add(m.c.s.idleTimeout))
		m.wArmed = now
	}
	if len(large) == 0 {
		_, err := nc.Write(buf)
		return err
	}
	m.iov = m.iov[:0]
	from := 0
	for _, c := range large {
		m.iov = append(m.iov, buf[from:c.at], c.data)
		from = c.at
	}
	if from < len(buf) {
		m.iov = append(m.iov, buf[from:])
	}
	m.iovw = m.iov // WriteTo consumes iovw, not the array behind it
	_, err := m.iovw.WriteTo(nc)
	clear(m.iov)
	m.iovw = nil
	return err
}

// armRead pushes the connection's read deadline to now + the idle timeout, at most every 1/16 of
// it unless force is set. Only the connection's goroutine calls it.
func (c *serverConn) armRead(force bool) {
	now := time.Now()
	if force || now.Sub(c.armedAt) >= c.s.idleTimeout/16 {
		_ = c.nc.SetReadDeadline(now.Add(c.s.idleTimeout))
		c.armedAt = now
	}
}

// nextBufferedMux is nextBuffered for the multiplexed framing.
func (c *serverConn) nextBufferedMux() bool {
	b := c.br.Buffered()
	if b < muxPrefixLen {
		return false
	}
	hdr, _ := c.br.Peek(muxPrefixLen)
	n, _ := parseMuxPrefix(hdr)
	return n > c.s.reqFrameMax || b-muxPrefixLen >= n
}
