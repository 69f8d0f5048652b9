package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"

	"github.com/typedcache/groupcache/internal/testpki"
	"github.com/typedcache/groupcache/peer"
)

// The cost of security: the systems "ourssecret" and "ourstls" are the plaintext "ours" cluster
// with every node proving a shared secret (peer.WithSecret), or speaking mutual TLS with
// certificates of one CA (peer.WithTLS). The nodes serve on their own http.Server, configured as
// docs/security.md says.

var (
	authFlag = flag.String("auth", "", "internal: a child node's authentication: secret or tls")
	pkiFlag  = flag.String("pkidir", "", "internal: folder of the cluster's CA and node certificate (-auth tls)")
)

// benchSecret is the shared secret of the "ourssecret" cluster.
var benchSecret = []byte("clusterbench: the cluster's shared secret")

// authOptions returns the peer options of an authentication mode ("", "secret" or "tls").
func authOptions(mode string) []peer.Option {
	switch mode {
	case "secret":
		return []peer.Option{peer.WithSecret(benchSecret)}
	case "tls":
		return []peer.Option{peer.WithTLS(nodeTLS(pkiDir()))}
	}
	return nil
}

// serverTLS returns the TLS configuration of a node's own http.Server in mode, or nil: its
// certificate, the CA for clients, a client certificate asked for (the node's handler verifies
// it), HTTP/1.1 only.
func serverTLS(mode string) *tls.Config {
	if mode != "tls" {
		return nil
	}
	cfg := nodeTLS(pkiDir())
	cfg.ClientCAs = cfg.RootCAs
	cfg.ClientAuth = tls.RequestClientCert
	cfg.NextProtos = []string{"http/1.1"}
	return cfg
}

var (
	pkiOnce sync.Once
	pkiPath string
)

// pkiDir returns the folder holding the cluster's CA and node certificate: -pkidir in a child;
// in the measuring process a temporary folder made on first use, which removePKI removes.
func pkiDir() string {
	if *pkiFlag != "" {
		return *pkiFlag
	}
	pkiOnce.Do(func() {
		ca, err := testpki.New()
		fatalIf(err)
		cert, err := ca.Node("127.0.0.1")
		fatalIf(err)
		pkiPath, err = os.MkdirTemp("", "clusterbench-pki")
		fatalIf(err)
		key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
		fatalIf(err)
		write := func(name, typ string, der []byte) {
			fatalIf(os.WriteFile(filepath.Join(pkiPath, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
		}
		write("node.pem", "CERTIFICATE", cert.Certificate[0])
		write("node-key.pem", "PRIVATE KEY", key)
		write("ca.pem", "CERTIFICATE", ca.CertDER())
	})
	return pkiPath
}

// removePKI removes the measuring process's certificate folder, if it made one.
func removePKI() {
	if pkiPath != "" {
		os.RemoveAll(pkiPath)
	}
}

// nodeTLS loads a node's TLS configuration from dir: its certificate and the CA.
func nodeTLS(dir string) *tls.Config {
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "node.pem"), filepath.Join(dir, "node-key.pem"))
	fatalIf(err)
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	fatalIf(err)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		fatalIf(fmt.Errorf("no certificate in %s", filepath.Join(dir, "ca.pem")))
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool}
}

// childArgs returns the flags that give a child node mode.
func childArgs(mode string) []string {
	switch mode {
	case "secret":
		return []string{"-auth", "secret"}
	case "tls":
		return []string{"-auth", "tls", "-pkidir", pkiDir()}
	}
	return nil
}

// controlClient returns the HTTP client and scheme of the control calls to a child node in mode.
func controlClient(mode string) (*http.Client, string) {
	if mode != "tls" {
		return http.DefaultClient, "http"
	}
	cfg := nodeTLS(pkiDir())
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}, "https"
}
