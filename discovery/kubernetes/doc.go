// Package kubernetes is a discovery.Source that reads a groupcache cluster's peer set from the
// EndpointSlices (discovery.k8s.io/v1) of a Kubernetes Service.
//
// Every pod of the cluster runs a groupcache node and is selected by one Service, usually a
// headless one (clusterIP: None) with a port named for groupcache. The Source watches the
// Service's EndpointSlices with a client-go informer and reports the "host:port" addresses of
// their ready endpoints, merged over all slices and deduplicated; discovery.Run applies them to
// the node:
//
//	import gck8s "github.com/typedcache/groupcache/discovery/kubernetes"
//
//	src, err := gck8s.InCluster("", "groupcache", "groupcache") // own namespace, Service, port name
//	if err != nil { ... }
//	discovery.Run(ctx, node, src) // until ctx ends
//
// The pod's service account needs list and watch on endpointslices in the group
// discovery.k8s.io, in the Service's namespace.
//
// Readiness follows the EndpointSlice API: an endpoint whose conditions.ready is true, or nil
// (unknown, which consumers are to take as ready), is reported unless conditions.terminating is
// true; ready false (a pod failing its readiness probe, or terminating) is not. While no endpoint
// is ready, as when every pod of the Service starts at once, those not ready and not terminating
// are reported instead: a pod turns ready only once its node has a peer set, so the pods starting
// get one ring of them all, and the set narrows to the ready ones as they turn ready.
//
// New's errors for an invalid Config wrap groupcache.ErrInvalidOption; the package has no errors
// of its own.
//
// The package lives in its own module so that the core groupcache module does not depend on
// client-go.
package kubernetes
