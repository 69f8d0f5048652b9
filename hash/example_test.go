package hash_test

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/typedcache/groupcache/hash"
)

func Example() {
	// Every process builds the ring from the same peer set; the order does not matter.
	ring, err := hash.NewRing([]string{"10.0.0.3:8080", "10.0.0.1:8080", "10.0.0.2:8080"})
	if err != nil {
		panic(err)
	}
	for _, key := range []string{"user:42", "user:43", "profile:alice", "profile:bob"} {
		owner, _ := ring.OwnerString(key)
		fmt.Println(key, "->", owner)
	}
	fmt.Println(ring.Peers(), ring.Len(), ring.Contains("10.0.0.2:8080"))
	// Output:
	// user:42 -> 10.0.0.2:8080
	// user:43 -> 10.0.0.3:8080
	// profile:alice -> 10.0.0.1:8080
	// profile:bob -> 10.0.0.3:8080
	// [10.0.0.1:8080 10.0.0.2:8080 10.0.0.3:8080] 3 true
}

// Hash a key once, then use the hash for the lookup (and for anything else that needs it).
func ExampleRing_OwnerIndex() {
	ring, _ := hash.NewRing([]string{"a:1", "b:1", "c:1"})
	h := ring.KeyHash([]byte("user:42"))
	i := ring.OwnerIndex(h)
	fmt.Printf("%#x %d %s\n", h, i, ring.Peer(i))
	// Output:
	// 0x9fc1e605fa7174aa 2 c:1
}

// A Ring is immutable: on a membership change, build a new one and swap it in.
func ExampleNewRing_swap() {
	var current atomic.Pointer[hash.Ring]

	lookup := func(key string) (string, error) {
		owner, ok := current.Load().OwnerString(key) // a nil *Ring is an empty ring
		if !ok {
			return "", errors.New("no peers")
		}
		return owner, nil
	}

	keys := []string{"user:1", "user:2", "user:3", "user:4", "user:5", "user:6"}
	show := func() {
		var owners []string
		for _, k := range keys {
			owner, err := lookup(k)
			if err != nil {
				fmt.Println(err)
				return
			}
			owners = append(owners, owner)
		}
		fmt.Println(owners)
	}

	show()
	ring, _ := hash.NewRing([]string{"10.0.0.1:8080", "10.0.0.2:8080"})
	current.Store(ring)
	show()
	// A third peer joins: it takes about a third of the keys, the others stay where they were.
	ring, _ = hash.NewRing([]string{"10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"})
	current.Store(ring)
	show()
	// Output:
	// no peers
	// [10.0.0.1:8080 10.0.0.2:8080 10.0.0.1:8080 10.0.0.1:8080 10.0.0.1:8080 10.0.0.1:8080]
	// [10.0.0.1:8080 10.0.0.3:8080 10.0.0.1:8080 10.0.0.1:8080 10.0.0.3:8080 10.0.0.1:8080]
}

func ExampleNewRing_invalid() {
	_, err := hash.NewRing([]string{"10.0.0.1:8080", ""})
	fmt.Println(err)
	_, err = hash.NewRing([]string{"10.0.0.1:8080"}, hash.WithReplicas(0))
	fmt.Println(err)
	// Output:
	// hash: invalid ring: empty peer name at index 1
	// hash: invalid ring: WithReplicas(0) not in [1, 65536]
}
