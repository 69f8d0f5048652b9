package otel_test

import (
	"context"
	"log"

	"go.opentelemetry.io/otel"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/typedcache/groupcache"
	gcotel "github.com/typedcache/groupcache/observe/otel"
)

// Spans of the miss path with the global tracer provider, and the node's metrics through a
// meter provider whose reader also takes the histograms.
func Example() {
	node, err := groupcache.NewNode("127.0.0.1:8080")
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()
	users, err := groupcache.New[string, string]("users",
		groupcache.LoaderFunc[string, string](func(_ context.Context, k string) (string, error) { return "v-" + k, nil }),
		groupcache.WithNode(node), groupcache.WithTracer(gcotel.NewTracer(otel.GetTracerProvider())))
	if err != nil {
		log.Fatal(err)
	}
	defer users.Close()

	reader := sdkmetric.NewManualReader(sdkmetric.WithProducer(gcotel.Histograms(node))) // or a periodic reader and an exporter
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	reg, err := gcotel.RegisterMetrics(mp.Meter("groupcache"), node)
	if err != nil {
		log.Fatal(err)
	}
	defer reg.Unregister()
}
