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
	// DefaultPipelining is the number of multiplexed connections per peer of a Client made
	// without WithPipelining: one connection, shared by every request to the peer (see
	// WithPipelining for why, and for when to use more).
	DefaultPipelining = 1
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
// instead, but to a peer that speaks framing 1 only.
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
// request over them is refused before it is sent (StatusBadRequest; StatusTooLarge for the value of a
// Set); a reply frame over them is refused (StatusTooLarge) and its connection closed, and a value
// over them fails its Get, or its GetMany or PeekMany entry, with StatusTooLarge. Each field must be within its documented range.
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
// connections on the multiplexed framing (UpgradeMultiplexed: every frame carries a request id,
// and the peer answers in any order), each carrying up to 64 requests in flight; 0 turns
// pipelining off: one request per connection at a time on framing 1, on up to
// WithMaxConnsPerPeer connections (which, like WithMaxIdlePerPeer, does not apply to multiplexed
// connections). Default DefaultPipelining (1); range 0 to 1024. Every op goes on the
// multiplexed connections, Peek and PeekMany included.
//
// A request is written at once if no write is in progress on its connection; otherwise its frame
// joins the next write, so the requests that arrive while one write is under way share one
// system call. One waiting caller at a time reads from the connection, hands the other callers
// the replies their ids name out of what it read, until its own reply is in; then it hands the
// reading on. A slow request (a load on a miss) holds up none of the others: the peer answers
// each when it is ready. A caller that leaves early (timeout, context) is released at once; its
// request stays in flight until its reply arrives and is dropped, and a connection on which more
// than half of the requests in flight are such leftovers (a peer that does not answer) takes no
// new request and is closed once nobody waits on it. A broken connection (closed, malformed reply,
// a reply whose id is not in flight) fails the requests in flight on it, with the errors a
// one-request connection would report; a request whose frame was never written is sent again on
// a new connection. A lone request goes out at once: it does not wait to be combined.
//
// A peer that answers with framing 1 only (a server older than the multiplexed framing) gets the
// requests one per connection, as without this option; the client remembers that for
// WithIdleConnTimeout, and then offers the multiplexed framing again (ClientStats.Framing1Fallbacks
// counts those answers).
//
// What it buys (docs/protocol.md, "Client pipelining", has the figures): when many callers ask
// the same peer at once, fewer system calls per request; in process, 16 callers' remote hits of
// 1 KiB took a quarter of the time per request with WithPipelining(1), and with one request in
// 50 taking 2 ms at the peer the fast requests had 2.5 to 2.7 times the throughput they have
// without pipelining. Across processes, 16 callers' remote hits of 1 KiB ran at 1.4 to 1.5 times
// the throughput of a raw TCP request/response, against 0.75 to 0.86 without pipelining. More
// connections share less. Values of 64 KiB gain little (the copies, not the system calls,
// dominate).
//
// What it costs: the requests of a connection share one TCP stream, so a large reply delays the
// replies behind it by its transfer time (not by its load: the peer answers each request when it
// is ready). A cache with values of many megabytes among small ones can give each peer a few
// connections (WithPipelining(4)); WithPipelining(0) goes back to one request per connection.
func WithPipelining(conns int) ClientOption {
	return clientOption(func(c *clientConfig) error {
		if conns < 0 || conns > 1024 {
			return optionError("WithPipelining", "%d is outside 0..1024", conns)
		}
		c.pipeConns, c.pipeSet = conns, true
		return nil
	})
}
