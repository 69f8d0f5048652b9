package etcd

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/typedcache/groupcache"
	"github.com/typedcache/groupcache/discovery"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Defaults of Config.
const (
	// DefaultPrefix is the key prefix the nodes register under.
	DefaultPrefix = "/groupcache/peers/"
	// DefaultTTL is the TTL of a node's lease: how long its key outlives the node.
	DefaultTTL = 10 * time.Second
	// DefaultRequestTimeout bounds each request to etcd (grant, put, get, revoke).
	DefaultRequestTimeout = 5 * time.Second
)

// MinTTL is the shortest lease TTL Config accepts. etcd counts lease TTLs in whole seconds, and
// may raise a short one to its own minimum (about 1.5 election timeouts).
const MinTTL = time.Second

// maxTTL is etcd's longest lease TTL (lease.MaxLeaseTTL, in seconds).
const maxTTL = 9_000_000_000 * time.Second

// Back-off between attempts after a failed request (re-list, re-register).
const (
	retryMin = 250 * time.Millisecond
	retryMax = 5 * time.Second
)

// maxRevokeTimeout bounds the revoke when Watch ends, so that Watch returns promptly even when
// etcd cannot be reached (the lease then runs out on its own).
const maxRevokeTimeout = 2 * time.Second

// The errors of Watch once it cannot go on. Both match groupcache.ErrClosed.
var (
	// errClosed is returned by Watch once Close was called.
	errClosed error = closedError("discovery/etcd: source closed")
	// errClientClosed is returned by Watch when the etcd client was closed while it ran.
	errClientClosed error = closedError("discovery/etcd: etcd client closed")
)

// closedError is an error that matches groupcache.ErrClosed.
type closedError string

func (e closedError) Error() string { return string(e) }

// Is reports whether target is groupcache.ErrClosed.
func (closedError) Is(target error) bool { return target == groupcache.ErrClosed }

// Config configures New. Only Client is required.
type Config struct {
	// Client is the etcd client, with its endpoints, TLS and credentials. The Source does not
	// close it: close it after the Source (Close, or the end of every Watch).
	Client *clientv3.Client

	// Prefix is the key prefix every node of the cluster registers under; the peer set is the
	// values of the keys under it. Default DefaultPrefix ("/groupcache/peers/"). End it with a
	// separator, or another prefix starting with it ("/groupcache/peers2/") would count too.
	Prefix string

	// PeerAddr is this node's groupcache address ("host:port"), the one its groupcache.Node was
	// made with and that every other node can reach. While Watch runs it is the value of the key
	// Prefix+PeerAddr. Empty: the Source only watches and does not register.
	PeerAddr string

	// TTL is the lease TTL: how long the key of a node that stopped keeping its lease alive (a
	// crash, a lost network) stays, so at most how long the others keep it after it died. It is
	// rounded up to whole seconds; etcd may raise it to its own minimum. Default DefaultTTL
	// (10 s); range MinTTL (1 s) and up.
	TTL time.Duration

	// RequestTimeout bounds each request to etcd, after which it is reported as an error and
	// tried again. Default DefaultRequestTimeout (5 s); range > 0.
	RequestTimeout time.Duration

	// Logger receives this package's logs: registrations (Info), failed requests, lost leases,
	// re-lists and invalid values under the prefix (Warn). Default: no logs.
	Logger *slog.Logger
}

// Source is a discovery.Source fed by an etcd key prefix. Its methods are safe for concurrent
// use. Several Watch calls may run at once; each keeps a registration of its own, so they should
// not overlap for long on a Source with a PeerAddr (see Watch).
type Source struct {
	cli        *clientv3.Client
	prefix     string
	self       string // PeerAddr; "" for a watch-only source
	key        string // Prefix+PeerAddr
	ttl        int64  // seconds
	reqTimeout time.Duration
	log        *slog.Logger

	closeCtx context.Context // canceled by Close
	closeFn  context.CancelFunc
	mu       sync.Mutex // guards closed and the Add of running
	closed   bool
	running  sync.WaitGroup // Watch calls in progress

	// watchRev, when set (by tests), changes the revision a watch starts from.
	watchRev func(rev int64) int64
}

var _ discovery.Source = (*Source)(nil)

// New checks cfg and returns a Source; nothing touches etcd before Watch. Errors in cfg wrap
// groupcache.ErrInvalidOption.
func New(cfg Config) (*Source, error) {
	if cfg.Client == nil {
		return nil, invalid("nil Client")
	}
	prefix := cfg.Prefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if cfg.PeerAddr != "" {
		if err := checkAddr(cfg.PeerAddr); err != nil {
			return nil, invalid("PeerAddr %q: %v", cfg.PeerAddr, err)
		}
	}
	ttl := cfg.TTL
	switch {
	case ttl == 0:
		ttl = DefaultTTL
	case ttl < MinTTL || ttl > maxTTL:
		return nil, invalid("TTL %v out of range [%v, %v]", ttl, MinTTL, maxTTL)
	}
	reqTimeout := cfg.RequestTimeout
	switch {
	case reqTimeout == 0:
		reqTimeout = DefaultRequestTimeout
	case reqTimeout < 0:
		return nil, invalid("RequestTimeout %v is negative", reqTimeout)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Source{
		cli:        cfg.Client,
		prefix:     prefix,
		self:       cfg.PeerAddr,
		ttl:        int64((ttl + time.Second - 1) / time.Second),
		reqTimeout: reqTimeout,
		log:        logger.With(slog.String("prefix", prefix)),
	}
	if s.self != "" {
		s.key = prefix + s.self
	}
	s.closeCtx, s.closeFn = context.WithCancel(context.Background())
	return s, nil
}

// invalid returns an error wrapping groupcache.ErrInvalidOption.
func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: discovery/etcd: %s", groupcache.ErrInvalidOption, fmt.Sprintf(format, args...))
}

// checkAddr accepts "host:port" with a non-empty host free of spaces and control characters and
// a port in 1..65535, as discovery.Run does.
func checkAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			return errors.New(ae.Err)
		}
		return err
	}
	if host == "" {
		return errors.New("empty host")
	}
	if strings.ContainsFunc(host, func(c rune) bool { return unicode.IsSpace(c) || unicode.IsControl(c) }) {
		return errors.New("space or control character in host")
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("port %q is not in 1..65535", port)
	}
	return nil
}

// Prefix returns the key prefix the Source registers under and watches.
func (s *Source) Prefix() string { return s.prefix }

// PeerAddr returns this node's groupcache address; "" for a watch-only Source.
func (s *Source) PeerAddr() string { return s.self }

// Key returns the key this node registers under (Prefix+PeerAddr); "" for a watch-only Source.
func (s *Source) Key() string { return s.key }

// String names the source in logs (discovery.Run uses it): "etcd <prefix>".
func (s *Source) String() string { return "etcd " + s.prefix }

// Close ends every Watch, which then returns an error matching groupcache.ErrClosed, and waits
// until they have returned, their leases revoked. Later Watch calls return that error too. It does
// not close the etcd client. Calls after the first return nil at once.
func (s *Source) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.closeFn()
	s.running.Wait()
	return nil
}

// Peers reads the peer set once: the valid addresses under the prefix, sorted and without
// duplicates.
func (s *Source) Peers(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.reqTimeout)
	defer cancel()
	resp, err := s.cli.Get(ctx, s.prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("discovery/etcd: get %s: %w", s.prefix, err)
	}
	var peers []string
	for _, kv := range resp.Kvs {
		if checkAddr(string(kv.Value)) == nil {
			peers = append(peers, string(kv.Value))
		}
	}
	slices.Sort(peers)
	return slices.Compact(peers), nil
}

// Watch registers this node (when Config.PeerAddr is set), sends the peer set as soon as it is
// read, then the full set again after each change under the prefix, until ctx ends, when it
// returns ctx.Err(), or until Close. It returns an error matching groupcache.ErrClosed after
// Close, or if the etcd client is closed under it (the messages tell which).
//
// Registration: Watch grants a lease of Config.TTL, puts PeerAddr at Prefix+PeerAddr with it and
// keeps it alive. If the lease is lost (etcd unreachable for longer than the TTL, or the lease
// expired) or the key is deleted, it registers again. When Watch returns it revokes the lease, so
// that the other nodes drop this one at once. A second Watch on the same Source registers again,
// with a lease of its own; the key then follows the last one to register, and the first to return
// deletes it until the other puts it back (it does so as soon as it sees the deletion).
//
// Peers: the set is the values under the prefix that are valid "host:port" addresses (others are
// logged and left out), sorted and without duplicates; the first set includes this node unless
// its first registration failed. Changes that arrive while an update waits to be received are
// merged into it: the receiver always gets the latest set, and never the same set twice in a row.
// When etcd has compacted the revision the watch needs, or the watch fails, Watch reads the
// prefix again and follows it from there.
//
// Failed requests (the read of the prefix, a registration) and lost leases are sent as Updates
// with Err set, and Watch tries again after a back-off. While etcd cannot be reached the etcd
// client waits to resume the watch; nothing is sent meanwhile, except the errors of a registering
// Source once its lease is lost.
func (s *Source) Watch(ctx context.Context, updates chan<- discovery.Update) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errClosed
	}
	s.running.Add(1)
	s.mu.Unlock()
	defer s.running.Done()

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.closeCtx, cancel)()

	l := &loop{s: s, ctx: wctx, updates: updates, keys: map[string]string{}}
	if s.self != "" {
		l.reg = s.startRegistrar(wctx)
		defer l.reg.stop()
	}
	err := l.run()
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case s.closeCtx.Err() != nil:
		return errClosed
	}
	return err
}

// loop is the state of one Watch.
type loop struct {
	s       *Source
	ctx     context.Context
	updates chan<- discovery.Update
	reg     *registrar // nil for a watch-only Source

	keys       map[string]string // key -> valid address, under the prefix
	peers      []string          // current set
	last       []string          // last set sent
	sentAny    bool
	pendingErr error // error not sent yet
}

var errCompacted = errors.New("watch revision compacted")

func (l *loop) run() error {
	if l.reg != nil {
		// Let the first registration through, so that the first set includes this node.
		select {
		case <-l.reg.first:
		case <-l.ctx.Done():
			return l.ctx.Err()
		}
	}
	failures := 0 // consecutive, a watch that lasted retryMax or more ending the sequence
	for {
		rev, err := l.list()
		if err == nil {
			started := time.Now()
			err = l.follow(rev)
			if time.Since(started) >= retryMax {
				failures = 0
			}
		}
		if l.ctx.Err() != nil {
			return l.ctx.Err()
		}
		if l.s.cli.Ctx().Err() != nil {
			return errClientClosed
		}
		failures++
		wait := backoff(failures)
		if errors.Is(err, errCompacted) {
			// Not an error: read again, at once the first time.
			if failures == 1 {
				continue
			}
			wait = backoff(failures - 1)
		} else {
			l.fail(err)
		}
		if err := l.pause(wait); err != nil {
			return err
		}
	}
}

// list reads the prefix into l.keys and returns its revision.
func (l *loop) list() (int64, error) {
	ctx, cancel := context.WithTimeout(l.ctx, l.s.reqTimeout)
	defer cancel()
	resp, err := l.s.cli.Get(ctx, l.s.prefix, clientv3.WithPrefix())
	if err != nil {
		return 0, fmt.Errorf("discovery/etcd: get %s: %w", l.s.prefix, err)
	}
	clear(l.keys)
	for _, kv := range resp.Kvs {
		l.setKey(string(kv.Key), string(kv.Value))
	}
	l.changed()
	return resp.Header.Revision, nil
}

// setKey records a key's value if it is a valid address, and logs it otherwise.
func (l *loop) setKey(key, value string) {
	if err := checkAddr(value); err != nil {
		delete(l.keys, key)
		l.s.log.Warn("discovery/etcd: value under the prefix is not a host:port address; ignored",
			slog.String("key", key), slog.String("value", value), slog.Any("err", err))
		return
	}
	l.keys[key] = value
}

// follow watches the prefix from revision rev+1 until the watch ends or ctx does, sending the set
// after each change. It returns errCompacted if etcd no longer has the revision.
func (l *loop) follow(rev int64) error {
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(l.ctx))
	defer cancel()
	from := rev + 1
	if l.s.watchRev != nil {
		from = l.s.watchRev(from)
	}
	wch := l.s.cli.Watch(ctx, l.s.prefix, clientv3.WithPrefix(), clientv3.WithRev(from))
	for {
		out, u := l.next()
		select {
		case out <- u:
			l.sent(u)
		case err := <-l.regErrs():
			l.pendingErr = err
		case resp, ok := <-wch:
			if !ok {
				return cmp.Or(l.ctx.Err(), errors.New("discovery/etcd: watch closed"))
			}
			if err := l.apply(resp, from); err != nil {
				return err
			}
		case <-l.ctx.Done():
			return l.ctx.Err()
		}
	}
}

// apply applies one response of the watch that started at revision from to l.keys. An error ends
// the watch: errCompacted if etcd no longer has the revision, or why the watch failed.
func (l *loop) apply(resp clientv3.WatchResponse, from int64) error {
	if resp.CompactRevision != 0 {
		l.s.log.Info("discovery/etcd: watch revision compacted; reading the prefix again",
			slog.Int64("revision", from), slog.Int64("compactRevision", resp.CompactRevision))
		return errCompacted
	}
	if err := resp.Err(); err != nil {
		return fmt.Errorf("discovery/etcd: watch %s: %w", l.s.prefix, err)
	}
	if resp.Canceled {
		return errors.New("discovery/etcd: watch canceled")
	}
	for _, ev := range resp.Events {
		key := string(ev.Kv.Key)
		switch ev.Type {
		case clientv3.EventTypePut:
			l.setKey(key, string(ev.Kv.Value))
		case clientv3.EventTypeDelete:
			delete(l.keys, key)
			if l.reg != nil && key == l.s.key {
				l.reg.reput() // someone deleted this node's key: put it back
			}
		}
	}
	l.changed()
	return nil
}

// pause waits d, sending what is pending meanwhile.
func (l *loop) pause(d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		out, u := l.next()
		select {
		case out <- u:
			l.sent(u)
		case err := <-l.regErrs():
			l.pendingErr = err
		case <-t.C:
			return nil
		case <-l.ctx.Done():
			return l.ctx.Err()
		}
	}
}

// fail records err to be sent, replacing an error not sent yet.
func (l *loop) fail(err error) {
	l.s.log.Warn("discovery/etcd: watch failed; retrying", slog.Any("err", err))
	l.pendingErr = err
}

// regErrs returns the registrar's error channel; nil (never ready) for a watch-only Source.
func (l *loop) regErrs() <-chan error {
	if l.reg == nil {
		return nil
	}
	return l.reg.errs
}

// changed recomputes the set from l.keys.
func (l *loop) changed() {
	peers := make([]string, 0, len(l.keys))
	for _, p := range l.keys {
		peers = append(peers, p)
	}
	slices.Sort(peers)
	l.peers = slices.Compact(peers)
}

// next returns the update to send, and the channel to send it on; a nil channel if there is none.
// An error goes first; then the set, if it differs from the last one sent.
func (l *loop) next() (chan<- discovery.Update, discovery.Update) {
	if l.pendingErr != nil {
		return l.updates, discovery.Update{Err: l.pendingErr}
	}
	if l.peers != nil && (!l.sentAny || !slices.Equal(l.peers, l.last)) {
		return l.updates, discovery.Update{Peers: slices.Clone(l.peers)}
	}
	return nil, discovery.Update{}
}

func (l *loop) sent(u discovery.Update) {
	if u.Err != nil {
		l.pendingErr = nil
		return
	}
	l.last, l.sentAny = u.Peers, true
}

// registrar keeps this node's key registered with a live lease, for one Watch.
type registrar struct {
	s      *Source
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	first  chan struct{} // closed after the first attempt, successful or not
	kick   chan struct{} // put the key again (it was deleted)
	errs   chan error    // latest error not taken by the loop
}

func (s *Source) startRegistrar(ctx context.Context) *registrar {
	ctx, cancel := context.WithCancel(ctx)
	r := &registrar{
		s:      s,
		ctx:    ctx,
		cancel: cancel,
		done:   make(chan struct{}),
		first:  make(chan struct{}),
		kick:   make(chan struct{}, 1),
		errs:   make(chan error, 1),
	}
	go r.run()
	return r
}

// stop ends the registrar and waits until it has revoked its lease.
func (r *registrar) stop() {
	r.cancel()
	<-r.done
}

// reput asks the registrar to put the key again.
func (r *registrar) reput() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// report hands err to the loop, replacing an error it has not taken yet.
func (r *registrar) report(err error) {
	r.s.log.Warn("discovery/etcd: registration failed; retrying", slog.String("key", r.s.key), slog.Any("err", err))
	for {
		select {
		case r.errs <- err:
			return
		default:
		}
		select {
		case <-r.errs:
		default:
		}
	}
}

func (r *registrar) run() {
	defer close(r.done)
	var lease clientv3.LeaseID
	defer func() {
		// A closed client revokes nothing: its node is gone as if dead, and its key goes when
		// the lease runs out (a Revoke racing the client's Close could still get through).
		if lease != 0 && r.s.cli.Ctx().Err() == nil {
			r.revoke(lease)
		}
	}()
	firstDone := false
	failures := 0 // consecutive
	for {
		id, err := r.register(lease)
		if !firstDone {
			close(r.first)
			firstDone = true
		}
		if err == nil {
			lease = id
			started := time.Now()
			err = r.keepAlive(lease)
			if time.Since(started) >= time.Duration(r.s.ttl)*time.Second {
				failures = 0 // a lease kept for a while ends the sequence of failures
			}
		}
		if r.ctx.Err() != nil || r.s.cli.Ctx().Err() != nil {
			return
		}
		r.report(err)
		if failures++; failures > 1 {
			// A lease lost after a while is replaced at once; repeated failures wait.
			t := time.NewTimer(backoff(failures - 1))
			select {
			case <-t.C:
			case <-r.ctx.Done():
				t.Stop()
				return
			}
		}
	}
}

// register grants a lease and puts the key with it. It then revokes old, the lease the key had
// before (lost, or perhaps still alive on the server after an outage).
func (r *registrar) register(old clientv3.LeaseID) (clientv3.LeaseID, error) {
	ctx, cancel := context.WithTimeout(r.ctx, r.s.reqTimeout)
	defer cancel()
	g, err := r.s.cli.Grant(ctx, r.s.ttl)
	if err != nil {
		return 0, fmt.Errorf("discovery/etcd: grant lease: %w", err)
	}
	if _, err := r.s.cli.Put(ctx, r.s.key, r.s.self, clientv3.WithLease(g.ID)); err != nil {
		r.revoke(g.ID)
		return 0, fmt.Errorf("discovery/etcd: put %s: %w", r.s.key, err)
	}
	if old != 0 {
		r.revoke(old)
	}
	r.s.log.Info("discovery/etcd: registered", slog.String("key", r.s.key),
		slog.String("lease", fmt.Sprintf("%x", int64(g.ID))), slog.Int64("ttlSeconds", g.TTL))
	return g.ID, nil
}

// keepAlive keeps lease alive until ctx ends or the lease is lost, putting the key again when
// asked to. It returns why it stopped.
func (r *registrar) keepAlive(lease clientv3.LeaseID) error {
	ctx, cancel := context.WithCancel(r.ctx)
	defer cancel()
	ka, err := r.s.cli.KeepAlive(ctx, lease)
	if err != nil {
		return fmt.Errorf("discovery/etcd: keep lease %x alive: %w", int64(lease), err)
	}
	for {
		select {
		case _, ok := <-ka:
			if !ok {
				return fmt.Errorf("discovery/etcd: lease %x lost: keep-alive ended", int64(lease))
			}
		case <-r.kick:
			pctx, pcancel := context.WithTimeout(ctx, r.s.reqTimeout)
			_, err := r.s.cli.Put(pctx, r.s.key, r.s.self, clientv3.WithLease(lease))
			pcancel()
			if err != nil {
				return fmt.Errorf("discovery/etcd: put %s again: %w", r.s.key, err)
			}
			r.s.log.Info("discovery/etcd: key was deleted; registered again", slog.String("key", r.s.key))
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// revoke revokes lease, best effort, within a short timeout: etcd deletes its key at once.
func (r *registrar) revoke(lease clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.ctx), min(r.s.reqTimeout, maxRevokeTimeout))
	defer cancel()
	if _, err := r.s.cli.Revoke(ctx, lease); err != nil && r.s.cli.Ctx().Err() == nil {
		r.s.log.Warn("discovery/etcd: revoke lease", slog.String("lease", fmt.Sprintf("%x", int64(lease))), slog.Any("err", err))
	}
}

// backoff returns the wait before the n-th consecutive retry (n >= 1): a random duration in
// [d/2, d], with d = retryMin·2^(n-1) capped at retryMax.
func backoff(n int) time.Duration {
	d := retryMin
	for i := 1; i < n && d < retryMax; i++ {
		d *= 2
	}
	d = min(d, retryMax)
	return d/2 + rand.N(d/2+1)
}
