package memberlist

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/typedcache/groupcache"
	"github.com/typedcache/groupcache/discovery"
)

// errClosed is returned by Watch, Join and Leave once Shutdown was called.
var errClosed error = closedError("discovery/memberlist: source shut down")

// closedError is an error that matches groupcache.ErrClosed.
type closedError string

func (e closedError) Error() string { return string(e) }

// Is reports whether target is groupcache.ErrClosed.
func (closedError) Is(target error) bool { return target == groupcache.ErrClosed }

// Config configures New. Only PeerAddr is required.
type Config struct {
	// PeerAddr is this node's groupcache address ("host:port"), the one its groupcache.Node was
	// made with and that every other node can reach. It is gossiped in the node's metadata, so
	// it must fit in memberlist.MetaMaxSize (512) bytes.
	PeerAddr string

	// Name is this node's name in the gossip cluster; it must be unique there.
	// Default PeerAddr.
	Name string

	// BindAddr is the address the gossip listeners (UDP and TCP) bind to. Default "0.0.0.0".
	BindAddr string
	// BindPort is the gossip port. 0 picks a free port (see GossipAddr); a real deployment
	// sets a fixed one, usually 7946, so that seed addresses are known in advance.
	BindPort int
	// AdvertiseAddr and AdvertisePort are the gossip address the other members use to reach
	// this one, when it differs from the bound one (NAT, containers). Default: derived from
	// the bind address (memberlist picks a private interface address for 0.0.0.0) and port.
	AdvertiseAddr string
	AdvertisePort int

	// Join lists gossip addresses ("host:port", or a host name resolving to several) of
	// existing members. New contacts them and fails if none answers. Empty: this node starts
	// a new cluster that others join.
	Join []string

	// Logger receives this package's logs and memberlist's own, at their levels.
	// Default: no logs.
	Logger *slog.Logger

	// MemberlistConfig is the base configuration for timings, encryption, labels, transport
	// and the like. Default memberlist.DefaultLANConfig(); memberlist.DefaultLocalConfig() and
	// memberlist.DefaultWANConfig() fit other networks. It is copied, not modified. The fields
	// above replace Name, BindAddr, BindPort, AdvertiseAddr and AdvertisePort. Its Delegate
	// and Events, when set, still get every call except NodeMeta, which advertises PeerAddr.
	// Its Logger or LogOutput, when set, replace the Logger above for memberlist's logs.
	MemberlistConfig *memberlist.Config
}

// Source is a discovery.Source fed by memberlist gossip. Its methods are safe for concurrent use,
// and any number of Watch calls may run at once.
type Source struct {
	ml   *memberlist.Memberlist
	self string // PeerAddr
	log  *slog.Logger

	mu      sync.Mutex
	members map[string]string // member name -> peer address, live members with valid metadata
	subs    map[chan struct{}]struct{}

	life     sync.Mutex // serializes Leave and Shutdown (memberlist panics on Leave after Shutdown)
	closed   chan struct{}
	shutdown bool
}

var _ discovery.Source = (*Source)(nil)

// New creates the memberlist, advertising cfg.PeerAddr, and joins the cluster through cfg.Join.
// Errors in cfg wrap groupcache.ErrInvalidOption. On any error nothing is left running.
func New(cfg Config) (*Source, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	s := &Source{
		self:    cfg.PeerAddr,
		log:     cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler)),
		members: map[string]string{},
		subs:    map[chan struct{}]struct{}{},
		closed:  make(chan struct{}),
	}
	ml, err := memberlist.Create(cfg.memberlistConfig(s))
	if err != nil {
		return nil, fmt.Errorf("discovery/memberlist: %w", err)
	}
	s.ml = ml
	if len(cfg.Join) > 0 {
		if _, err := ml.Join(cfg.Join); err != nil {
			_ = ml.Shutdown()
			return nil, fmt.Errorf("discovery/memberlist: join %v: %w", cfg.Join, err)
		}
	}
	return s, nil
}

// check returns an error wrapping groupcache.ErrInvalidOption for the first invalid field of cfg.
// memberlist checks the rest of MemberlistConfig itself.
func (cfg *Config) check() error {
	if err := checkPeerAddr(cfg.PeerAddr); err != nil {
		return invalid("PeerAddr %q: %v", cfg.PeerAddr, err)
	}
	if len(cfg.PeerAddr) > memberlist.MetaMaxSize {
		return invalid("PeerAddr is %d bytes, more than memberlist.MetaMaxSize (%d)", len(cfg.PeerAddr), memberlist.MetaMaxSize)
	}
	if err := checkPort("BindPort", cfg.BindPort); err != nil {
		return err
	}
	if err := checkPort("AdvertisePort", cfg.AdvertisePort); err != nil {
		return err
	}
	if cfg.AdvertiseAddr != "" && net.ParseIP(cfg.AdvertiseAddr) == nil {
		return invalid("AdvertiseAddr %q is not an IP address", cfg.AdvertiseAddr)
	}
	if slices.Contains(cfg.Join, "") {
		return invalid("empty Join address")
	}
	if mc := cfg.MemberlistConfig; mc != nil && mc.Logger != nil && mc.LogOutput != nil {
		return invalid("MemberlistConfig sets both Logger and LogOutput")
	}
	return nil
}

// checkPort accepts a gossip port in [0, 65535], 0 meaning "pick one" or "the bound one".
func checkPort(field string, port int) error {
	if port < 0 || port > 65535 {
		return invalid("%s %d out of range [0, 65535]", field, port)
	}
	return nil
}

// memberlistConfig returns the configuration New gives memberlist: a copy of the base one (or
// memberlist.DefaultLANConfig) with the fields of cfg, s's delegates in front of the base's, and
// memberlist's logs sent to cfg.Logger unless the base routes them itself.
func (cfg *Config) memberlistConfig(s *Source) *memberlist.Config {
	var mc memberlist.Config
	if cfg.MemberlistConfig != nil {
		mc = *cfg.MemberlistConfig
	} else {
		mc = *memberlist.DefaultLANConfig()
	}
	mc.Name = cmp.Or(cfg.Name, cfg.PeerAddr)
	mc.BindAddr = cmp.Or(cfg.BindAddr, "0.0.0.0")
	mc.BindPort = cfg.BindPort
	mc.AdvertiseAddr = cfg.AdvertiseAddr
	// With BindPort 0, memberlist sets AdvertisePort to the port it picked.
	mc.AdvertisePort = cmp.Or(cfg.AdvertisePort, cfg.BindPort)
	mc.Delegate = &delegate{meta: []byte(cfg.PeerAddr), next: mc.Delegate}
	mc.Events = &events{s: s, next: mc.Events}
	if mc.Logger == nil && mc.LogOutput == nil {
		mc.Logger = memberlistLogger(cfg.Logger)
	}
	return &mc
}

// invalid returns an error wrapping groupcache.ErrInvalidOption.
func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: discovery/memberlist: %s", groupcache.ErrInvalidOption, fmt.Sprintf(format, args...))
}

// checkPeerAddr accepts "host:port" with a non-empty host and a port in 1..65535.
func checkPeerAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "" {
		return errors.New("empty host")
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("bad port %q", port)
	}
	return nil
}

// Watch sends the peer addresses of the live members (this one included) at once, then the full
// set again after each change, until ctx ends, when it returns ctx.Err(), or until Shutdown, when
// it returns an error matching groupcache.ErrClosed. Changes that arrive while an update waits to be received are merged into
// it: the receiver always gets the latest set, and never the same set twice in a row. Members
// whose metadata is not a valid "host:port" (other software in the same gossip cluster) are left
// out and logged.
func (s *Source) Watch(ctx context.Context, updates chan<- discovery.Update) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	changed := make(chan struct{}, 1)
	changed <- struct{}{} // the initial set
	s.mu.Lock()
	s.subs[changed] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.subs, changed)
		s.mu.Unlock()
	}()

	var last []string
	sent := false
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.closed:
			return errClosed
		case <-changed:
		}
		peers := s.Members()
		// Send, replacing the pending set by a newer one whenever the membership changes
		// before the receiver takes it.
		for !sent || !slices.Equal(peers, last) {
			select {
			case updates <- discovery.Update{Peers: peers}:
				last, sent = peers, true
			case <-changed:
				peers = s.Members()
			case <-ctx.Done():
				return ctx.Err()
			case <-s.closed:
				return errClosed
			}
		}
	}
}

// Members returns the peer addresses of the live members, this one included while it has not
// left, sorted and without duplicates.
func (s *Source) Members() []string {
	s.mu.Lock()
	peers := make([]string, 0, len(s.members))
	for _, p := range s.members {
		peers = append(peers, p)
	}
	s.mu.Unlock()
	slices.Sort(peers)
	return slices.Compact(peers)
}

// PeerAddr returns this node's groupcache address, the one it advertises.
func (s *Source) PeerAddr() string { return s.self }

// GossipAddr returns the address ("host:port") other members reach this one's gossip listeners
// at: what they put in Config.Join.
func (s *Source) GossipAddr() string {
	n := s.ml.LocalNode()
	return net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
}

// Memberlist returns the underlying memberlist, for what this package does not wrap (health
// score, user messages). Its lifecycle belongs to the Source: call Leave and Shutdown on the
// Source, not on it.
func (s *Source) Memberlist() *memberlist.Memberlist { return s.ml }

// Join contacts more members (gossip addresses) and returns how many answered; it fails only if
// none did. It serves to retry when the seeds of New were not all up yet. After Shutdown it
// returns an error matching groupcache.ErrClosed.
func (s *Source) Join(seeds ...string) (int, error) {
	select {
	case <-s.closed:
		return 0, errClosed
	default:
	}
	return s.ml.Join(seeds)
}

// Leave tells the cluster that this node leaves, and waits up to timeout (0: no limit) for the
// message to go out. The other members then drop it at once, without waiting for failure
// detection. Call Shutdown afterwards; Leave after Shutdown returns an error matching
// groupcache.ErrClosed.
func (s *Source) Leave(timeout time.Duration) error {
	s.life.Lock()
	defer s.life.Unlock()
	if s.shutdown {
		return errClosed
	}
	if err := s.ml.Leave(timeout); err != nil {
		return fmt.Errorf("discovery/memberlist: leave: %w", err)
	}
	return nil
}

// Shutdown stops the gossip listeners and background work and ends every Watch (with an error
// matching groupcache.ErrClosed).
// Without a Leave first, the other members see this node as failed and drop it only after
// failure detection. Calls after the first return nil.
func (s *Source) Shutdown() error {
	s.life.Lock()
	defer s.life.Unlock()
	if s.shutdown {
		return nil
	}
	s.shutdown = true
	close(s.closed)
	if err := s.ml.Shutdown(); err != nil {
		return fmt.Errorf("discovery/memberlist: shutdown: %w", err)
	}
	return nil
}

// set records a member's peer address (or drops the member when addr is "") and wakes the
// watchers if anything changed. It runs inside memberlist's event callbacks, under memberlist's
// node lock: it must not block nor call back into memberlist.
func (s *Source) set(name, addr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.members[name]
	if addr == "" {
		if !ok {
			return
		}
		delete(s.members, name)
	} else {
		if ok && old == addr {
			return
		}
		s.members[name] = addr
	}
	for ch := range s.subs {
		select {
		case ch <- struct{}{}:
		default: // a wake-up is already pending: it will read the latest set
		}
	}
}

// String names the source in logs (discovery.Run uses it): "memberlist <gossip address>".
func (s *Source) String() string { return "memberlist " + s.GossipAddr() }
