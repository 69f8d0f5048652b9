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
//	go run ./cmd/clusterbench -sizes 1024 -only getmany   # GetMany of 100 keys against 100 Gets
//	go run ./cmd/clusterbench -sizes 1024 -only transport -conns 2      # peer.Client, 2 connections per peer
//	go run ./cmd/clusterbench -sizes 1024 -only transport -syscalls     # and system calls per request
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

var (
	role       = flag.String("role", "", "internal: run as a child (echo, node, gcnode)")
	sizeFlag   = flag.Int("size", 1024, "internal: value size of a child")
	sizesFlag  = flag.String("sizes", "1024,65536", "value sizes to measure, comma-separated")
	keysFlag   = flag.Int("keys", 3000, "keys in the measured set")
	samples    = flag.Int("samples", 20000, "requests of the single-caller latency run")
	duration   = flag.Duration("duration", 2*time.Second, "length of each 16-caller throughput run")
	callers    = flag.Int("callers", 16, "concurrent callers of the throughput run")
	coldKeys   = flag.Int("coldkeys", 2000, "keys of the cold-fill run")
	roundsFlag = flag.Int("rounds", 3, "rounds; every system is measured once per round")
	only       = flag.String("only", "", "measure only the systems whose name contains this")
	cpuprof    = flag.String("cpuprofile", "", "write a CPU profile of the measuring process during each system's 16-caller run, "+
		"to this path suffixed with the system's name")
	memprof = flag.String("memprofile", "", "write the measuring process's heap profile after each system's 16-caller run, "+
		"to this path suffixed with the system's name")
	batchFlag    = flag.Int("batch", 100, "keys per GetMany in the GetMany comparison; 0 skips it")
	syscallsFlag = flag.Bool("syscalls", false, "also report the read and write system calls per request of the 16-caller run, "+
		"in the measuring process and in the server processes (Linux /proc/PID/io)")
	childCPUs = flag.String("childcpus", "", "CPU list the child processes are pinned to (taskset -c), e.g. 1; "+
		"run the measuring process under taskset -c 0 to keep every round trip between two CPUs")
	heapGoal = flag.Int64("heapgoal", 0, "if > 0, the measuring process collects garbage when its heap reaches this many bytes "+
		"(GOGC off, this memory limit), whatever its live heap: every system then gets the same number of collections "+
		"per byte allocated; the child processes keep the default")
	conns = flag.Int("conns", 0, "connections per peer of the measuring node's peer.Client and of the bare one "+
		"(peer.WithConnsPerPeer); 0: the peer package's default")
)

func main() {
	flag.Parse()
	log.SetFlags(0)
	if *role != "" {
		runChild(*role)
		return
	}
	if *heapGoal > 0 {
		debug.SetGCPercent(-1)
		debug.SetMemoryLimit(*heapGoal)
	}
	sizes := parseSizes(*sizesFlag)
	fmt.Printf("clusterbench: GOOS=%s GOARCH=%s NumCPU=%d GOMAXPROCS=%d %s\n",
		runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version())
	fmt.Printf("keys=%d samples=%d duration=%v callers=%d heapgoal=%d\n\n", *keysFlag, *samples, *duration, *callers, *heapGoal)
	if *only == "getmany" {
		printGetMany(sizes)
		return
	}
	defer removePKI()
	printRemoteHits(sizes, systems())
	printColdFill()
	if *batchFlag > 0 && *only == "" {
		printGetMany(sizes)
	}
}

// runChild runs this process as a child of the given role (echo, node, gcnode) until its parent
// stops it. Children profile themselves when asked: CLUSTERBENCH_CHILD_PROFILE=dir.
func runChild(role string) {
	if dir := os.Getenv("CLUSTERBENCH_CHILD_PROFILE"); dir != "" {
		f, err := os.Create(fmt.Sprintf("%s/%s-%d.prof", dir, role, os.Getpid()))
		fatalIf(err)
		fatalIf(pprof.StartCPUProfile(f))
		defer pprof.StopCPUProfile()
	}
	switch role {
	case "echo":
		runEcho(*sizeFlag)
	case "node":
		runNodeChild(*sizeFlag)
	case "gcnode":
		runGCChild(*sizeFlag)
	default:
		log.Fatalf("unknown role %q", role)
	}
}

// parseSizes parses the comma-separated value sizes of -sizes.
func parseSizes(list string) []int {
	var sizes []int
	for _, s := range strings.Split(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			log.Fatalf("bad size %q", s)
		}
		sizes = append(sizes, n)
	}
	return sizes
}

// spec names a system and makes it for a value size.
type spec struct {
	name string
	make func(size int) system
}

// systems returns the systems measured, the floors first: the ratios divide by them.
func systems() []spec {
	return []spec{
		{"floor1", func(n int) system { return newFloor(n, 1) }},
		{"floor2", func(n int) system { return newFloor(n, 2) }},
		{"floor2new", func(n int) system { f := newFloor(n, 2); f.fresh = true; return f }},
		{"transport", func(n int) system { return newTransportOnly(n) }},
		{"ours", func(n int) system { return newOurs(n, "") }},
		{"oursview", func(n int) system { o := newOurs(n, ""); o.view = true; return o }},
		{"ourssecret", func(n int) system { return newOurs(n, "secret") }},
		{"ourstls", func(n int) system { return newOurs(n, "tls") }},
		{"ourstraced", func(n int) system { return newOurs(n, "traced") }},
		{"ourstracedall", func(n int) system { return newOurs(n, "tracedall") }},
		{"gc", func(n int) system { return newGC(n) }},
	}
}

// printRemoteHits measures the remote hits of every system (those -only selects, and the floors)
// for every value size, -rounds times, and prints the table of their medians.
func printRemoteHits(sizes []int, specs []spec) {
	fmt.Println("Medians over the rounds; each ratio is taken within one round, then its median is shown.")
	fmt.Println()
	fmt.Println("| value | system | p50 (1 caller) | p99 (1 caller) | ops/s (1 caller) | p50 (16) | p99 (16) | ops/s (16) | p50 / floor(1) | ops/s(16) / floor(1) | ops/s(16) / floor(2) | ops/s(16) / floor(2, new memory) | ops/s(16) / golang/groupcache |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	var security []string
	for _, size := range sizes {
		rs := measureRounds(size, specs)
		for _, sp := range specs {
			if _, ok := rs[0][sp.name]; ok {
				printRow(size, sp.name, rs)
			}
		}
		security = append(security, securityRows(size, rs)...)
		if *syscallsFlag {
			var names []string
			for _, sp := range specs {
				names = append(names, sp.name)
			}
			printSyscalls(size, rs, names)
		}
	}
	if len(security) > 0 {
		fmt.Println("\nThe cost of security and of tracing: each mode against plaintext without a tracer, ratios taken within one round, medians shown.")
		fmt.Println()
		fmt.Println("| value | mode | p50 (1 caller) / plain | ops/s (16) / plain |")
		fmt.Println("|---|---|---|---|")
		for _, row := range security {
			fmt.Println(row)
		}
	}
}

// securityRows returns, for each authenticated or traced system measured, its p50 and throughput
// as ratios to the plaintext, untraced system's in the same round.
func securityRows(size int, rs rounds) []string {
	var rows []string
	for _, name := range []string{"ourssecret", "ourstls", "ourstraced", "ourstracedall"} {
		_, ok := rs[0][name]
		if _, plain := rs[0]["ours"]; !ok || !plain {
			continue
		}
		rows = append(rows, fmt.Sprintf("| %s | %s | %.3f | %.3f |", sizeName(size), rs[0][name].name,
			rs.median(ratio(of(name, p50), of("ours", p50))), rs.median(ratio(of(name, ops16), of("ours", ops16)))))
	}
	return rows
}

// measureRounds measures the systems -only selects, and the floors, once per round.
func measureRounds(size int, specs []spec) rounds {
	rs := make(rounds, *roundsFlag)
	for r := range rs {
		rs[r] = map[string]result{}
		for _, sp := range specs {
			if *only != "" && !strings.Contains(sp.name, *only) && !strings.HasPrefix(sp.name, "floor") {
				continue
			}
			rs[r][sp.name] = measureSystem(sp.make(size))
		}
	}
	return rs
}

// rounds holds the results of every round of one value size, by system name.
type rounds []map[string]result

// median returns the median over the rounds of f, skipping the rounds where f is NaN (a system
// not measured); 0 if there is none.
func (rs rounds) median(f func(map[string]result) float64) float64 {
	var xs []float64
	for _, rd := range rs {
		if x := f(rd); x == x { // skip NaN (a missing system)
			xs = append(xs, x)
		}
	}
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	return xs[len(xs)/2]
}

// of returns f of the result of the system name in a round; NaN if the round has none.
func of(name string, f func(result) float64) func(map[string]result) float64 {
	return func(rd map[string]result) float64 {
		r, ok := rd[name]
		if !ok {
			return nan()
		}
		return f(r)
	}
}

// ratio returns a / b within a round.
func ratio(a, b func(map[string]result) float64) func(map[string]result) float64 {
	return func(rd map[string]result) float64 { return a(rd) / b(rd) }
}

func p50(r result) float64   { return float64(r.single.p50) }
func p99(r result) float64   { return float64(r.single.p99) }
func ops1(r result) float64  { return r.single.ops }
func p50m(r result) float64  { return float64(r.multi.p50) }
func p99m(r result) float64  { return float64(r.multi.p99) }
func ops16(r result) float64 { return r.multi.ops }

// printRow prints the table row of the system name: medians over the rounds, and ratios to the
// floors and to golang/groupcache taken within each round.
func printRow(size int, name string, rs rounds) {
	fmt.Printf("| %s | %s | %s | %s | %.0f | %s | %s | %.0f | %.2f | %.2f | %.2f | %.2f | %.2f |\n", sizeName(size), rs[0][name].name,
		us(time.Duration(rs.median(of(name, p50)))),
		us(time.Duration(rs.median(of(name, p99)))),
		rs.median(of(name, ops1)),
		us(time.Duration(rs.median(of(name, p50m)))),
		us(time.Duration(rs.median(of(name, p99m)))),
		rs.median(of(name, ops16)),
		rs.median(ratio(of(name, p50), of("floor1", p50))),
		rs.median(ratio(of(name, ops16), of("floor1", ops16))),
		rs.median(ratio(of(name, ops16), of("floor2", ops16))),
		rs.median(ratio(of(name, ops16), of("floor2new", ops16))),
		rs.median(ratio(of(name, ops16), of("gc", ops16))))
}

// printColdFill prints the loads and the time of a cold fill of every system.
func printColdFill() {
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
	requests int
}

type result struct {
	name          string
	single, multi stat
	// System calls per request of the 16-caller run (-syscalls): client reads, client writes,
	// server reads, server writes.
	sys   [4]float64
	sysOK bool
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
	before := readIO(s)
	var cpuFile *os.File
	if *cpuprof != "" {
		var err error
		cpuFile, err = os.Create(profilePath(*cpuprof, s))
		fatalIf(err)
		fatalIf(pprof.StartCPUProfile(cpuFile))
	}
	multi := run(s, keys, *callers, 0, *duration)
	if cpuFile != nil {
		pprof.StopCPUProfile()
		cpuFile.Close()
	}
	if *memprof != "" {
		// The heap as the last collection of the 16-caller run left it.
		f, err := os.Create(profilePath(*memprof, s))
		fatalIf(err)
		fatalIf(pprof.Lookup("heap").WriteTo(f, 0))
		f.Close()
	}
	sys, sysOK := perRequest(before, readIO(s), multi.requests)
	return result{name: s.name(), single: single, multi: multi, sys: sys, sysOK: sysOK}
}

// profilePath is path suffixed with the name of s, made fit for a file name.
func profilePath(path string, s system) string {
	return path + "." + strings.NewReplacer(" ", "_", "(", "", ")", "", ",", "", "/", "_").Replace(s.name())
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
		p50:      all[len(all)/2],
		p99:      all[len(all)*99/100],
		ops:      float64(len(all)) / elapsed.Seconds(),
		requests: len(all),
	}
}

// printSyscalls prints the system calls per request of the 16-caller runs of the systems named,
// medians over the rounds.
func printSyscalls(size int, rs rounds, names []string) {
	fmt.Printf("\n%s, %d callers: read and write system calls per request (EAGAIN included), medians over the rounds\n\n", sizeName(size), *callers)
	fmt.Println("| system | client reads | client writes | server reads | server writes |")
	fmt.Println("|---|---|---|---|---|")
	for _, name := range names {
		var cols [4][]float64
		label := ""
		for _, rd := range rs {
			if r, ok := rd[name]; ok && r.sysOK {
				label = r.name
				for i := range cols {
					cols[i] = append(cols[i], r.sys[i])
				}
			}
		}
		if label == "" {
			continue
		}
		fmt.Printf("| %s |", label)
		for _, c := range cols {
			slices.Sort(c)
			fmt.Printf(" %.2f |", c[len(c)/2])
		}
		fmt.Println()
	}
	fmt.Println()
}

func nan() float64 { var zero float64; return zero / zero }

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
