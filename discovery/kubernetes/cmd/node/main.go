// Command node runs one groupcache node per Kubernetes pod. It learns its peers from the ready
// endpoints of a Service (see examples/kubernetes in the repository) and serves, next to the peer
// protocol, a tiny application on the same port:
//
//	GET /get?key=K   the value of K, loaded once in the whole cluster by K's owner
//	GET /stats       the node's peer set and counters, and the cache's statistics, as JSON
//
// Settings come from the environment, filled by the downward API in deployment.yaml: POD_IP,
// POD_NAMESPACE, GROUPCACHE_SERVICE, GROUPCACHE_PORT_NAME and GROUPCACHE_PORT. The pods
// authenticate each other with a shared secret, from the Secret "groupcache": GROUPCACHE_SECRET,
// the secret they prove, and GROUPCACHE_SECRET_ACCEPTED, optional, another secret also accepted
// while a new one rolls out; or with mutual TLS, when GROUPCACHE_TLS_DIR names a directory of
// certificate files in cert-manager's layout (tls.crt, tls.key, ca.crt), the pod's certificate
// being read again at each new connection so that a renewed one is used without a restart; or
// both. With TLS, the port serves HTTPS only, the probes and the application too.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
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
	envTLSDir         = "GROUPCACHE_TLS_DIR"
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
	tlsDir    string // the pod's certificate files, if not empty
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
		tlsDir:    os.Getenv(envTLSDir),
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
	auth, serverTLS, err := cfg.peerAuth()
	if err != nil {
		return err
	}
	self := net.JoinHostPort(cfg.podIP, cfg.port)
	node, err := groupcache.NewNode(self, groupcache.WithNodeLogger(log), groupcache.WithPeerOptions(auth...))
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
	if serverTLS != nil {
		// The node checks the client certificates itself, over HTTP/1.1 (docs/security.md,
		// "Serving on your own http.Server").
		srv.TLSConfig = serverTLS
		srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
		go func() { serveErr <- srv.ServeTLS(l, "", "") }()
	} else {
		go func() { serveErr <- srv.Serve(l) }()
	}

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
	stopDiscovery() // the ring stays as it is while the node leaves
	wg.Wait()
	return leave(log, node, srv)
}

// leave makes the node leave the cluster, then stops the HTTP server. There is nothing to
// deregister: the pod's endpoint has been terminating since its deletion. The node tells the
// peers still connected that it leaves (they load its keys themselves from then on) and answers
// their requests in flight; then the application's own requests get the stop timeout to finish.
func leave(log *slog.Logger, node *groupcache.Node, srv *http.Server) error {
	ctx, cancel := context.WithTimeout(context.Background(), leaveTimeout)
	defer cancel()
	if err := node.Shutdown(ctx); err != nil {
		log.Warn("requests of peers still in flight when the node left; they load their keys themselves", "err", err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel2()
	err := srv.Shutdown(ctx2)
	if errors.Is(err, context.DeadlineExceeded) {
		// What is left (a request still running, a connection that has not sent its first
		// request: a TLS server waits 5 s for those) is cut now, as the kubelet would a little
		// later.
		log.Warn("connections still open after the stop timeout; closing them", "timeout", stopTimeout)
		err = srv.Close()
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
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

// peerAuth returns the options that make the pods authenticate each other (they talk over the
// pod network, which other workloads reach too): the shared secret, mutual TLS, or both; and the
// TLS configuration of the HTTP server, nil without TLS.
func (c config) peerAuth() ([]peer.Option, *tls.Config, error) {
	var opts []peer.Option
	if c.secret != "" {
		var accepted [][]byte
		if c.accepted != "" {
			accepted = append(accepted, []byte(c.accepted))
		}
		opts = append(opts, peer.WithSecret([]byte(c.secret), accepted...))
	}
	var serverTLS *tls.Config
	if c.tlsDir != "" {
		files := certFiles(c.tlsDir)
		ca, err := files.ca()
		if err != nil {
			return nil, nil, err
		}
		opts = append(opts, peer.WithTLS(&tls.Config{RootCAs: ca, ClientCAs: ca,
			GetCertificate: files.serverCert, GetClientCertificate: files.clientCert}))
		serverTLS = &tls.Config{GetCertificate: files.serverCert, ClientCAs: ca, ClientAuth: tls.RequestClientCert,
			NextProtos: []string{"http/1.1"}}
	}
	if len(opts) == 0 {
		return nil, nil, errors.New(envSecret + " and " + envTLSDir +
			" are empty: create the Secret groupcache, or mount certificates (see examples/kubernetes/README.md)")
	}
	return opts, serverTLS, nil
}

// certFiles is a directory of certificate files as cert-manager writes them: tls.crt (the pod's
// certificate, then its chain), tls.key and ca.crt.
type certFiles string

// cert reads the pod's certificate and key: at each new connection, so that a renewed
// certificate is used from then on.
func (f certFiles) cert() (*tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(filepath.Join(string(f), "tls.crt"), filepath.Join(string(f), "tls.key"))
	if err != nil {
		return nil, err
	}
	return &c, nil
}

func (f certFiles) serverCert(*tls.ClientHelloInfo) (*tls.Certificate, error)        { return f.cert() }
func (f certFiles) clientCert(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return f.cert() }

// ca reads the cluster's CA, once: replacing it takes a restart (docs/security.md, "Rotating
// certificates").
func (f certFiles) ca() (*x509.CertPool, error) {
	b, err := os.ReadFile(filepath.Join(string(f), "ca.crt"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, errors.New(filepath.Join(string(f), "ca.crt") + " holds no PEM certificate")
	}
	return pool, nil
}
