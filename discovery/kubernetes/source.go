package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/typedcache/groupcache"
	"github.com/typedcache/groupcache/discovery"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	discoveryinformers "k8s.io/client-go/informers/discovery/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// serviceAccountNamespace is where Kubernetes mounts the pod's namespace, next to the service
// account token that rest.InClusterConfig reads.
const serviceAccountNamespace = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// minResync is client-go's minimum resync period; it raises shorter ones, with a warning.
const minResync = time.Second

// Config configures New. Client, Namespace and Service are required.
type Config struct {
	// Client talks to the API server: kubernetes.NewForConfig(rest.InClusterConfig()) in a pod
	// (see InCluster), a fake clientset in tests.
	Client kubernetes.Interface

	// Namespace and Service name the Service whose EndpointSlices are watched: those labelled
	// kubernetes.io/service-name=<Service> in Namespace.
	Namespace string
	Service   string

	// PortName picks, in each EndpointSlice, the port of that name (the name of the Service's
	// port, "groupcache" in the example manifests). Slices without it are left out (logged).
	PortName string
	// Port is a fixed port number joined with every address, whatever ports the slices list.
	// Used only when PortName is empty; setting both is an error. With neither, each slice must
	// list exactly one port, which is used; slices with several are left out (logged).
	Port int

	// AddressType restricts the slices to one address family: discoveryv1.AddressTypeIPv4,
	// AddressTypeIPv6 or AddressTypeFQDN. Empty accepts all. A dual-stack Service has one set of
	// slices per family listing the same pods; set it to the family of the address the node
	// serves on (its POD_IP), or each pod would appear twice in the ring.
	AddressType discoveryv1.AddressType

	// Resync is the informer's resync period: how often the cached slices are replayed to the
	// source, which then recomputes the set (an unchanged set is not sent again). 0 (the
	// default) never resyncs; the watch alone keeps the cache current. Otherwise at least 1s,
	// client-go's minimum.
	Resync time.Duration

	// Logger receives this package's logs and client-go's contextual logs (informer and
	// reflector; client-go's klog V(n) levels become slog levels -n). Default: no logs.
	Logger *slog.Logger
}

// Source is a discovery.Source that reports the ready endpoints of a Kubernetes Service, read
// from its EndpointSlices (discovery.k8s.io/v1). It is safe for concurrent use: each Watch runs
// an informer of its own.
type Source struct {
	client      kubernetes.Interface
	namespace   string
	service     string
	portName    string
	port        int
	addressType discoveryv1.AddressType
	resync      time.Duration
	log         *slog.Logger
}

var _ discovery.Source = (*Source)(nil)

// New checks cfg and returns a Source; nothing runs until Watch. Errors wrap
// groupcache.ErrInvalidOption.
func New(cfg Config) (*Source, error) {
	if cfg.Client == nil {
		return nil, invalid("nil Client")
	}
	if errs := validation.IsDNS1123Label(cfg.Namespace); len(errs) > 0 {
		return nil, invalid("Namespace %q: %s", cfg.Namespace, strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1035Label(cfg.Service); len(errs) > 0 {
		return nil, invalid("Service %q: %s", cfg.Service, strings.Join(errs, "; "))
	}
	if cfg.PortName != "" {
		if errs := validation.IsDNS1123Label(cfg.PortName); len(errs) > 0 {
			return nil, invalid("PortName %q: %s", cfg.PortName, strings.Join(errs, "; "))
		}
		if cfg.Port != 0 {
			return nil, invalid("both PortName %q and Port %d set", cfg.PortName, cfg.Port)
		}
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		return nil, invalid("Port %d out of range [1, 65535]", cfg.Port)
	}
	switch cfg.AddressType {
	case "", discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6, discoveryv1.AddressTypeFQDN:
	default:
		return nil, invalid("AddressType %q: want IPv4, IPv6, FQDN or empty", cfg.AddressType)
	}
	if cfg.Resync < 0 || (cfg.Resync > 0 && cfg.Resync < minResync) {
		return nil, invalid("Resync %v: want 0 (none) or at least %v", cfg.Resync, minResync)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Source{
		client:      cfg.Client,
		namespace:   cfg.Namespace,
		service:     cfg.Service,
		portName:    cfg.PortName,
		port:        cfg.Port,
		addressType: cfg.AddressType,
		resync:      cfg.Resync,
		log:         logger.With(slog.String("namespace", cfg.Namespace), slog.String("service", cfg.Service)),
	}, nil
}

// InCluster returns a Source for a process running in a pod: it talks to the API server with the
// pod's service account (rest.InClusterConfig) and watches the Service in namespace, "" meaning
// the pod's own namespace. portName "" uses the only port of each slice. The service account
// needs list and watch on endpointslices (group discovery.k8s.io) in that namespace.
func InCluster(namespace, service, portName string) (*Source, error) {
	rc, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("discovery/kubernetes: %w", err)
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("discovery/kubernetes: %w", err)
	}
	if namespace == "" {
		b, err := os.ReadFile(serviceAccountNamespace)
		if err != nil {
			return nil, fmt.Errorf("discovery/kubernetes: the pod's namespace: %w", err)
		}
		namespace = strings.TrimSpace(string(b))
	}
	return New(Config{Client: client, Namespace: namespace, Service: service, PortName: portName})
}

// invalid returns an error wrapping groupcache.ErrInvalidOption.
func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: discovery/kubernetes: %s", groupcache.ErrInvalidOption, fmt.Sprintf(format, args...))
}

// String names the source in logs (discovery.Run uses it):
// "kubernetes endpointslices <namespace>/<service>".
func (s *Source) String() string {
	return "kubernetes endpointslices " + s.namespace + "/" + s.service
}

// Watch starts an informer on the Service's EndpointSlices and, once its first list is in,
// sends the set of ready endpoints (see the package documentation), then the full set again after each change to it, until ctx
// ends; it then stops the informer, waits for its goroutines and returns ctx.Err().
//
// Changes that arrive while an update waits to be received are merged into it: the receiver
// always gets the latest set, and never the same set twice in a row. An empty set is sent too
// (discovery.Run keeps the last good one). Failed lists and watches (other than the routine
// expiry of a watch) are sent as Updates with Err set, while the informer retries with its own
// back-off; nothing is sent before the first successful list but such errors.
func (s *Source) Watch(ctx context.Context, updates chan<- discovery.Update) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	w := &watch{src: s, updates: updates, wake: make(chan struct{}, 1)}
	selector := discoveryv1.LabelServiceName + "=" + s.service
	inf := discoveryinformers.NewFilteredEndpointSliceInformer(s.client, s.namespace, s.resync, cache.Indexers{},
		func(o *metav1.ListOptions) { o.LabelSelector = selector })
	if err := inf.SetWatchErrorHandlerWithContext(w.watchError); err != nil {
		return fmt.Errorf("discovery/kubernetes: %w", err)
	}
	// client-go logs through the logger in the informer's context and the handler's options.
	logger := logr.FromSlogHandler(s.log.Handler())
	reg, err := inf.AddEventHandlerWithOptions(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { w.poke() },
		UpdateFunc: func(any, any) { w.poke() },
		DeleteFunc: func(any) { w.poke() },
	}, cache.HandlerOptions{Logger: &logger})
	if err != nil {
		return fmt.Errorf("discovery/kubernetes: %w", err)
	}
	w.store = inf.GetStore()
	w.synced = reg.HasSyncedChecker().Done()

	ictx, stop := context.WithCancel(klog.NewContext(ctx, logger))
	w.ctx = ictx
	var wg sync.WaitGroup
	wg.Go(func() { inf.RunWithContext(ictx) })
	defer func() {
		stop()
		wg.Wait() // RunWithContext returns once the reflector and the handlers have stopped
	}()
	return w.loop(ctx)
}

// watch is the state of one Watch call.
type watch struct {
	src     *Source
	ctx     context.Context // the informer's
	store   cache.Store
	updates chan<- discovery.Update
	wake    chan struct{} // a change (or an error) is waiting to be looked at

	mu  sync.Mutex
	err error // the latest list or watch error not yet picked up

	// Used by the loop only.
	synced     <-chan struct{} // closed once the informer's first list is in; nil after that
	pendingErr error           // an error not yet sent
	last       []string        // the set sent last
	sent       bool            // whether a set was sent
	warned     string          // problems last logged by peers, not repeated while they stay the same
}

// poke wakes the loop. It runs on the informer's goroutines and never blocks.
func (w *watch) poke() {
	select {
	case w.wake <- struct{}{}:
	default: // a wake-up is pending already: it will read the latest state
	}
}

// watchError replaces client-go's default handler of a failed list or watch (the reflector
// retries after it returns).
func (w *watch) watchError(_ context.Context, _ *cache.Reflector, err error) {
	if w.ctx.Err() != nil {
		return // stopping
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
		// A watch that ends, drops or expires is routine: the reflector watches (or lists) again.
		w.src.log.Debug("discovery/kubernetes: watch closed, restarting", slog.Any("err", err))
		return
	}
	w.mu.Lock()
	w.err = fmt.Errorf("discovery/kubernetes: list/watch endpointslices of %s/%s: %w", w.src.namespace, w.src.service, err)
	w.mu.Unlock()
	w.poke()
}

func (w *watch) takeErr() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	err := w.err
	w.err = nil
	return err
}

// loop sends the updates due whenever the informer reports something, until ctx ends.
func (w *watch) loop(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-w.wake:
		case <-w.synced:
			w.synced = nil // the first list has been handled: from now on the set is known
		}
		// Send what is due, looking again whenever something changes before the receiver
		// takes it.
		for u, ok := w.due(); ok; u, ok = w.due() {
			select {
			case w.updates <- u:
				w.delivered(u)
			case <-w.wake:
			case <-w.synced:
				w.synced = nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
}

// due returns the update to send now, if any: a pending error first, then the current set once
// the first list is in, unless it is the one sent last.
func (w *watch) due() (discovery.Update, bool) {
	if err := w.takeErr(); err != nil {
		w.pendingErr = err
	}
	if w.pendingErr != nil {
		return discovery.Update{Err: w.pendingErr}, true
	}
	if w.synced != nil {
		return discovery.Update{}, false
	}
	peers := w.src.peers(w.store.List(), &w.warned)
	if w.sent && slices.Equal(peers, w.last) {
		return discovery.Update{}, false
	}
	return discovery.Update{Peers: peers}, true
}

// delivered records that u was received.
func (w *watch) delivered(u discovery.Update) {
	if u.Err != nil {
		w.pendingErr = nil
		return
	}
	w.last, w.sent = u.Peers, true
	w.src.log.Debug("discovery/kubernetes: peer set", slog.Any("peers", u.Peers))
}

// peers computes the peer set from the cached EndpointSlices: the "host:port" addresses of their
// ready, non-terminating endpoints, sorted and without duplicates (an endpoint may be listed in two
// slices for a while); when none is ready, those of the endpoints not ready and not terminating
// either (see startingPeers). Slices of other services, or of another address type than the
// configured one, are ignored. Problems (a slice without the wanted port, an invalid address) are
// logged when they differ from those last logged, kept in *warned.
//
// Readiness follows the EndpointSlice API: conditions.ready nil means unknown and is taken as
// ready, as Kubernetes' own consumers do; ready false (a pod failing its readiness probe, or
// terminating) is left out. An endpoint with conditions.terminating true is left out even when
// ready is true (which happens for a Service with publishNotReadyAddresses): a terminating pod
// is leaving the ring anyway. The first of an endpoint's addresses is used, as the API allows.
func (s *Source) peers(objs []any, warned *string) []string {
	ready, starting := []string{}, []string{}
	var problems []string
	for _, o := range objs {
		sl, ok := o.(*discoveryv1.EndpointSlice)
		if !ok || !s.counts(sl) {
			continue
		}
		port, problem := s.slicePort(sl)
		if problem != "" {
			problems = append(problems, sl.Name+": "+problem)
			continue
		}
		for _, ep := range sl.Endpoints {
			st := state(ep.Conditions)
			if st == leavingEndpoint {
				continue
			}
			addr, problem := endpointAddr(sl, ep, port)
			switch {
			case problem != "":
				problems = append(problems, sl.Name+": "+problem)
			case addr == "":
			case st == readyEndpoint:
				ready = append(ready, addr)
			default:
				starting = append(starting, addr)
			}
		}
	}
	s.warn(problems, warned)
	return startingPeers(ready, starting)
}

// startingPeers returns the ready endpoints' addresses, sorted and deduplicated; or, when there
// are none, those of the endpoints that are not ready but not leaving either. The latter is a
// cold start: every pod of the Service is starting, and each turns ready only once its node has
// a peer set (Node's readyz). Reporting nothing would leave every pod unready for good, since
// discovery.Run keeps a node without a peer set rather than apply an empty one; the pods that are
// starting are the cluster about to be, so each node gets one ring of them all, turns ready, and
// the set then narrows to the ready pods.
func startingPeers(ready, starting []string) []string {
	peers := ready
	if len(peers) == 0 {
		peers = starting
	}
	slices.Sort(peers)
	return slices.Compact(peers)
}

// counts reports whether the endpoints of sl count: those of a slice of the Service, of the
// configured address type, that lists some.
func (s *Source) counts(sl *discoveryv1.EndpointSlice) bool {
	switch {
	case sl == nil:
		return false
	case sl.Namespace != s.namespace || sl.Labels[discoveryv1.LabelServiceName] != s.service:
		return false // the informer filters these; a fake or a proxy might not
	case s.addressType != "" && sl.AddressType != s.addressType:
		return false
	}
	return len(sl.Endpoints) > 0 // a Service without endpoints keeps an empty slice, often without ports
}

// endpointAddr returns the "host:port" address of ep, an endpoint of sl: "" if it has no address,
// and a problem if its address is invalid.
func endpointAddr(sl *discoveryv1.EndpointSlice, ep discoveryv1.Endpoint, port int) (addr, problem string) {
	if len(ep.Addresses) == 0 {
		return "", ""
	}
	host := ep.Addresses[0]
	switch sl.AddressType {
	case discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6:
		ip, err := netip.ParseAddr(host)
		if err != nil || ip.Zone() != "" {
			return "", fmt.Sprintf("invalid address %q", host)
		}
		host = ip.Unmap().String()
	default:
		if host == "" {
			return "", ""
		}
	}
	return net.JoinHostPort(host, strconv.Itoa(port)), ""
}

// warn logs problems when they differ from those last logged, kept in *warned.
func (s *Source) warn(problems []string, warned *string) {
	slices.Sort(problems) // the store lists in no particular order
	if p := strings.Join(problems, ", "); p != *warned {
		*warned = p
		if p != "" {
			s.log.Warn("discovery/kubernetes: endpoints left out", slog.String("problems", p))
		}
	}
}

// slicePort returns the port to join with the addresses of sl, or why there is none.
func (s *Source) slicePort(sl *discoveryv1.EndpointSlice) (int, string) {
	if s.portName == "" && s.port != 0 {
		return s.port, ""
	}
	var found []int32
	for _, p := range sl.Ports {
		name := ""
		if p.Name != nil {
			name = *p.Name
		}
		if s.portName != "" && name != s.portName {
			continue
		}
		if p.Port == nil || *p.Port < 1 || *p.Port > 65535 {
			return 0, fmt.Sprintf("port %q has no number", name)
		}
		found = append(found, *p.Port)
	}
	switch {
	case len(found) == 1:
		return int(found[0]), ""
	case s.portName != "":
		return 0, fmt.Sprintf("no port named %q", s.portName)
	case len(found) == 0:
		return 0, "no port"
	default:
		return 0, fmt.Sprintf("%d ports and no Config.PortName", len(found))
	}
}

// endpointState is what an endpoint's conditions make of it.
type endpointState int

const (
	readyEndpoint    endpointState = iota // ready true or unknown (nil), and not terminating
	startingEndpoint                      // ready false, not terminating: starting, or failing its readiness probe
	leavingEndpoint                       // terminating, whatever its readiness
)

// state classifies an endpoint by its conditions.
func state(c discoveryv1.EndpointConditions) endpointState {
	switch {
	case c.Terminating != nil && *c.Terminating:
		return leavingEndpoint
	case c.Ready != nil && !*c.Ready:
		return startingEndpoint
	}
	return readyEndpoint
}
