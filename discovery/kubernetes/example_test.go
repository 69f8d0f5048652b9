package kubernetes_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"time"

	"github.com/typedcache/groupcache"
	"github.com/typedcache/groupcache/discovery"
	gck8s "github.com/typedcache/groupcache/discovery/kubernetes"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// The Source reports the ready endpoints of a Service's EndpointSlices, joined with the port
// named "groupcache". Here the slices come from a fake clientset, as in a test.
func Example() {
	ready, notReady := true, false
	portName, portNumber := "groupcache", int32(8080)
	client := fake.NewClientset(&discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name:      "groupcache-abcde",
			Namespace: "default",
			Labels:    map[string]string{discoveryv1.LabelServiceName: "groupcache"},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &portName, Port: &portNumber}},
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"10.1.0.7"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}},
			{Addresses: []string{"10.1.0.9"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}},
			{Addresses: []string{"10.1.0.8"}, Conditions: discoveryv1.EndpointConditions{Ready: &notReady}},
		},
	})
	src, err := gck8s.New(gck8s.Config{Client: client, Namespace: "default", Service: "groupcache", PortName: "groupcache"})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	updates := make(chan discovery.Update)
	done := make(chan error)
	go func() { done <- src.Watch(ctx, updates) }()
	fmt.Println((<-updates).Peers)
	cancel()
	<-done
	// Output:
	// [10.1.0.7:8080 10.1.0.9:8080]
}

// One pod of a cluster: its groupcache node gets its peer set from the EndpointSlices of the
// headless Service "groupcache" in the pod's namespace, through discovery.Run.
func Example_inCluster() {
	self := os.Getenv("POD_IP") + ":8080" // from the downward API (status.podIP)
	node, err := groupcache.NewNode(self)
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()
	l, err := net.Listen("tcp", ":8080")
	if err != nil {
		log.Fatal(err)
	}
	go node.Serve(l)

	src, err := gck8s.InCluster("", "groupcache", "groupcache") // own namespace, Service, port name
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	discovery.Run(ctx, node, src) // until interrupted
}
