// Command node runs one groupcache node per Kubernetes pod. It learns its peers from the ready
// endpoints of a Service (see examples/kubernetes in the repository) and serves, next to the peer
// protocol, a tiny application on the same port:
//
//	GET /get?key=K   the value of K, loaded once in the whole cluster by K's owner
//	GET /stats       the cache's statistics as JSON
//
// Settings come from the environment, filled by the downward API in deployment.yaml: POD_IP,
// POD_NAMESPACE, GROUPCACHE_SERVICE, GROUPCACHE_PORT_NAME and GROUPCACHE_PORT; and from the
// Secret "groupcache": GROUPCACHE_SECRET, the shared secret the pods prove to each other, and
// GROUPCACHE_SECRET_PREVIOUS, optional, also accepted while a new secret rolls out.
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
	"syscall"
	"time"

	"github.com/typedcache/groupcache"
	"github.com/typedcache/groupcache/discovery"
	gck8s "github.com/typedcache/groupcache/discovery/kubernetes"
	"github.com/typedcache/groupcache/peer"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if err := run(log); err != nil {
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

func run(log *slog.Logger) error {
	port := os.Getenv("GROUPCACHE_PORT")
	self := net.JoinHostPort(os.Getenv("POD_IP"), port) // as the EndpointSlices list this pod
	secret, err := peerSecret()
	if err != nil {
		return err
	}
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
	srv := &http.Server{Addr: ":" + port, Handler: newMux(node, pages), ReadHeaderTimeout: 10 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.ListenAndServe() }()

	// The pods of the Service, ready ones only, on the port named GROUPCACHE_PORT_NAME.
	src, err := gck8s.InCluster(os.Getenv("POD_NAMESPACE"), os.Getenv("GROUPCACHE_SERVICE"), os.Getenv("GROUPCACHE_PORT_NAME"))
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go discovery.Run(ctx, node, src, discovery.WithLogger(log)) // keeps the ring equal to the ready pods
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		return err
	}
	// SIGTERM comes after preStop, once the pod's endpoint has been terminating for a while: the
	// other pods' rings have dropped it. There is nothing to deregister. The node tells the peers
	// still connected that it leaves and answers their requests in flight; then the application's
	// own requests get to finish.
	leave, cancel := context.WithTimeout(context.Background(), leaveTimeout)
	defer cancel()
	if err := node.Shutdown(leave); err != nil {
		log.Warn("requests of peers still in flight when the node left; they load their keys themselves", "err", err)
	}
	shutdown, cancel2 := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel2()
	if err := srv.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
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
		json.NewEncoder(w).Encode(pages.Stats())
	})
	return mux
}

// peerSecret returns the option that makes the pods prove the Secret's value to each other: pods
// talk over the pod network, which other workloads reach too.
func peerSecret() (peer.SharedOption, error) {
	current := os.Getenv("GROUPCACHE_SECRET")
	if current == "" {
		return nil, errors.New("GROUPCACHE_SECRET is empty: create the Secret groupcache (see examples/kubernetes/README.md)")
	}
	var accepted [][]byte
	if prev := os.Getenv("GROUPCACHE_SECRET_PREVIOUS"); prev != "" {
		accepted = append(accepted, []byte(prev))
	}
	return peer.WithSecret([]byte(current), accepted...), nil
}
