//go:build linux

package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"
)

// faulter injects one fault every period into the nodes after the first cfg.keep, which are
// never touched (their goroutines and memory over the whole run show whether anything grows).
type faulter struct {
	cl     *cluster
	o      *oracle
	rng    *rand.Rand
	counts map[string]int
	errs   []error
	n      int // faults so far
}

// schedule is the order of the faults: every kind within six faults, SIGKILL and SIGSTOP twice.
var schedule = []string{"kill", "stop", "peers", "kill", "stop", "rolling"}

func (f *faulter) run(ctx context.Context, period time.Duration) {
	every(ctx, period, func() {
		if err := f.one(ctx, period); err != nil {
			f.errs = append(f.errs, err)
			fmt.Fprintln(f.cl.stderr, "soak: fault:", err)
		}
	})
}

// one injects the next fault of the schedule, on a node chosen at random: SIGKILL and restart, SIGSTOP and SIGCONT, a rolling
// graceful restart of every node that faults may touch, or a peer-set change (a node taken out
// of the set and stopped gracefully, then started again and put back).
func (f *faulter) one(ctx context.Context, period time.Duration) error {
	victims := f.cl.procs[f.cl.cfg.keep:]
	if len(victims) == 0 {
		return nil
	}
	p := victims[f.rng.IntN(len(victims))]
	kind := schedule[f.n%len(schedule)]
	f.n++
	fmt.Fprintf(f.cl.stderr, "soak: %v: %s, node %d\n", f.o.since(time.Now()), kind, p.id)
	switch kind {
	case "kill":
		f.counts["SIGKILL+restart"]++
		f.cl.kill(p)
		pause(ctx, time.Duration(200+f.rng.IntN(1800))*time.Millisecond)
		return f.cl.restart(p)
	case "stop":
		f.counts["SIGSTOP+SIGCONT"]++
		f.cl.stop(p, time.Duration(500+f.rng.IntN(2500))*time.Millisecond)
		return nil
	case "rolling":
		f.counts["rolling graceful restart"]++
		for _, p := range victims {
			f.cl.leave(p)
			if err := f.cl.restart(p); err != nil {
				return err
			}
		}
		return nil
	}
	f.counts["peer-set change (out and back)"]++
	return f.outAndBack(ctx, p, period/2)
}

// outAndBack takes p out of the peer set (the others are told first, as a discovery source would
// tell them, then p leaves with Shutdown), waits out, then starts p again and tells every node the
// set with it. The oracle counts writes made while the nodes are being told as unbound for its
// window: until every node has the new set, a writer may not know a node that others already ask.
func (f *faulter) outAndBack(ctx context.Context, p *proc, out time.Duration) error {
	f.o.flux.Add(1)
	f.cl.setState(p, stateDown)
	f.cl.member[p.id] = false
	err := f.cl.setPeersAll()
	f.cl.leave(p)
	f.o.flux.Add(1)
	if err != nil {
		return err
	}
	pause(ctx, out)
	f.o.flux.Add(1)
	defer f.o.flux.Add(1)
	f.cl.member[p.id] = true
	if err := f.cl.restart(p); err != nil {
		return err
	}
	return f.cl.setPeersAll()
}

// pause waits d or until ctx ends.
func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
