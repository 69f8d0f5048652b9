package prometheus_test

import (
	"log"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/typedcache/groupcache"
	gcprom "github.com/typedcache/groupcache/observe/prometheus"
)

// A node's metrics, and those of every cache attached to it, on /metrics of the application's
// own server (never the peer port).
func ExampleNew() {
	node, err := groupcache.NewNode("127.0.0.1:8080")
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(gcprom.New(node))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	_ = mux // serve it with an http.Server of your own
}
