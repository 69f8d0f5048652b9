package main

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/typedcache/groupcache/discovery"
	"github.com/typedcache/groupcache/peer"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// examples holds the manifests that run this program.
const examples = "../../../../examples/kubernetes"

// readManifest decodes the example manifest name into obj, refusing unknown fields.
func readManifest(t *testing.T, name string, obj any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(examples, name))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, obj); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// deployment returns the example Deployment and its container.
func deployment(t *testing.T) (*appsv1.Deployment, *corev1.Container) {
	t.Helper()
	var d appsv1.Deployment
	readManifest(t, "deployment.yaml", &d)
	if len(d.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("the Deployment has %d containers, want 1", len(d.Spec.Template.Spec.Containers))
	}
	return &d, &d.Spec.Template.Spec.Containers[0]
}

// preStop returns the sleep of the container's preStop hook.
func preStop(t *testing.T, c *corev1.Container) time.Duration {
	t.Helper()
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
		t.Fatal("the container has no preStop sleep")
	}
	return time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
}

// The environment that deployment.yaml sets is exactly what the program reads (but for TLS), its annotations
// and ports agree with the program and the Service, and the probes ask the node's handler.
func TestDeploymentMatchesProgram(t *testing.T) {
	d, c := deployment(t)
	var svc corev1.Service
	readManifest(t, "service.yaml", &svc)

	var names []string
	tmpl := d.Spec.Template
	for _, e := range c.Env {
		names = append(names, e.Name)
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			path := e.ValueFrom.FieldRef.FieldPath
			if key, ok := strings.CutPrefix(path, "metadata.annotations['"); ok {
				if _, found := tmpl.Annotations[strings.TrimSuffix(key, "']")]; !found {
					t.Errorf("%s reads %s, which the pod template does not set", e.Name, path)
				}
			}
		}
		if ref := e.ValueFrom; ref != nil && ref.SecretKeyRef != nil {
			optional := ref.SecretKeyRef.Optional != nil && *ref.SecretKeyRef.Optional
			want := map[string]string{envSecret: "secret/required", envSecretAccepted: "accepted/optional"}[e.Name]
			got := ref.SecretKeyRef.Key + map[bool]string{false: "/required", true: "/optional"}[optional]
			if ref.SecretKeyRef.Name != "groupcache" || got != want {
				t.Errorf("%s from Secret %s key %s, want Secret groupcache key %s", e.Name, ref.SecretKeyRef.Name, got, want)
			}
		}
	}
	slices.Sort(names)
	// GROUPCACHE_TLS_DIR belongs to the TLS variant (README.md), which mounts the certificates.
	want := []string{envPodIP, envNamespace, envService, envPortName, envPort, envSecret, envSecretAccepted}
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Errorf("the container's environment %v, the program reads %v (and %s with TLS)", names, want, envTLSDir)
	}

	if len(c.Ports) != 1 || c.Ports[0].Name != "groupcache" || tmpl.Annotations["groupcache/port"] != strconv.Itoa(int(c.Ports[0].ContainerPort)) {
		t.Errorf("container ports %+v and annotation groupcache/port %q: want one port named groupcache, the annotation's",
			c.Ports, tmpl.Annotations["groupcache/port"])
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Name != tmpl.Annotations["groupcache/port-name"] ||
		svc.Spec.Ports[0].TargetPort != intstr.FromString("groupcache") || svc.Name != tmpl.Annotations["groupcache/service"] {
		t.Errorf("Service %s ports %+v: want the port named by groupcache/port-name, targeting the container port groupcache", svc.Name, svc.Spec.Ports)
	}
	for k, v := range svc.Spec.Selector {
		if tmpl.Labels[k] != v || d.Spec.Selector.MatchLabels[k] != v {
			t.Errorf("the Service selects %s=%s, which the pods or the Deployment's selector lack", k, v)
		}
	}

	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"readiness", c.ReadinessProbe, peer.DefaultBasePath + "readyz"}, {"liveness", c.LivenessProbe, peer.DefaultBasePath + "livez"}} {
		if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port != intstr.FromString("groupcache") {
			t.Errorf("%s probe %+v, want GET %s on the port groupcache", p.name, p.probe, p.path)
		}
	}
}

// A pod's end fits in its grace period: the other pods' rings drop its endpoint (terminating
// from its deletion) while preStop sleeps, so preStop is longer than discovery.Run takes at most
// to apply a change (DefaultMaxDelay: TestRollingUpdate measures the real lag); then the node's
// leave and the server's shutdown; terminationGracePeriodSeconds covers the three. A rolling
// update adds a pod before it removes one (maxSurge 1, maxUnavailable 0): the ring changes one pod
// at a time and the Service never has fewer ready pods than replicas.
func TestDeploymentEndsPodsGracefully(t *testing.T) {
	d, c := deployment(t)
	wait := preStop(t, c)
	if wait <= discovery.DefaultMaxDelay {
		t.Errorf("preStop sleeps %v, not longer than discovery.Run's maximum delay %v", wait, discovery.DefaultMaxDelay)
	}
	grace := time.Duration(*d.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
	if need := wait + leaveTimeout + stopTimeout; grace < need {
		t.Errorf("terminationGracePeriodSeconds %v < preStop %v + leave %v + stop %v", grace, wait, leaveTimeout, stopTimeout)
	}
	ru := d.Spec.Strategy.RollingUpdate
	if d.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType || ru == nil ||
		ru.MaxSurge == nil || *ru.MaxSurge != intstr.FromInt32(1) || ru.MaxUnavailable == nil || *ru.MaxUnavailable != intstr.FromInt32(0) {
		t.Errorf("strategy %+v, want RollingUpdate with maxSurge 1 and maxUnavailable 0", d.Spec.Strategy)
	}
}

// The program refuses to start without the shared secret.
func TestSecretRequired(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(l.Addr().String())
	cfg := config{podIP: "127.0.0.1", port: port}
	err = run(context.Background(), slog.New(slog.DiscardHandler), cfg, l, discovery.Static())
	if err == nil || !strings.Contains(err.Error(), envSecret) {
		t.Fatalf("run without a secret = %v, want an error naming %s", err, envSecret)
	}
}
