package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// System calls per request (-syscalls): the read and write system calls (those that return
// EAGAIN included) of the measuring process and of the server processes during the 16-caller
// run, from Linux's /proc/PID/io (syscr, syscw), divided by the requests of the run.

// serverProcesses is implemented by the systems whose servers are child processes.
type serverProcesses interface {
	serverPids() []int
}

func childPids(children []*child) []int {
	pids := make([]int, len(children))
	for i, c := range children {
		pids[i] = c.cmd.Process.Pid
	}
	return pids
}

func (f *floor) serverPids() []int      { return childPids(f.children) }
func (c *ourCluster) serverPids() []int { return childPids(c.children) }
func (g *gcSystem) serverPids() []int   { return childPids(g.children) }

// ioCounts are the read and write system calls of the measuring process and of the servers.
type ioCounts struct {
	clientR, clientW, serverR, serverW int64
	ok                                 bool
}

// procIO returns the read and write system calls made so far by process pid.
func procIO(pid int) (r, w int64, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, 0, false
	}
	seen := 0
	for _, line := range strings.Split(string(b), "\n") {
		k, v, found := strings.Cut(line, ":")
		if !found {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "syscr":
			r, seen = n, seen+1
		case "syscw":
			w, seen = n, seen+1
		}
	}
	return r, w, seen == 2
}

// readIO reads the counters of this process and of s's servers; ok is false when -syscalls is
// off or they cannot be read.
func readIO(s system) ioCounts {
	sp, isProc := s.(serverProcesses)
	if !*syscallsFlag || !isProc {
		return ioCounts{}
	}
	var c ioCounts
	var ok bool
	if c.clientR, c.clientW, ok = procIO(os.Getpid()); !ok {
		return ioCounts{}
	}
	for _, pid := range sp.serverPids() {
		r, w, ok := procIO(pid)
		if !ok {
			return ioCounts{}
		}
		c.serverR += r
		c.serverW += w
	}
	c.ok = true
	return c
}

// perRequest returns the system calls of the run between before and after, per request.
func perRequest(before, after ioCounts, requests int) (sys [4]float64, ok bool) {
	if !before.ok || !after.ok || requests == 0 {
		return sys, false
	}
	n := float64(requests)
	return [4]float64{float64(after.clientR-before.clientR) / n, float64(after.clientW-before.clientW) / n,
		float64(after.serverR-before.serverR) / n, float64(after.serverW-before.serverW) / n}, true
}
