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

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/yaml"
	k8sdiscovery "k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// examplesDir holds the manifests of examples/kubernetes, relative to this module.
const examplesDir = "../../examples/kubernetes"

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
