//go:build linux

package kubernetes_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/yaml"
	k8sdiscovery "k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// examplesDir holds the manifests of examples/kubernetes, relative to this module.
const examplesDir = "../../examples/kubernetes"

// newNamespace creates a namespace with the given labels and returns its name.
func newNamespace(t *testing.T, admin kubernetes.Interface, labels map[string]string) string {
	t.Helper()
	n, err := admin.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "groupcache-", Labels: labels},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	return n.Name
}

// manifests decodes the objects of the YAML file name of examples/kubernetes.
func manifests(t *testing.T, name string) []*unstructured.Unstructured {
	t.Helper()
	f, err := os.Open(filepath.Join(examplesDir, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var objs []*unstructured.Unstructured
	dec := yaml.NewYAMLOrJSONDecoder(f, 4096)
	for {
		var m map[string]any
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(m) > 0 {
			objs = append(objs, &unstructured.Unstructured{Object: m})
		}
	}
}

// warnings collects the warnings an API server sends (deprecations, Pod Security violations,
// unknown fields).
type warnings struct {
	mu   sync.Mutex
	list []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, text)
}

func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	l := w.list
	w.list = nil
	return l
}

// applier applies manifests with server-side apply, as kubectl apply --server-side does, with
// unknown or duplicate fields refused (fieldValidation=Strict).
type applier struct {
	t      *testing.T
	dyn    dynamic.Interface
	mapper meta.RESTMapper
	warn   *warnings
}

func newApplier(t *testing.T, cfg *rest.Config) *applier {
	t.Helper()
	cfg = rest.CopyConfig(cfg)
	a := &applier{t: t, warn: &warnings{}}
	cfg.WarningHandler = a.warn
	dc, err := k8sdiscovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	groups, err := restmapper.GetAPIGroupResources(dc)
	if err != nil {
		t.Fatalf("API discovery: %v", err)
	}
	a.mapper = restmapper.NewDiscoveryRESTMapper(groups)
	if a.dyn, err = dynamic.NewForConfig(cfg); err != nil {
		t.Fatal(err)
	}
	return a
}

// apply applies obj in namespace ns; with dryRun, the server validates and admits it (defaults,
// validation, admission such as Pod Security) without storing it. It returns the object as the
// server has it, and the warnings it sent.
func (a *applier) apply(ns string, obj *unstructured.Unstructured, dryRun bool) (*unstructured.Unstructured, []string, error) {
	gvk := obj.GroupVersionKind()
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, nil, err
	}
	data, err := json.Marshal(obj.Object)
	if err != nil {
		return nil, nil, err
	}
	opts := metav1.PatchOptions{FieldManager: "groupcache-test", FieldValidation: "Strict", Force: ptr(true)}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	a.warn.take()
	got, err := a.dyn.Resource(m.Resource).Namespace(ns).Patch(context.Background(), obj.GetName(), types.ApplyPatchType, data, opts)
	return got, a.warn.take(), err
}

// saToken returns a token of the ServiceAccount name in ns from the TokenRequest API, as the
// kubelet mounts into a pod (its audience is the API server's).
func saToken(t *testing.T, admin kubernetes.Interface, ns, name string) string {
	t.Helper()
	tr, err := admin.CoreV1().ServiceAccounts(ns).CreateToken(context.Background(), name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(3600))},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for %s/%s: %v", ns, name, err)
	}
	return tr.Status.Token
}

// roleFor creates a ServiceAccount with a Role allowing verbs on endpointslices, bound to it, and
// returns the account's name.
func roleFor(t *testing.T, admin kubernetes.Interface, ns, name string, verbs ...string) string {
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

// createService creates the headless Service svc with a port named "groupcache", as
// service.yaml does, and returns it (the slices of the EndpointSlice controller are owned by it).
func createService(t *testing.T, admin kubernetes.Interface, ns string) *corev1.Service {
	t.Helper()
	s, err := admin.CoreV1().Services(ns).Create(context.Background(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: svc},
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

// Endpoint states as Kubernetes' EndpointSlice controller writes them, which always sets the three
// conditions.
type podState int

const (
	starting    podState = iota // running, readiness probe not passed yet: ready false, serving false
	podReady                    // ready true, serving true
	unready                     // its readiness probe fails: ready false, serving false
	leaving                     // deleted, in its grace period, probe passing: ready false, serving true, terminating true
	leavingDown                 // deleted, probe failing too: ready false, serving false, terminating true
)

// podEndpoint is the endpoint of the pod name at address ip, in the given state, on node "node-1".
func podEndpoint(name, ip string, s podState) discoveryv1.Endpoint {
	ready, serving, terminating := s == podReady, s == podReady || s == leaving, s == leaving || s == leavingDown
	return discoveryv1.Endpoint{
		Addresses:  []string{ip},
		Conditions: discoveryv1.EndpointConditions{Ready: &ready, Serving: &serving, Terminating: &terminating},
		TargetRef:  &corev1.ObjectReference{Kind: "Pod", Name: name},
		NodeName:   ptr("node-1"),
	}
}

// controllerSlice is an EndpointSlice of the Service s as the EndpointSlice controller writes it:
// labelled with the Service's name and the controller's, owned by the Service, with the Service's
// port named "groupcache" (port on the pods) and another port that is not the node's.
func controllerSlice(s *corev1.Service, name string, port int32, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
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
				Controller: ptr(true), BlockOwnerDeletion: ptr(true)}},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   eps,
		Ports: []discoveryv1.EndpointPort{
			{Name: ptr("metrics"), Port: ptr(int32(9090)), Protocol: &tcp},
			{Name: ptr("groupcache"), Port: &port, Protocol: &tcp},
		},
	}
}
