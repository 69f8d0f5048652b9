//go:build linux

package kubetest

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/typedcache/groupcache/discovery"
	"github.com/typedcache/groupcache/peer"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Namespace creates a namespace with the given labels and returns its name.
func Namespace(t testing.TB, admin kubernetes.Interface, labels map[string]string) string {
	t.Helper()
	n, err := admin.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "groupcache-", Labels: labels},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	return n.Name
}

// SAToken returns a token of the ServiceAccount name in ns from the TokenRequest API, as the
// kubelet mounts into a pod (its audience is the API server's).
func SAToken(t testing.TB, admin kubernetes.Interface, ns, name string) string {
	t.Helper()
	tr, err := admin.CoreV1().ServiceAccounts(ns).CreateToken(context.Background(), name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptrTo(int64(3600))},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for %s/%s: %v", ns, name, err)
	}
	return tr.Status.Token
}

// RoleFor creates a ServiceAccount with a Role allowing verbs on endpointslices, bound to it, and
// returns the account's name.
func RoleFor(t testing.TB, admin kubernetes.Interface, ns, name string, verbs ...string) string {
	t.Helper()
	ctx := context.Background()
	if _, err := admin.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: verbs}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: ns}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return name
}

// Service creates the headless Service name with a port named "groupcache", as
// service.yaml does, and returns it (the slices of the EndpointSlice controller are owned by it).
func Service(t testing.TB, admin kubernetes.Interface, ns, name string) *corev1.Service {
	t.Helper()
	s, err := admin.CoreV1().Services(ns).Create(context.Background(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.ServiceSpec{
			ClusterIP: corev1.ClusterIPNone,
			Selector:  map[string]string{"app.kubernetes.io/name": "groupcache"},
			Ports:     []corev1.ServicePort{{Name: "groupcache", Port: 8080, Protocol: corev1.ProtocolTCP}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create Service: %v", err)
	}
	return s
}

// PodState is the state of a pod, which Endpoint writes into its endpoint's conditions as
// Kubernetes' EndpointSlice controller does (it always sets the three).
type PodState int

// The states of a pod.

const (
	Starting    PodState = iota // running, readiness probe not passed yet: ready false, serving false
	Ready                       // ready true, serving true
	Unready                     // its readiness probe fails: ready false, serving false
	Leaving                     // deleted, in its grace period, probe passing: ready false, serving true, terminating true
	LeavingDown                 // deleted, probe failing too: ready false, serving false, terminating true
)

// Endpoint is the endpoint of the pod name at address ip, in the given state, on node "node-1".
func Endpoint(name, ip string, s PodState) discoveryv1.Endpoint {
	ready, serving, terminating := s == Ready, s == Ready || s == Leaving, s == Leaving || s == LeavingDown
	return discoveryv1.Endpoint{
		Addresses:  []string{ip},
		Conditions: discoveryv1.EndpointConditions{Ready: &ready, Serving: &serving, Terminating: &terminating},
		TargetRef:  &corev1.ObjectReference{Kind: "Pod", Name: name},
		NodeName:   ptrTo("node-1"),
	}
}

// Slice is an EndpointSlice of the Service s as the EndpointSlice controller writes it:
// labelled with the Service's name and the controller's, owned by the Service, with the Service's
// port named "groupcache" (port on the pods) and another port that is not the node's.
func Slice(s *corev1.Service, name string, port int32, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	tcp := corev1.ProtocolTCP
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name:      name,
			Namespace: s.Namespace,
			Labels: map[string]string{
				discoveryv1.LabelServiceName: s.Name,
				discoveryv1.LabelManagedBy:   "endpointslice-controller.k8s.io",
			},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", Name: s.Name, UID: s.UID,
				Controller: ptrTo(true), BlockOwnerDeletion: ptrTo(true)}},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   eps,
		Ports: []discoveryv1.EndpointPort{
			{Name: ptrTo("metrics"), Port: ptrTo(int32(9090)), Protocol: &tcp},
			{Name: ptrTo("groupcache"), Port: &port, Protocol: &tcp},
		},
	}
}

// Probe asks a node's readiness probe, as the kubelet does, and returns the status code and the
// answer.
func Probe(t testing.TB, addr string) (int, string) {
	t.Helper()
	resp, err := PlainClient().Get("http://" + addr + peer.DefaultBasePath + "readyz")
	if err != nil {
		t.Fatalf("probe %s: %v", addr, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// OnLoopback wraps src, a source of slices that list the test's pods at made-up pod IPs (the API
// server refuses loopback addresses in EndpointSlices), and reports every address as 127.0.0.1
// with its port: each test pod is a node on 127.0.0.1 with a port of its own.
func OnLoopback(src discovery.Source) discovery.Source {
	return discovery.SourceFunc(func(ctx context.Context, updates chan<- discovery.Update) error {
		inner := make(chan discovery.Update)
		done := make(chan error, 1)
		go func() { done <- src.Watch(ctx, inner) }()
		for {
			select {
			case u := <-inner:
				peers := make([]string, len(u.Peers)) // u.Peers is the source's: not to be modified
				for i, p := range u.Peers {
					_, port, _ := net.SplitHostPort(p)
					peers[i] = net.JoinHostPort("127.0.0.1", port)
				}
				u.Peers = peers
				select {
				case updates <- u:
				case <-ctx.Done():
				}
			case err := <-done:
				return err
			}
		}
	})
}

func ptrTo[T any](v T) *T { return &v }
