//go:build linux

// Command soak runs a cluster of nodes as OS processes on 127.0.0.1 under a mixed workload and a
// schedule of faults, and checks every value read against a versioned oracle: the freshness
// contract of docs/reliability.md ("Freshness under faults"), exactly.
//
// Each node is this binary re-executed as a child: a groupcache.Node with three caches ("hot",
// with a hot store; "nohot", without one, so fallbacks go to the main store; "small", 64 KiB, so
// entries are evicted all the time), whose loaders read a shared "database" (a file every process
// maps into memory: one version per key). The parent runs the workload through each node's control
// endpoint (HTTP on 127.0.0.1): Get, GetMany, Set and Remove (RemoveMany) from several workers,
// and a Clear every few seconds. Before it writes a key, the parent bumps its version in the
// database; a Set stores the value of the new version, a Remove makes the next load read it.
// Every value read names its cache, key and version, and is judged against the writes
// acknowledged before the read started.
//
// Faults, one every -fault-every, on every node but the first -keep: SIGKILL and restart at the
// same address, SIGSTOP then SIGCONT (0.5 to 3 s), a rolling graceful restart (Node.Shutdown) of
// them all, and a peer-set change (a node taken out of every peer set and stopped, then started
// again and put back).
//
// It prints the operations, errors by kind, latency percentiles, the values checked, wrong and
// stale within the contract, and each node's goroutines and memory over time; it exits 1 on any
// wrong value, any Get or GetMany error, or a node that panicked or exited by itself.
//
//	go run ./cmd/soak -nodes 5 -duration 30m -fault-every 5s -seed 1   # from the bench module
//
// Linux only (signals, /proc).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"
)

// childEnv marks a child process: it runs a node instead of the parent.
const childEnv = "GROUPCACHE_SOAK_CHILD"

type config struct {
	nodes       int
	duration    time.Duration
	faultEvery  time.Duration
	seed        uint64
	keys        int
	workers     int
	keep        int
	ttl         time.Duration
	hotTTL      time.Duration
	loadTimeout time.Duration // the caches' (the default)
	clearEvery  time.Duration
	dbPath      string
	self        string   // the binary of the children
	selfArgs    []string // their first arguments
	out         io.Writer
}

func main() {
	if os.Getenv(childEnv) == "1" {
		runChild(os.Args[1:])
		return
	}
	cfg := config{loadTimeout: 10 * time.Second, out: os.Stdout}
	flag.IntVar(&cfg.nodes, "nodes", 5, "nodes, each an OS process")
	flag.DurationVar(&cfg.duration, "duration", time.Minute, "length of the run")
	flag.DurationVar(&cfg.faultEvery, "fault-every", 5*time.Second, "time between faults; 0: none")
	flag.Uint64Var(&cfg.seed, "seed", 1, "seed of the workload's and the faults' choices")
	flag.IntVar(&cfg.keys, "keys", 2000, "keys per cache")
	flag.IntVar(&cfg.workers, "workers", 8, "concurrent workers of the workload")
	flag.IntVar(&cfg.keep, "keep", 1, "nodes faults never touch (the first ones)")
	flag.DurationVar(&cfg.ttl, "ttl", 5*time.Second, "the caches' TTL")
	flag.DurationVar(&cfg.hotTTL, "hotttl", time.Second, "the caches' hot TTL")
	flag.DurationVar(&cfg.clearEvery, "clear-every", 3*time.Second, "time between Clears; 0: none")
	flag.Parse()
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(2)
	}
	cfg.self = exe
	r, err := run(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(2)
	}
	if why := r.failed(); why != "" {
		fmt.Println("\nFAIL:", why)
		os.Exit(1)
	}
	fmt.Println("\nPASS")
}

// run starts the cluster, runs the workload and the faults for cfg.duration, stops the cluster
// and returns what it found, printed to cfg.out.
func run(cfg config) (*result, error) {
	dir, err := os.MkdirTemp("", "soak")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	cfg.dbPath = filepath.Join(dir, "db")
	d, err := openDB(cfg.dbPath, len(cacheNames), cfg.keys, true)
	if err != nil {
		return nil, err
	}
	defer d.close()
	fmt.Fprintf(cfg.out, "soak: nodes=%d duration=%v fault-every=%v seed=%d keys=%d×%d workers=%d keep=%d ttl=%v hotttl=%v; %s/%s, %d CPUs, %s\n",
		cfg.nodes, cfg.duration, cfg.faultEvery, cfg.seed, len(cacheNames), cfg.keys, cfg.workers, cfg.keep,
		cfg.ttl, cfg.hotTTL, runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version())
	s := newSeries()
	cl := newCluster(cfg, s)
	defer cl.closeAll()
	if err := cl.start(); err != nil {
		return nil, err
	}
	o := newOracle(d, len(cacheNames), cfg.ttl+cfg.loadTimeout)
	r := drive(cfg, cl, o)
	cl.closeAll()
	r.crashes = cl.crashes.Load()
	r.print(cfg.out, cfg, s)
	return r, nil
}

// drive runs the workers, the Clears, the sampler and the faults for cfg.duration.
func drive(cfg config, cl *cluster, o *oracle) *result {
	ctx, cancel := context.WithTimeout(context.Background(), cfg.duration)
	defer cancel()
	rng := rand.New(rand.NewPCG(cfg.seed, 0))
	workers := make([]*worker, cfg.workers+1) // the last one runs the Clears
	var wg sync.WaitGroup
	for i := range workers {
		workers[i] = &worker{cl: cl, o: o, rng: rand.New(rand.NewPCG(cfg.seed, uint64(i+1))), cnt: newCounts()}
		if i < cfg.workers {
			wg.Go(func() { workers[i].run(ctx) })
		}
	}
	if cfg.clearEvery > 0 {
		wg.Add(1)
		go clearer(ctx, workers[cfg.workers], cfg.clearEvery, &wg)
	}
	wg.Add(1)
	go sampler(ctx, cl, time.Second, &wg)
	f := &faulter{cl: cl, o: o, rng: rng, counts: map[string]int{}}
	start := time.Now()
	if cfg.faultEvery > 0 {
		f.run(ctx, cfg.faultEvery)
	}
	<-ctx.Done()
	wg.Wait()
	r := &result{counts: newCounts(), faults: f.counts, faultErrs: len(f.errs), elapsed: time.Since(start)}
	for _, w := range workers {
		r.counts.merge(w.cnt)
	}
	return r
}
