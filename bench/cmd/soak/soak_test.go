//go:build linux

package main

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		runChild(os.Args[1:])
		return
	}
	os.Exit(m.Run())
}

// TestSoak runs the soak for a minute: 3 nodes (this test binary, re-executed), a fault every
// 5 s. It fails on any wrong value, any Get or GetMany error, or a node that crashed (with the
// race detector, a data race in a node counts as a crash).
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("the soak runs for a minute; skipped with -short")
	}
	var out strings.Builder
	cfg := config{nodes: 3, duration: time.Minute, faultEvery: 5 * time.Second, seed: 1, keys: 1000,
		workers: 4, keep: 1, ttl: 5 * time.Second, hotTTL: time.Second, loadTimeout: 10 * time.Second,
		clearEvery: 3 * time.Second, self: os.Args[0], out: &out}
	r, err := run(cfg)
	t.Log(out.String())
	if err != nil {
		t.Fatal(err)
	}
	if why := r.failed(); why != "" {
		t.Fatal(why)
	}
}
