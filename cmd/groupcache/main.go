// Command groupcache asks a cluster of groupcache nodes what an operator needs to know: over the
// peer protocol, with the cluster's own authentication, and from the nodes' status pages (package
// status):
//
//	groupcache stats [-all] ADDR...              every cache of every node, and of the cluster
//	groupcache peers ADDR                         a node's peer set, with each peer's status page
//	groupcache owner -peers PEER,PEER,... KEY     the peer that owns KEY in that peer set
//	groupcache owner -node ADDR KEY               the peer that owns KEY in a node's peer set
//	groupcache get [flags] CACHE KEY PEER         the value of KEY in CACHE, asked of the node PEER
//
// ADDR is where a node's status page is: host:port (the page at status.DefaultPath, over HTTP) or
// the page's URL. stats reads each node's report (the page's JSON), with -all also those of the
// peers the pages link to, so one address is enough where the nodes know each other's pages.
// owner builds the ring from a peer list (-peers) or from the peer set of a node (-node), and
// names the key's owner by its peer address.
//
// PEER is a node's address on the peer port. Keys are strings unless -int (the built-in codec of
// integer keys: 8 bytes, big-endian). get prints the value's bytes as they are, or with -cbor the
// value decoded from CBOR (the default codec) as JSON. get reads like any peer: the node answers
// from memory or loads the key itself (a node never forwards a peer's request), so ask the key's
// owner (see owner) for its copy. Authentication: -secret-file (the cluster's shared secret,
// peer.WithSecret), or -tls-cert, -tls-key and -tls-ca (a certificate of the cluster's CA,
// peer.WithTLS); with neither, only nodes on this machine answer. -self names the address the tool
// claims.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/typedcache/groupcache/codec"
	"github.com/typedcache/groupcache/hash"
	"github.com/typedcache/groupcache/peer"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "groupcache:", err)
		os.Exit(1)
	}
}

// mapType is what CBOR maps decode to: maps with string keys, which JSON can print.
var mapType = reflect.TypeOf(map[string]any(nil))

// errUsage is returned for a command line that does not parse; run has printed the usage.
var errUsage = errors.New("see the usage above")

const usage = `usage:
  groupcache stats [-all] [-timeout D] ADDR...
  groupcache peers [-timeout D] ADDR
  groupcache owner (-peers PEER,PEER,... | -node ADDR) [-int] [-timeout D] KEY
  groupcache get [-int] [-cbor] [-timeout D] [-secret-file F | -tls-cert F -tls-key F -tls-ca F] [-self PEER] CACHE KEY PEER
ADDR: a node's status page, host:port or URL; PEER: a node's address on the peer port`

// run runs the command line args, writing its answer to out.
func run(args []string, out io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, usage)
		return errUsage
	}
	switch args[0] {
	case "owner":
		return owner(args[1:], out)
	case "get":
		return get(args[1:], out)
	case "stats":
		return stats(args[1:], out)
	case "peers":
		return peers(args[1:], out)
	}
	fmt.Fprintln(os.Stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

// keyBytes encodes key as a cache of string keys does, or with asInt as one of integer keys.
func keyBytes(key string, asInt bool) ([]byte, error) {
	if !asInt {
		return codec.String().Append(nil, key)
	}
	n, err := strconv.ParseInt(key, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("key %q is not an integer", key)
	}
	c, _ := codec.Key[int64]()
	return c.Append(nil, n)
}

func owner(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("owner", flag.ContinueOnError)
	list := fs.String("peers", "", "the peer set, comma-separated host:port addresses")
	node := fs.String("node", "", "a node's status page (host:port or URL), whose peer set to use")
	asInt := fs.Bool("int", false, "the key is an integer")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for the node's answer")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 || (*list == "") == (*node == "") {
		fmt.Fprintln(os.Stderr, usage)
		return errUsage
	}
	kb, err := keyBytes(fs.Arg(0), *asInt)
	if err != nil {
		return err
	}
	set := strings.Split(*list, ",")
	if *node != "" {
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		defer cancel()
		rep, err := fetchReport(ctx, *node)
		if err != nil {
			return err
		}
		set = set[:0]
		for _, p := range rep.Peers {
			set = append(set, p.Addr)
		}
	}
	ring, err := hash.NewRing(set)
	if err != nil {
		return err
	}
	p, _ := ring.Owner(kb)
	_, err = fmt.Fprintln(out, p)
	return err
}

// getFlags are the flags of get.
type getFlags struct {
	asInt, asCBOR                   bool
	timeout                         time.Duration
	secretFile, cert, key, ca, self string
}

func get(args []string, out io.Writer) error {
	var f getFlags
	fs := flag.NewFlagSet("get", flag.ContinueOnError)
	fs.BoolVar(&f.asInt, "int", false, "the key is an integer")
	fs.BoolVar(&f.asCBOR, "cbor", false, "decode the value from CBOR and print it as JSON")
	fs.DurationVar(&f.timeout, "timeout", 10*time.Second, "how long to wait for the answer")
	fs.StringVar(&f.secretFile, "secret-file", "", "file holding the cluster's shared secret")
	fs.StringVar(&f.cert, "tls-cert", "", "certificate (PEM) of the cluster's CA, for mutual TLS")
	fs.StringVar(&f.key, "tls-key", "", "its private key (PEM)")
	fs.StringVar(&f.ca, "tls-ca", "", "the cluster's CA certificate (PEM)")
	fs.StringVar(&f.self, "self", "", "the address the tool claims (host:port), for an authorizer")
	if err := fs.Parse(args); err != nil || fs.NArg() != 3 {
		fmt.Fprintln(os.Stderr, usage)
		return errUsage
	}
	kb, err := keyBytes(fs.Arg(1), f.asInt)
	if err != nil {
		return err
	}
	opts, err := f.clientOptions()
	if err != nil {
		return err
	}
	client, err := peer.NewClient(opts...)
	if err != nil {
		return err
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
	defer cancel()
	v, err := client.Get(ctx, fs.Arg(2), fs.Arg(0), kb)
	if err != nil {
		return err
	}
	raw, err := v.Raw(peer.DefaultMaxValueBytes)
	if err != nil {
		return err
	}
	return write(out, raw, f.asCBOR)
}

// write prints a value: its bytes, or decoded from CBOR as indented JSON.
func write(out io.Writer, raw []byte, asCBOR bool) error {
	if !asCBOR {
		_, err := out.Write(raw)
		return err
	}
	var v any
	dm, _ := cbor.DecOptions{DefaultMapType: mapType}.DecMode()
	if err := dm.Unmarshal(raw, &v); err != nil {
		return fmt.Errorf("the value is not CBOR: %w", err)
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "%s\n", b)
	return err
}

// clientOptions returns the client's options from the authentication flags.
func (f *getFlags) clientOptions() ([]peer.ClientOption, error) {
	var opts []peer.ClientOption
	if f.self != "" {
		opts = append(opts, peer.WithSelf(f.self))
	}
	if f.secretFile != "" {
		secret, err := os.ReadFile(f.secretFile)
		if err != nil {
			return nil, err
		}
		opts = append(opts, peer.WithSecret([]byte(strings.TrimSpace(string(secret)))))
	}
	if f.cert != "" || f.key != "" || f.ca != "" {
		cfg, err := tlsConfig(f.cert, f.key, f.ca)
		if err != nil {
			return nil, err
		}
		opts = append(opts, peer.WithTLS(cfg))
	}
	return opts, nil
}

// tlsConfig loads a certificate, its key and the CA.
func tlsConfig(certFile, keyFile, caFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in %s", caFile)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool}, nil
}
