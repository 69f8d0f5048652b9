// Command clusterbench measures remote hits of a 3-node cluster whose nodes are separate OS
// processes on 127.0.0.1, against the floor of a raw TCP request/response between two processes,
// and against github.com/golang/groupcache in the same configuration. It also counts the loads of
// a cold fill from all nodes at once.
//
// The measuring process is itself one of the three nodes; the two others are child processes
// (this binary, re-executed with -role). A remote hit is a Get on the measuring node of a key
// owned by another node and already cached there; the measuring node keeps no copy (our hot store
// is off, golang/groupcache's is too small to matter), so every Get crosses the process boundary.
//
//	go run ./cmd/clusterbench                 # from the bench module
//	go run ./cmd/clusterbench -sizes 1024 -duration 3s
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

var (
	role      = flag.String("role", "", "internal: run as a child (echo, node, gcnode)")
	sizeFlag  = flag.Int("size", 1024, "internal: value size of a child")
	sizesFlag = flag.String("sizes", "1024,65536", "value sizes to measure, comma-separated")
	keysFlag  = flag.Int("keys", 3000, "keys in the measured set")
	samples   = flag.Int("samples", 20000, "requests of the single-caller latency run")
	duration  = flag.Duration("duration", 2*time.Second, "length of each 16-caller throughput run")
	callers   = flag.Int("callers", 16, "concurrent callers of the throughput run")
	coldKeys  = flag.Int("coldkeys", 2000, "keys of the cold-fill run")
)

func main() {
	flag.Parse()
	log.SetFlags(0)
	switch *role {
	case "echo":
		runEcho(*sizeFlag)
		return
	case "node":
		runNodeChild(*sizeFlag)
		return
	case "gcnode":
		runGCChild(*sizeFlag)
		return
	case "":
	default:
		log.Fatalf("unknown role %q", *role)
	}

	var sizes []int
	for _, s := range strings.Split(*sizesFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			log.Fatalf("bad size %q", s)
		}
		sizes = append(sizes, n)
	}
	fmt.Printf("clusterbench: GOOS=%s GOARCH=%s NumCPU=%d GOMAXPROCS=%d %s\n",
		runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version())
	fmt.Printf("keys=%d samples=%d duration=%v callers=%d\n\n", *keysFlag, *samples, *duration, *callers)

	fmt.Println("| value | system | p50 (1 caller) | p99 (1 caller) | ops/s (1 caller) | p50 (16) | p99 (16) | ops/s (16) | p50 / floor | ops/s(16) / floor |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|")
	for _, size := range sizes {
		floor := measureSystem(newFloor(size, 1))
		floor2 := measureSystem(newFloor(size, 2))
		transport := measureSystem(newTransportOnly(size))
		ours := measureSystem(newOurs(size))
		gc := measureSystem(newGC(size))
		for _, r := range []result{floor, floor2, transport, ours, gc} {
			fmt.Printf("| %s | %s | %s | %s | %.0f | %s | %s | %.0f | %.2f | %.2f |\n", sizeName(size), r.name,
				us(r.single.p50), us(r.single.p99), r.single.ops, us(r.multi.p50), us(r.multi.p99), r.multi.ops,
				float64(r.single.p50)/float64(floor.single.p50), r.multi.ops/floor.multi.ops)
		}
		fmt.Printf("| %s | this library / floor with 2 servers | | | | | | | | %.2f |\n", sizeName(size), ours.multi.ops/floor2.multi.ops)
		fmt.Printf("| %s | this library / golang/groupcache | %.2f | | | | | %.2f | | |\n", sizeName(size),
			float64(ours.single.p50)/float64(gc.single.p50), ours.multi.ops/gc.multi.ops)
	}

	fmt.Printf("\ncold fill: 3 nodes (3 child processes) ask for the same %d fresh keys at once, %d goroutines each\n\n", *coldKeys, *callers)
	fmt.Println("| system | loads | keys | duration |")
	fmt.Println("|---|---|---|---|")
	for _, sys := range []struct{ name, role string }{{"this library", "node"}, {"golang/groupcache", "gcnode"}} {
		loads, took := coldFill(sys.role, *coldKeys, *callers)
		fmt.Printf("| %s | %d | %d | %v |\n", sys.name, loads, *coldKeys, took.Round(time.Millisecond))
	}
}

// system is one thing measured: it answers get(i) for keys of the measured set.
type system interface {
	name() string
	// keys returns the indexes of keys whose request crosses to another process.
	remoteKeys(n int) []int
	// get fetches key i; caller identifies the calling goroutine (for per-caller connections).
	get(caller, i int) error
	close()
}

type stat struct {
	p50, p99 time.Duration
	ops      float64
}

type result struct {
	name          string
	single, multi stat
}

func measureSystem(s system) result {
	defer s.close()
	keys := s.remoteKeys(*keysFlag)
	// Warm up: every key once (fills the owners), then a second pass to settle connections.
	for pass := 0; pass < 2; pass++ {
		for _, k := range keys {
			if err := s.get(0, k); err != nil {
				log.Fatalf("%s: warm-up get %d: %v", s.name(), k, err)
			}
		}
	}
	single := run(s, keys, 1, *samples, 0)
	multi := run(s, keys, *callers, 0, *duration)
	return result{name: s.name(), single: single, multi: multi}
}

// run makes callers goroutines issue gets until count requests in all (count > 0) or for d.
func run(s system, keys []int, callers, count int, d time.Duration) stat {
	lat := make([][]time.Duration, callers)
	var done atomic.Bool
	var issued atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := make([]time.Duration, 0, 1<<14)
			for i := c * 7919; ; i++ {
				if count > 0 && issued.Add(1) > int64(count) || done.Load() {
					break
				}
				t0 := time.Now()
				if err := s.get(c, keys[i%len(keys)]); err != nil {
					log.Fatalf("%s: get: %v", s.name(), err)
				}
				l = append(l, time.Since(t0))
			}
			lat[c] = l
		}()
	}
	if d > 0 {
		time.Sleep(d)
		done.Store(true)
	}
	wg.Wait()
	elapsed := time.Since(start)
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	return stat{
		p50: all[len(all)/2],
		p99: all[len(all)*99/100],
		ops: float64(len(all)) / elapsed.Seconds(),
	}
}

func us(d time.Duration) string { return fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond)) }

func sizeName(n int) string {
	if n%1024 == 0 {
		return fmt.Sprintf("%d KiB", n/1024)
	}
	return fmt.Sprintf("%d B", n)
}

func keyName(i int) string { return "key-" + strconv.Itoa(i) }

// payload returns the value of key: size bytes that do not compress, the same in every process.
func payload(key string, size int) []byte {
	b := make([]byte, size)
	x := uint64(14695981039346656037)
	for i := 0; i < len(key); i++ {
		x = (x ^ uint64(key[i])) * 1099511628211
	}
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return b
}

func fatalIf(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "clusterbench:", err)
		os.Exit(1)
	}
}
