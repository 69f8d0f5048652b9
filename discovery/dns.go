package discovery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Defaults of the DNS sources' options.
const (
	// DefaultInterval is how long the DNS sources wait between lookups.
	DefaultInterval = 30 * time.Second
	// DefaultLookupTimeout bounds each lookup of the DNS sources.
	DefaultLookupTimeout = 10 * time.Second
)

// DNSOption configures DNS and SRV.
type DNSOption interface {
	applyDNS(*dnsSettings) error
}

type dnsOptionFunc func(*dnsSettings) error

func (f dnsOptionFunc) applyDNS(s *dnsSettings) error { return f(s) }

type dnsSettings struct {
	interval time.Duration
	timeout  time.Duration
	resolver *net.Resolver
}

// WithInterval sets how long a DNS source waits after each lookup before the next one. Default
// DefaultInterval (30 s); range d > 0.
func WithInterval(d time.Duration) DNSOption {
	return dnsOptionFunc(func(s *dnsSettings) error {
		if d <= 0 {
			return invalid("WithInterval", "%v is not positive", d)
		}
		s.interval = d
		return nil
	})
}

// WithLookupTimeout bounds each lookup of a DNS source; one that takes longer fails (and is
// reported as an Update with Err). The resolver's own timeouts apply too. Default
// DefaultLookupTimeout (10 s); range d > 0.
func WithLookupTimeout(d time.Duration) DNSOption {
	return dnsOptionFunc(func(s *dnsSettings) error {
		if d <= 0 {
			return invalid("WithLookupTimeout", "%v is not positive", d)
		}
		s.timeout = d
		return nil
	})
}

// WithResolver sets the resolver of a DNS source, for instance one with PreferGo and a Dial
// function that asks a given server. Default net.DefaultResolver; nil is refused.
func WithResolver(r *net.Resolver) DNSOption {
	return dnsOptionFunc(func(s *dnsSettings) error {
		if r == nil {
			return invalid("WithResolver", "nil resolver")
		}
		s.resolver = r
		return nil
	})
}

// DNS returns a Source that looks up the A and AAAA records of name at every interval
// (WithInterval) and reports each address joined with port ("10.0.0.7:8080", "[fd00::7]:8080").
// It suits a headless Kubernetes Service or any name that lists the cluster's nodes, all on the
// same port; each node's own address (groupcache.NewNode's self) must then be its IP and that
// port. A failed lookup, "no such host" included, is reported as an Update with Err and the source
// keeps polling; so is a failure of the A or the AAAA lookup alone (finding no record of one
// family is no failure), lest a transient error drop the other family's peers. A set is sent when it differs from the last one sent, and after a failure.
//
// Invalid arguments (an empty name, a port outside 1..65535, a bad option) are reported by Watch,
// which returns an error wrapping groupcache.ErrInvalidOption; Run returns it.
func DNS(name string, port int, opts ...DNSOption) Source {
	s := &dnsSource{desc: "dns(" + net.JoinHostPort(name, strconv.Itoa(port)) + ")"}
	s.err = s.configure(opts)
	if s.err == nil && name == "" {
		s.err = invalid("DNS", "empty name")
	}
	if s.err == nil && (port < 1 || port > 65535) {
		s.err = invalid("DNS", "port %d is not in 1..65535", port)
	}
	p := strconv.Itoa(port)
	s.lookup = func(ctx context.Context) ([]string, error) {
		addrs, err := lookupIP(ctx, s.resolver, name)
		if err != nil {
			return nil, fmt.Errorf("discovery: DNS: %w", err)
		}
		peers := make([]string, 0, len(addrs))
		for _, a := range addrs {
			peers = append(peers, net.JoinHostPort(a.Unmap().String(), p))
		}
		return peers, nil
	}
	return s
}

// lookupIP returns the IPv4 and IPv6 addresses of name. Unlike a lookup of network "ip", which
// returns the addresses of one family when the other's lookup failed, it fails if either lookup
// fails other than by finding no record: a transient failure must not shrink the peer set.
func lookupIP(ctx context.Context, r *net.Resolver, name string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(name); err == nil {
		return []netip.Addr{a}, nil
	}
	var all []netip.Addr
	var notFound error
	for _, network := range []string{"ip4", "ip6"} {
		addrs, err := r.LookupNetIP(ctx, network, name)
		dnsErr, addrErr := (*net.DNSError)(nil), (*net.AddrError)(nil)
		if errors.As(err, &dnsErr) && dnsErr.IsNotFound || errors.As(err, &addrErr) {
			// No record of this family, or only records of the other (an AAAA record holding an
			// IPv4-mapped address): "no suitable address".
			notFound = err
			continue
		}
		if err != nil {
			return nil, err
		}
		all = append(all, addrs...)
	}
	if len(all) == 0 && notFound != nil {
		return nil, notFound
	}
	return all, nil
}

// SRV returns a Source that looks up the SRV records of _service._proto.name (of name itself if
// service and proto are both empty, as net.Resolver.LookupSRV does) at every interval
// (WithInterval) and reports each record as target:port, without the target's trailing dot
// ("node-1.cache.example:8080"). Priorities and weights are ignored: every target is a peer, and
// records whose target is "." (service not available) or whose port is 0 are skipped. Each node's
// own address must then be its SRV target and port. Failures and sends work as for DNS.
//
// Invalid arguments (an empty name, a bad option) are reported by Watch, which returns an error
// wrapping groupcache.ErrInvalidOption; Run returns it.
func SRV(service, proto, name string, opts ...DNSOption) Source {
	q := name
	if service != "" || proto != "" {
		q = "_" + service + "._" + proto + "." + name
	}
	s := &dnsSource{desc: "srv(" + q + ")"}
	s.err = s.configure(opts)
	if s.err == nil && name == "" {
		s.err = invalid("SRV", "empty name")
	}
	s.lookup = func(ctx context.Context) ([]string, error) {
		_, srvs, err := s.resolver.LookupSRV(ctx, service, proto, name)
		if err != nil {
			return nil, fmt.Errorf("discovery: SRV: %w", err)
		}
		peers := make([]string, 0, len(srvs))
		for _, srv := range srvs {
			target := strings.TrimSuffix(srv.Target, ".")
			if target == "" || srv.Port == 0 {
				continue
			}
			peers = append(peers, net.JoinHostPort(target, strconv.Itoa(int(srv.Port))))
		}
		return peers, nil
	}
	return s
}

// dnsSource polls a lookup function.
type dnsSource struct {
	dnsSettings
	desc   string
	err    error // invalid arguments, returned by Watch
	lookup func(ctx context.Context) ([]string, error)
}

func (s *dnsSource) configure(opts []DNSOption) error {
	s.dnsSettings = dnsSettings{interval: DefaultInterval, timeout: DefaultLookupTimeout, resolver: net.DefaultResolver}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o.applyDNS(&s.dnsSettings); err != nil {
			return err
		}
	}
	return nil
}

// String describes the source for logs.
func (s *dnsSource) String() string { return s.desc }

// Watch looks the name up at once and then every interval until ctx ends.
func (s *dnsSource) Watch(ctx context.Context, updates chan<- Update) error {
	if s.err != nil {
		return s.err
	}
	var last []string
	sent := false // last was sent and no failure came after it
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		}
		lctx, cancel := context.WithTimeout(ctx, s.timeout)
		peers, err := s.lookup(lctx)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var u Update
		switch {
		case err != nil:
			u.Err, sent = err, false
		default:
			slices.Sort(peers)
			peers = slices.Compact(peers)
			if sent && slices.Equal(peers, last) {
				timer.Reset(s.interval)
				continue
			}
			u.Peers, last, sent = slices.Clone(peers), peers, true
		}
		select {
		case updates <- u:
		case <-ctx.Done():
			return ctx.Err()
		}
		timer.Reset(s.interval)
	}
}
