// Command node runs one groupcache node per Kubernetes pod. It learns its peers from the ready
// endpoints of a Service (see examples/kubernetes in the repository) and serves, next to the peer
// protocol, a tiny application on the same port:
//
//	GET /get?key=K   the value of K, loaded once in the whole cluster by K's owner
//	GET /stats       the node's peer set and counters, and the cache's statistics, as JSON
//
// Settings come from the environment, filled by the downward API in deployment.yaml: POD_IP,
// POD_NAMESPACE, GROUPCACHE_SERVICE, GROUPCACHE_PORT_NAME and GROUPCACHE_PORT; and from the
// Secret "groupcache": GROUPCACHE_SECRET, the shared secret the pods prove to each other, and
// GROUPCACHE_SECRET_ACCEPTED, optional, another secret also accepted while a new one rolls out.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/typedcache/groupcache"
	"github.com/typedcache/groupcache/discovery"
	gck8s "github.com/typedcache/groupcache/discovery/kubernetes"
	"github.com/typedcache/groupcache/peer"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := start(ctx, log, configFromEnv()); err != nil {
		log.Error("node stopped", "err", err)
		os.Exit(1)
	}
}

// Timings of a pod's end (deployment.yaml's preStop and terminationGracePeriodSeconds leave room
// for them): how long the node answers the peers' requests in flight once it leaves, and how long
// the application's own requests then get to finish.
const (
	leaveTimeout = 15 * time.Second
	stopTimeout  = 5 * time.Second
)

// The environment the program reads; deployment.yaml sets each variable.
const (
	envPodIP          = "POD_IP"
	envNamespace      = "POD_NAMESPACE"
	envService        = "GROUPCACHE_SERVICE"
	envPortName       = "GROUPCACHE_PORT_NAME"
	envPort           = "GROUPCACHE_PORT"
	envSecret         = "GROUPCACHE_SECRET"
	envSecretAccepted = "GROUPCACHE_SECRET_ACCEPTED"
)

// config is the program's settings.
type config struct {
	podIP     string // this pod's IP: the node's address is podIP:port, as the EndpointSlices list it
	namespace string // of the Service
	service   string // whose ready endpoints are the peers
	portName  string // the Service port's name
	port      string // the port the node listens on
	secret    string // proved to the peers
	accepted  string // also accepted from them, if not empty
}

func configFromEnv() config {
	return config{
		podIP:     os.Getenv(envPodIP),
		namespace: os.Getenv(envNamespace),
		service:   os.Getenv(envService),
		portName:  os.Getenv(envPortName),
		port:      os.Getenv(envPort),
		secret:    os.Getenv(envSecret),
		accepted:  os.Getenv(envSecretAccepted),
	}
}

// start runs the node of a pod: its discovery source reads the API server with the pod's service
// account, and it listens on every interface at the port.
func start(ctx context.Context, log *slog.Logger, cfg config) error {
	src, err := gck8s.InCluster(cfg.namespace, cfg.service, cfg.portName)
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", ":"+cfg.port)
	if err != nil {
		return err
	}
	return run(ctx, log, cfg, l, src)
}

// run serves the node and the application on l, with its peer set from src, until ctx ends (on
// SIGTERM, which comes after preStop, once the pod's endpoint has been terminating for a while and
// the other pods' rings have dropped it); then it leaves gracefully. l is closed when run returns.
func run(ctx context.Context, log *slog.Logger, cfg config, l net.Listener, src discovery.Source) error {
	defer l.Close()
	secret, err := cfg.peerSecret()
	if err != nil {
		return err
	}
	self := net.JoinHostPort(cfg.podIP, cfg.port)
	node, err := groupcache.NewNode(self, groupcache.WithNodeLogger(log), groupcache.WithPeerOptions(secret))
	if err != nil {
		return err
	}
	defer node.Close()
	pages, err := newCache(node, log)
	if err != nil {
		return err
	}
	defer pages.Close()
	srv := &http.Server{Handler: newMux(node, pages), ReadHeaderTimeout: 10 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(l) }()

	// The ring follows the ready pods of the Service until the pod is told to stop.
	dctx, stopDiscovery := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { discovery.Run(dctx, node, src, discovery.WithLogger(log)) })
	defer wg.Wait()
	defer stopDiscovery()
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		return err
	}
	return leave(log, node, srv)
}

// leave makes the node leave the cluster, then stops the HTTP server. There is nothing to
// deregister: the pod's endpoint has been terminating since its deletion. The node tells the
// peers still connected that it leaves (they load its keys themselves from then on) and answers
// their requests in flight; then the application's own requests get to finish.
func leave(log *slog.Logger, node *groupcache.Node, srv *http.Server) error {
	ctx, cancel := context.WithTimeout(context.Background(), leaveTimeout)
	defer cancel()
	if err := node.Shutdown(ctx); err != nil {
		log.Warn("requests of peers still in flight when the node left; they load their keys themselves", "err", err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel2()
	if err := srv.Shutdown(ctx2); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// newCache makes the cache the pods share.
func newCache(node *groupcache.Node, log *slog.Logger) (*groupcache.Cache[string, string], error) {
	hostname, _ := os.Hostname()
	return groupcache.New[string, string]("pages",
		groupcache.LoaderFunc[string, string](func(ctx context.Context, key string) (string, error) {
			// The slow source of truth (a database, an API) would be called here.
			return "page " + key + " rendered by " + hostname + " at " + time.Now().UTC().Format(time.RFC3339), nil
		}),
		groupcache.WithNode(node), groupcache.WithMaxBytes(64<<20), groupcache.WithLogger(log))
}

// stats is the answer of GET /stats.
type stats struct {
	Peers []string             // the node's ring, itself included
	Node  groupcache.NodeStats // the transport's counters
	Cache groupcache.Stats     // the cache's
}

// newMux serves the peer protocol and the application on one port.
func newMux(node *groupcache.Node, pages *groupcache.Cache[string, string]) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle(peer.DefaultBasePath, node.Handler())
	mux.HandleFunc("GET /get", func(w http.ResponseWriter, r *http.Request) {
		v, err := pages.Get(r.Context(), r.URL.Query().Get("key"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.Write([]byte(v + "\n"))
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(stats{Peers: node.Peers(), Node: node.Stats(), Cache: pages.Stats()})
	})
	return mux
}

// peerSecret returns the option that makes the pods prove the Secret's value to each other: pods
// talk over the pod network, which other workloads reach too.
func (c config) peerSecret() (peer.SharedOption, error) {
	if c.secret == "" {
		return nil, errors.New(envSecret + " is empty: create the Secret groupcache (see examples/kubernetes/README.md)")
	}
	var accepted [][]byte
	if c.accepted != "" {
		accepted = append(accepted, []byte(c.accepted))
	}
	return peer.WithSecret([]byte(c.secret), accepted...), nil
}
