package peer

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/typedcache/groupcache/internal/wire"
)

// Defaults of the options. Each option's documentation names its default and range too.
const (
	// DefaultBasePath is the path a Server answers under and a Client asks at.
	DefaultBasePath = "/_groupcache/"
	// DefaultIdleTimeout is how long a Server keeps a connection on which no request arrives.
	DefaultIdleTimeout = 2 * time.Minute
	// DefaultTimeout bounds one call of a Client (Get, GetMany, Set...): waiting for room on a
	// connection, dialing and the exchange.
	DefaultTimeout = 5 * time.Second
	// DefaultDialTimeout bounds dialing a peer and the upgrade handshake.
	DefaultDialTimeout = 2 * time.Second
	// DefaultIdleConnTimeout is how long a Client keeps a connection no call has used; it is
	// below DefaultIdleTimeout so that the client, not the server, closes idle connections.
	DefaultIdleConnTimeout = time.Minute
	// DefaultMaxConns bounds the connections a Server keeps open (WithMaxConns).
	DefaultMaxConns = 1024
	// DefaultStallTimeout bounds a started request frame's arrival and a reply write's progress
	// (WithStallTimeout).
	DefaultStallTimeout = 10 * time.Second
	// DefaultConnBuffer and DefaultServerBuffer bound the bytes a Server holds for requests it has
	// read and replies it has not written, per connection and in all (WithMaxBuffered).
	DefaultConnBuffer   = 16 << 20
	DefaultServerBuffer = 128 << 20
)

func optionError(name, format string, args ...any) error {
	return &Error{Err: ErrInvalidOption, Msg: name + ": " + fmt.Sprintf(format, args...)}
}

// Option is any option of this package: a ServerOption, a ClientOption, or a SharedOption that
// is both. A groupcache Node takes them all in one list and gives each to the side it configures.
type Option interface {
	peerOption()
}

// ServerOption configures a Server in NewServer. Each option checks its argument; NewServer
// returns the first error.
type ServerOption interface {
	Option
	applyServer(*serverConfig) error
}

// ClientOption configures a Client in NewClient. Each option checks its argument; NewClient
// returns the first error.
type ClientOption interface {
	Option
	applyClient(*clientConfig) error
}

// SharedOption is an option of both a Server and a Client, which the two ends of a connection
// must agree on (WithBasePath, WithLimits, WithTLS, WithSecret).
type SharedOption interface {
	ServerOption
	ClientOption
}

type serverOption func(*serverConfig) error

func (serverOption) peerOption()                         {}
func (f serverOption) applyServer(c *serverConfig) error { return f(c) }

type clientOption func(*clientConfig) error

func (clientOption) peerOption()                         {}
func (f clientOption) applyClient(c *clientConfig) error { return f(c) }

// bothOption sets a field the server and the client configurations share.
type bothOption func(*common) error

func (bothOption) peerOption() {}

func (f bothOption) applyServer(c *serverConfig) error { return f(&c.common) }
func (f bothOption) applyClient(c *clientConfig) error { return f(&c.common) }

// common is the part of the configuration a Server and a Client share.
type common struct {
	basePath string
	limits   Limits
	tls      *tls.Config                                   // WithTLS
	secrets  [][]byte                                      // WithSecret: the current secret first
	self     string                                        // WithSelf
	inject   func(context.Context) []byte                  // WithTraceContext
	extract  func(context.Context, []byte) context.Context // WithTraceContext
}

type serverConfig struct {
	common
	maxConcurrent int
	logger        *slog.Logger
	idleTimeout   time.Duration
	insecure      bool
	authorize     func(node string, op Op) bool
	maxConns      int
	stallTimeout  time.Duration
	connBuffer    int
	serverBuffer  int
}

type clientConfig struct {
	common
	timeout         time.Duration
	dialTimeout     time.Duration
	idleConnTimeout time.Duration
	conns           int
	observer        Observer
}

// Observer is told what a Client learns of its peers besides the replies to its calls
// (WithObserver). Its methods must be quick and safe for concurrent use: they run on the
// goroutine that read the news. Nothing a peer sends makes a Client name another peer to it.
type Observer interface {
	// Leaving: the peer at addr is shutting down (it sent a notice, docs/protocol.md): it takes
	// no new request, on any connection, and answers those in flight.
	Leaving(addr string)
	// Misnamed: the peer reached at addr names itself claim (its WithSelf), another address.
	Misnamed(addr, claim string)
}

// WithObserver sets whom a Client tells of its peers' notices (see Observer). Default: nobody.
func WithObserver(o Observer) ClientOption {
	return clientOption(func(c *clientConfig) error {
		c.observer = o
		return nil
	})
}

// WithBasePath sets the path a Server answers under, or at which a Client asks (they must agree;
// a trailing slash is added). Default DefaultBasePath ("/_groupcache/"); it must start with "/".
func WithBasePath(path string) SharedOption {
	return bothOption(func(c *common) error {
		if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " \t\r\n?#") {
			return optionError("WithBasePath", "%q is not an absolute URL path", path)
		}
		if !strings.HasSuffix(path, "/") {
			path += "/"
		}
		c.basePath = path
		return nil
	})
}

// WithTraceContext carries callers' trace contexts to the peers that serve them: a Client puts
// inject(ctx) in each request (nothing when it returns nil or more than MaxTraceBytes), and a
// Server gives the Backend extract(ctx, b) as the context of a request that carries b (b aliases
// the request: copy what is kept). Default: requests carry no trace context.
func WithTraceContext(inject func(context.Context) []byte, extract func(context.Context, []byte) context.Context) SharedOption {
	return bothOption(func(c *common) error {
		c.inject, c.extract = inject, extract
		return nil
	})
}

// WithLimits sets the limits of a Server or a Client (zero fields mean their defaults, see
// Limits); each field must be within its documented range. A Server refuses requests over them
// (StatusBadRequest; StatusTooLarge for a Set's value), accepts request frames up to the longest
// valid request under them, capped at MaxFrameBytes, and sends no value over them. A Client
// refuses to send a request over them (the same statuses), closes a connection on which a reply
// frame over MaxFrameBytes arrives, and fails a value over them (a call, or a batch entry) with
// StatusTooLarge.
func WithLimits(l Limits) SharedOption {
	return bothOption(func(c *common) error {
		if err := wire.CheckLimits(l); err != nil {
			return optionError("WithLimits", "%v", err)
		}
		c.limits = l
		return nil
	})
}

// WithMaxConcurrent bounds the requests a Server serves at once, across all connections; a batch
// counts as one request. A request beyond the bound is answered at once with StatusOverloaded.
// Default 0: no bound; range n >= 0.
func WithMaxConcurrent(n int) ServerOption {
	return serverOption(func(c *serverConfig) error {
		if n < 0 {
			return optionError("WithMaxConcurrent", "%d is negative", n)
		}
		c.maxConcurrent = n
		return nil
	})
}

// WithServerLogger sets the Server's logger: Backend panics at Error level, refused or malformed
// requests at Debug level. Default slog.Default(); nil is refused.
func WithServerLogger(l *slog.Logger) ServerOption {
	return serverOption(func(c *serverConfig) error {
		if l == nil {
			return optionError("WithServerLogger", "nil logger")
		}
		c.logger = l
		return nil
	})
}

// WithIdleTimeout sets how long a connection may go without a request (or a stalled reply)
// before the Server closes it (up to d/16 early); one with requests in progress is never idle.
// Default DefaultIdleTimeout (2 minutes); range d >= 0 (0 means the default).
func WithIdleTimeout(d time.Duration) ServerOption {
	return serverOption(func(c *serverConfig) error { return duration("WithIdleTimeout", d, &c.idleTimeout) })
}

// WithTimeout bounds one call of a Client (Get, GetMany, Set...) as a whole: waiting for room on
// a connection, dialing, sending and reading the reply. A context deadline that comes earlier
// wins. Default DefaultTimeout (5 s); range d >= 0 (0 means the default).
func WithTimeout(d time.Duration) ClientOption {
	return clientOption(func(c *clientConfig) error { return duration("WithTimeout", d, &c.timeout) })
}

// WithDialTimeout bounds dialing a peer and the upgrade handshake (within the call's own
// timeout). Default DefaultDialTimeout (2 s); range d >= 0 (0 means the default).
func WithDialTimeout(d time.Duration) ClientOption {
	return clientOption(func(c *clientConfig) error { return duration("WithDialTimeout", d, &c.dialTimeout) })
}

// WithIdleConnTimeout sets how long a Client keeps a connection that no call has used (below the
// peers' WithIdleTimeout). Default DefaultIdleConnTimeout (1 minute); d >= 0 (0: the default).
func WithIdleConnTimeout(d time.Duration) ClientOption {
	return clientOption(func(c *clientConfig) error { return duration("WithIdleConnTimeout", d, &c.idleConnTimeout) })
}

// duration sets *dst to d, refusing a negative d.
func duration(name string, d time.Duration, dst *time.Duration) error {
	if d < 0 {
		return optionError(name, "%v is negative", d)
	}
	*dst = d
	return nil
}

// WithConnsPerPeer sets how many connections a Client keeps to one peer. One carries up to
// MaxConnRequests requests at once and measured best: the more callers share it, the more of
// their requests share a write and a read. But its requests share one TCP stream, so a large reply
// delays those behind it by its transfer time: a cache of values of many megabytes among small
// ones may use a few. Default 1; range 1 to 64 (0 means the default).
func WithConnsPerPeer(n int) ClientOption {
	return clientOption(func(c *clientConfig) error {
		if n < 0 || n > 64 {
			return optionError("WithConnsPerPeer", "%d is outside 1..64", n)
		}
		c.conns = n
		return nil
	})
}

// WithMaxConns bounds the connections a Server keeps open; an upgrade beyond it is refused with
// HTTP 503 (the client's call fails with ErrUnavailable and its node loads the key itself).
// Each peer keeps WithConnsPerPeer connections (one by default) to each other. Default
// DefaultMaxConns (1024); range n >= 0 (0 means the default).
func WithMaxConns(n int) ServerOption {
	return serverOption(func(c *serverConfig) error {
		if n < 0 {
			return optionError("WithMaxConns", "%d is negative", n)
		}
		c.maxConns = n
		return nil
	})
}

// WithStallTimeout bounds how long a Server waits for the rest of a request frame once its first
// byte has come, for the client's proof of the shared secret once the upgrade is answered, and
// for a write of replies to complete: a connection that stalls so is closed, releasing what it
// held. A frame of MaxFrameBytes must therefore arrive within d. Default DefaultStallTimeout
// (10 s); range d >= 0 (0 means the default).
func WithStallTimeout(d time.Duration) ServerOption {
	return serverOption(func(c *serverConfig) error { return duration("WithStallTimeout", d, &c.stallTimeout) })
}

// WithMaxBuffered bounds the bytes a Server holds for requests it has read and not answered
// and for replies it has not written: perConn on one connection, perServer in all. A connection
// over perConn is not read until its replies drain (a client that does not read its replies
// stops being served, and is closed after the stall timeout); a reply that would take the server
// over perServer is answered StatusOverloaded instead. One request or reply larger than perConn
// is allowed when its connection holds nothing else. Defaults DefaultConnBuffer (16 MiB) and
// DefaultServerBuffer (128 MiB); ranges >= 0 (0 means the default).
func WithMaxBuffered(perConn, perServer int) ServerOption {
	return serverOption(func(c *serverConfig) error {
		if perConn < 0 || perServer < 0 {
			return optionError("WithMaxBuffered", "%d, %d: negative", perConn, perServer)
		}
		c.connBuffer, c.serverBuffer = perConn, perServer
		return nil
	})
}
