// Package kubetest is the Kubernetes control plane that the tests of this module start, and what
// they need to play the parts of a cluster they do not run: the EndpointSlice controller (slices
// written as it writes them) and the kubelet (readiness probes, ServiceAccount tokens).
//
// The control plane is real: an etcd server and kube-apiservers on 127.0.0.1, RBAC authorization
// on, built from source at the versions pinned in testdata/controlplane by its build.sh, which
// ./test.sh runs (the binaries are cached: see BinDir). Without the binaries, Start skips the
// test, saying how to build them. Imported by tests only; Linux only (the servers die with the test
// process: Pdeathsig).
package kubetest
