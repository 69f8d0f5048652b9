package peer

import (
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Defaults of the options. Each option's documentation names its default and range too.
const (
	// DefaultBasePath is the path a Server answers under and a Client asks at.
	DefaultBasePath = "/_groupcache/"
	// DefaultIdleTimeout is how long a Server keeps an upgraded connection on which no request
	// arrives.
	DefaultIdleTimeout = 2 * time.Minute
	// DefaultTimeout bounds one call of a Client (Get, GetMany, Set...): waiting for a
	// connection, dialing and the exchange.
	DefaultTimeout = 5 * time.Second
	// DefaultDialTimeout bounds dialing a peer and the upgrade handshake.
	DefaultDialTimeout = 2 * time.Second
	// DefaultMaxConnsPerPeer bounds a Client's connections, and so its requests in flight, to
	// one peer.
	DefaultMaxConnsPerPeer = 32
	// DefaultIdleConnTimeout is how long a Client keeps an unused connection; it is below
	// DefaultIdleTimeout so that the client, not the server, closes idle connections.
	DefaultIdleConnTimeout = time.Minute
	// DefaultPipelining is the number of pipelined connections per peer of a Client made
	// without WithPipelining: 0, one request per connection. Pipelining raises the throughput
	// of small remote hits, but a request queued behind a slow one (a load on a miss) waits for
	// it, which costs more than it gains as soon as some requests are slow; see WithPipelining.
	DefaultPipelining = 0
)

func optionError(name, format string, args ...any) error {
	return &Error{Err: ErrInvalidOption, Msg: name + ": " + fmt.Sprintf(format, args...)}
}

func checkBasePath(name, p string) (string, error) {
	if p == "" {
		return DefaultBasePath, nil
	}
	if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, " \t\r\n?#") {
		return "", optionError(name, "%q is not an absolute URL path", p)
	}
	if !strings.HasSuffix(p, "/") {
		p += "/"
	}
	return p, nil
}

// ServerOption configures a Server in NewServer. Each option checks its argument; NewServer
// returns the first error.
type ServerOption interface {
	applyServer(*serverConfig) error
}

// ClientOption configures a Client in NewClient. Each option checks its argument; NewClient
// returns the first error.
type ClientOption interface {
	applyClient(*clientConfig) error
}

// Option is an option for both a Server and a Client (WithBasePath).
type Option interface {
	ServerOption
	ClientOption
}

type serverOption func(*serverConfig) error

func (f serverOption) applyServer(c *serverConfig) error { return f(c) }

type clientOption func(*clientConfig) error

func (f clientOption) applyClient(c *clientConfig) error { return f(c) }

type basePathOption string

func (p basePathOption) applyServer(c *serverConfig) (err error) {
	c.basePath, err = checkBasePath("WithBasePath", string(p))
	return err
}

func (p basePathOption) applyClient(c *clientConfig) (err error) {
	c.basePath, err = checkBasePath("WithBasePath", string(p))
	return err
}

type serverConfig struct {
	basePath      string
	limits        Limits
	maxConcurrent int
	logger        *slog.Logger
	idleTimeout   time.Duration
}

// WithBasePath sets the path a Server answers under, or the path at which a Client asks its
// peers (they must agree). A trailing slash is added if missing. Default DefaultBasePath
// ("/_groupcache/"); it must start with "/". Mount the server at the same path on your mux:
// mux.Handle(path, server).
func WithBasePath(path string) Option {
	return basePathOption(path)
}

// WithServerLimits sets the server's limits (zero fields mean their defaults, see Limits).
// Requests over them are refused with StatusBadRequest, values over them (in a reply, or in a Set
// request) with StatusTooLarge. The server accepts request frames up to the longest valid request
// of any op under these limits (a Set of MaxValueBytes, usually), capped at MaxFrameBytes.
// Each field must be within its documented range.
func WithServerLimits(l Limits) ServerOption {
	return serverOption(func(c *serverConfig) error {
		if err := l.validate(); err != nil {
			return optionError("WithServerLimits", "%v", err)
		}
		c.limits = l
		return nil
	})
}

// WithMaxConcurrent bounds the requests served at once, across all connections; a GetMany,
// PeekMany or Remove counts as one request, whatever its number of keys. A request beyond the bound is
// answered at once with StatusOverloaded. Default 0: no bound; range n >= 0.
func WithMaxConcurrent(n int) ServerOption {
	return serverOption(func(c *serverConfig) error {
		if n < 0 {
			return optionError("WithMaxConcurrent", "%d is negative", n)
		}
		c.maxConcurrent = n
		return nil
	})
}

// WithServerLogger sets the logger for events worth a look: Backend panics at Error level,
// refused or malformed requests at Debug level. Default slog.Default(); nil is refused.
func WithServerLogger(l *slog.Logger) ServerOption {
	return serverOption(func(c *serverConfig) error {
		if l == nil {
			return optionError("WithServerLogger", "nil logger")
		}
		c.logger = l
		return nil
	})
}

// WithIdleTimeout sets how long an upgraded connection may go without a request (or a reply
// stall) before the server closes it; the timer is re-armed coarsely, so a connection may be
// closed up to 1/16 of d early. Default DefaultIdleTimeout (2 minutes); range d > 0 (0 means the
// default).
func WithIdleTimeout(d time.Duration) ServerOption {
	return serverOption(func(c *serverConfig) error {
		if d < 0 {
			return optionError("WithIdleTimeout", "%v is negative", d)
		}
		c.idleTimeout = d
		return nil
	})
}

type clientConfig struct {
	basePath        string
	timeout         time.Duration
	dialTimeout     time.Duration
	maxConns        int
	maxIdle         int
	idleConnTimeout time.Duration
	limits          Limits
	pipeConns       int
	pipeSet         bool
}

// WithTimeout bounds one call (Get, GetMany, Set...) as a whole: waiting for a free connection,
// dialing, sending and reading the reply. A context deadline that comes earlier wins. Default DefaultTimeout (5 s);
// range d > 0 (0 means the default).
func WithTimeout(d time.Duration) ClientOption {
	return clientOption(func(c *clientConfig) error {
		if d < 0 {
			return optionError("WithTimeout", "%v is negative", d)
		}
		c.timeout = d
		return nil
	})
}

// WithDialTimeout bounds dialing a peer and the upgrade handshake (within the request's own
// timeout). Default DefaultDialTimeout (2 s); range d > 0 (0 means the default).
func WithDialTimeout(d time.Duration) ClientOption {
	return clientOption(func(c *clientConfig) error {
		if d < 0 {
			return optionError("WithDialTimeout", "%v is negative", d)
		}
		c.dialTimeout = d
		return nil
	})
}

// WithMaxConnsPerPeer bounds the connections to one peer, and so the requests in flight to it
// (one request per connection at a time). Callers beyond the bound wait for a free connection,
// within their timeout and context. Default DefaultMaxConnsPerPeer (32); range 1 to 65536 (0
// means the default). With WithPipelining, WithPipelining's number bounds the connections
// instead.
func WithMaxConnsPerPeer(n int) ClientOption {
	return clientOption(func(c *clientConfig) error {
		if n < 0 || n > 1<<16 {
			return optionError("WithMaxConnsPerPeer", "%d is outside 0..65536", n)
		}
		c.maxConns = n
		return nil
	})
}

// WithMaxIdlePerPeer bounds the unused connections kept open to one peer; a connection freed
// beyond it is closed. Default: the max conns per peer (keeping fewer makes a steady load dial
// again and again); range 1 to the max conns per peer (0 means the default).
func WithMaxIdlePerPeer(n int) ClientOption {
	return clientOption(func(c *clientConfig) error {
		if n < 0 || n > 1<<16 {
			return optionError("WithMaxIdlePerPeer", "%d is outside 0..65536", n)
		}
		c.maxIdle = n
		return nil
	})
}

// WithIdleConnTimeout sets how long an unused connection is kept before the client closes it.
// Keep it below the peers' WithIdleTimeout. Default DefaultIdleConnTimeout (1 minute); range
// d > 0 (0 means the default).
func WithIdleConnTimeout(d time.Duration) ClientOption {
	return clientOption(func(c *clientConfig) error {
		if d < 0 {
			return optionError("WithIdleConnTimeout", "%v is negative", d)
		}
		c.idleConnTimeout = d
		return nil
	})
}

// WithClientLimits sets the client's limits (zero fields mean their defaults, see Limits). A
// request over them is refused before it is sent (ErrBadRequest; ErrTooLarge for the value of a
// Set); a reply frame over them is refused (ErrTooLarge) and its connection closed, and a value
// over them fails its Get, or its GetMany or PeekMany entry, with ErrTooLarge. Each field must be within its documented range.
func WithClientLimits(l Limits) ClientOption {
	return clientOption(func(c *clientConfig) error {
		if err := l.validate(); err != nil {
			return optionError("WithClientLimits", "%v", err)
		}
		c.limits = l
		return nil
	})
}

// WithPipelining makes the Client send its requests to a peer over at most conns shared
// connections, each carrying up to 64 requests in flight; 0 turns pipelining off: one request per
// connection at a time, on up to WithMaxConnsPerPeer connections (which, like
// WithMaxIdlePerPeer, does not apply to pipelined connections). Default DefaultPipelining; range
// 0 to 1024.
//
// A request is written at once if no write is in progress on its connection; otherwise its frame
// joins the next write, so the requests that arrive while one write is under way share one
// system call. Replies come back in request order: one waiting caller at a time reads from the
// connection, takes the replies of the others out of what it read and hands them over, until its
// own reply is in; then it hands the reading on. A caller that leaves early (timeout, context) is
// released at once and its reply is read and dropped when it arrives. When a request's deadline
// passes with every reply before it read (the peer is late with it), no new request joins that
// connection, the requests queued behind it are sent again on another one, and the connection
// is closed once nobody waits on it. A broken connection (closed, malformed reply) fails the
// requests in flight on it, with the errors a one-request connection would report; a request
// whose frame was never written is sent again on a new connection. A lone request goes out at
// once: it does not wait to be combined.
//
// Peek and PeekMany are not pipelined: they go one request per connection, as without this
// option. They are the hand-off a node sends while it serves a peer's request (a new owner asks
// the previous one before it loads); since a server answers a connection's requests one after the
// other, a hand-off queued on a pipelined connection behind requests that themselves wait for the
// one being served would make a cycle across nodes that only timeouts break. For the same reason,
// do not pipeline the clients of nodes whose loaders ask other nodes (a cache whose loader calls
// another cache's Get): their requests, sent while serving, could wait in such a cycle.
//
// What it buys, and costs (docs/protocol.md, "Client pipelining", has the figures). When many
// callers ask the same peer at once, fewer system calls per request: with 16 callers on two
// shared cores, remote hits of 1 KiB cost the client 0.7 system calls instead of 3 and the
// server 0.6 instead of 3, and the throughput went from 0.8 to 1.3-1.5 times that of a raw TCP
// request/response with WithPipelining(1); a lone caller's latency does not change. More
// connections share less (WithPipelining(4): 0.9-1.0). Values of 64 KiB gain nothing (the
// copies, not the system calls, dominate). But a server answers the requests of one connection
// one after the other, in order: a request queued behind a slow one (a load on a miss, a slow
// backend) waits for it. With one request in 50 taking 2 ms at the peer, the fast requests of 16
// callers got a quarter of their throughput with WithPipelining(1), under half with 2
// connections, 90 % with 4. Hence it is off by default: turn it on where remote requests are
// mostly hits of small values.
func WithPipelining(conns int) ClientOption {
	return clientOption(func(c *clientConfig) error {
		if conns < 0 || conns > 1024 {
			return optionError("WithPipelining", "%d is outside 0..1024", conns)
		}
		c.pipeConns, c.pipeSet = conns, true
		return nil
	})
}
