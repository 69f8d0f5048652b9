package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/typedcache/groupcache"
	"github.com/typedcache/groupcache/internal/testcluster"
	"github.com/typedcache/groupcache/peer"
)

type profile struct {
	Name string `cbor:"name" json:"name"`
	Age  int    `cbor:"age" json:"age"`
}

var secret = "0123456789abcdef-the cluster's secret"

// cluster starts 3 nodes with the shared secret and a cache "users" of CBOR profiles on each,
// and writes the secret to a file; loadedBy records which node loaded each key.
func cluster(t *testing.T) (cl *testcluster.Cluster, secretFile string, loadedBy *sync.Map, caches []*groupcache.Cache[string, profile]) {
	t.Helper()
	cl = testcluster.Start(t, 3, groupcache.WithPeerOptions(peer.WithSecret([]byte(secret))))
	loadedBy = new(sync.Map)
	for _, n := range cl.Nodes {
		c, err := groupcache.New[string, profile]("users", groupcache.LoaderFunc[string, profile](
			func(_ context.Context, k string) (profile, error) {
				loadedBy.Store(k, n.Self())
				return profile{Name: k, Age: len(k)}, nil
			}), groupcache.WithNode(n))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		caches = append(caches, c)
	}
	secretFile = filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return cl, secretFile, loadedBy, caches
}

// TestGet: get asks a node for a value with the cluster's secret and prints it as JSON; without
// the secret the node refuses.
func TestGet(t *testing.T) {
	cl, f, _, _ := cluster(t)
	var out bytes.Buffer
	if err := run([]string{"get", "-cbor", "-secret-file", f, "users", "alice", cl.Addrs[1]}, &out); err != nil {
		t.Fatal(err)
	}
	var p profile
	if err := json.Unmarshal(out.Bytes(), &p); err != nil || p != (profile{Name: "alice", Age: 5}) {
		t.Fatalf("printed %q (%v)", out.String(), err)
	}
	err := run([]string{"get", "users", "alice", cl.Addrs[1]}, &out)
	if peer.StatusOf(err) != peer.StatusForbidden {
		t.Fatalf("without the secret: %v, want a refusal", err)
	}
}

// TestOwner: owner names the peer that the nodes' own ring gives the key: a Get on another node
// makes that peer load it.
func TestOwner(t *testing.T) {
	cl, _, loadedBy, caches := cluster(t)
	for _, k := range []string{"alice", "bob", "carol", "dave", "erin", "frank"} {
		var out bytes.Buffer
		if err := run([]string{"owner", "-peers", strings.Join(cl.Addrs, ","), k}, &out); err != nil {
			t.Fatal(err)
		}
		owner := strings.TrimSpace(out.String())
		other := 0
		if cl.Addrs[0] == owner {
			other = 1
		}
		if _, err := caches[other].Get(context.Background(), k); err != nil {
			t.Fatal(err)
		}
		if by, _ := loadedBy.Load(k); by != owner {
			t.Fatalf("owner says %s owns %q; %v loaded it", owner, k, by)
		}
	}
	if err := run([]string{"owner", "k"}, io.Discard); err == nil {
		t.Fatal("owner without -peers did not fail")
	}
}
