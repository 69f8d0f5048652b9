//go:build linux

package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Operations of the workload, as counted in the report.
const (
	opGet = iota
	opGetMany
	opSet
	opRemove
	opClear
	numOps
)

var opNames = [numOps]string{"Get", "GetMany", "Set", "Remove", "Clear"}

// counts is what the workload counts; each worker has its own, merged at the end.
type counts struct {
	ops      [numOps]int64
	errs     [numOps]map[string]int64 // by kind
	lat      [numOps]histogram
	keys     int64 // values checked (a GetMany checks several)
	wrong    int64
	stale    int64 // stale within the contract's window
	aborted  int64 // operations on a node killed or stopped under them: no answer
	examples []string
}

func newCounts() *counts {
	c := &counts{}
	for i := range c.errs {
		c.errs[i] = map[string]int64{}
	}
	return c
}

func (c *counts) merge(o *counts) {
	for i := range numOps {
		c.ops[i] += o.ops[i]
		for k, n := range o.errs[i] {
			c.errs[i][k] += n
		}
		c.lat[i].merge(&o.lat[i])
	}
	c.keys += o.keys
	c.wrong += o.wrong
	c.stale += o.stale
	c.aborted += o.aborted
	if len(c.examples) < 10 {
		c.examples = append(c.examples, o.examples...)
	}
}

// getErrors returns the errors of Get and GetMany.
func (c *counts) getErrors() int64 {
	var n int64
	for _, op := range []int{opGet, opGetMany} {
		for _, e := range c.errs[op] {
			n += e
		}
	}
	return n
}

// worker runs operations through the nodes that are up, until ctx ends.
type worker struct {
	cl  *cluster
	o   *oracle
	rng *rand.Rand
	cnt *counts
}

func (w *worker) run(ctx context.Context) {
	for ctx.Err() == nil {
		p, inc := w.cl.pickUp(w.rng.IntN)
		if p == nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		c := w.rng.IntN(len(cacheNames))
		switch x := w.rng.IntN(100); {
		case x < 55:
			w.get(p, inc, c, []int{w.key()}, opGet)
		case x < 70:
			w.get(p, inc, c, w.keys(2+w.rng.IntN(7)), opGetMany)
		case x < 85:
			w.set(p, inc, c)
		default:
			w.remove(p, inc, c)
		}
	}
}

// key returns a key: one of the first tenth of the keys four times in five, so that some keys are
// asked for often enough to be promoted to hot stores.
func (w *worker) key() int {
	keys := w.o.db.keys
	if w.rng.IntN(5) < 4 {
		return w.rng.IntN(max(keys/10, 1))
	}
	return w.rng.IntN(keys)
}

// keys returns n keys, distinct but for the last, which repeats another one time in four.
func (w *worker) keys(n int) []int {
	var ks []int
	for len(ks) < n {
		if k := w.key(); !slices.Contains(ks, k) {
			ks = append(ks, k)
		}
	}
	if w.rng.IntN(4) == 0 {
		ks = append(ks, ks[0])
	}
	return ks
}

func keyList(ks []int) string {
	names := make([]string, len(ks))
	for i, k := range ks {
		names[i] = keyName(k)
	}
	return strings.Join(names, ",")
}

// get runs a Get (one key) or a GetMany through p and checks every value against the oracle.
func (w *worker) get(p *proc, inc, c int, ks []int, op int) {
	start := time.Now()
	floors := make([][2]uint64, len(ks))
	for i, k := range ks {
		floors[i][0], floors[i][1] = w.o.floor(c, k, start)
	}
	path := "/get"
	if op == opGetMany {
		path = "/getmany"
	}
	var r reply
	err := w.cl.callProc(p, path, url.Values{"cache": {strconv.Itoa(c)}, "keys": {keyList(ks)}}, &r)
	if w.aborted(p, inc, err, op) {
		return
	}
	w.cnt.lat[op].add(time.Since(start))
	w.cnt.ops[op]++
	if len(r.Values) != len(ks) {
		w.cnt.errs[op]["reply"]++
		return
	}
	rd := read{op: op, p: p, inc: inc, start: start, end: time.Now()}
	for i, k := range ks {
		w.judge(rd, c, k, r.Values[i], r.Kinds[i], r.Errs[i], floors[i])
	}
}

// read is a Get or GetMany, for the explanation of a wrong value.
type read struct {
	op         int
	p          *proc
	inc        int
	start, end time.Time
}

func (w *worker) judge(rd read, c, k int, val, kind, msg string, floor [2]uint64) {
	op := rd.op
	w.cnt.keys++
	if kind != "" {
		w.cnt.errs[op][kind]++
		w.example(fmt.Sprintf("%s %s/%s: error: %s", opNames[op], cacheNames[c], keyName(k), msg))
		return
	}
	switch w.o.check(c, k, val, floor[0], floor[1]) {
	case wrong:
		w.cnt.wrong++
		w.example(fmt.Sprintf("%s %s/%s: WRONG value %.40q: floor %d, latest acknowledged %d, database %d",
			opNames[op], cacheNames[c], keyName(k), val, floor[0], floor[1], w.o.db.version(c, k)))
		w.example(fmt.Sprintf("  read via node %d#%d, %v..%v; writes: %q", rd.p.id, rd.inc, w.o.since(rd.start), w.o.since(rd.end), w.o.explain(c, k)))
	case staleAllowed:
		w.cnt.stale++
	}
}

func (w *worker) example(s string) {
	if len(w.cnt.examples) < 10 {
		w.cnt.examples = append(w.cnt.examples, s)
	}
}

// aborted reports (and counts) an operation that got no answer: its node went down under it. Any
// other failure of the control call is counted as an error of kind "control".
func (w *worker) aborted(p *proc, inc int, err error, op int) bool {
	if err == nil {
		return false
	}
	if !w.cl.sameUp(p, inc) {
		w.cnt.aborted++
		return true
	}
	w.cnt.ops[op]++
	w.cnt.errs[op]["control"]++
	w.example(fmt.Sprintf("%s: control call to node %d: %v", opNames[op], p.id, err))
	return true
}

// set bumps a key's version in the database and Sets the value of that version through p.
func (w *worker) set(p *proc, inc, c int) {
	k := w.key()
	ks := &w.o.keys[c][k]
	ks.w.Lock()
	defer ks.w.Unlock()
	if time.Now().Before(ks.holdUntil) {
		return
	}
	tok := w.o.steady()
	start := time.Now()
	v := w.o.db.bump(c, k)
	q := url.Values{"cache": {strconv.Itoa(c)}, "keys": {keyName(k)}, "value": {value(cacheNames[c], keyName(k), v)}}
	ok, clean := w.write(p, inc, q, opSet, start)
	w.o.note(c, k, fmt.Sprintf("Set(clean=%v)", clean && w.o.stillSteady(tok)), p, inc, v, start, time.Now(), fmt.Sprint(ok))
	if ok {
		w.o.acked(c, k, v, clean && w.o.stillSteady(tok), time.Now())
	} else {
		ks.holdUntil = time.Now().Add(time.Second)
	}
}

// remove bumps the versions of 1 to 3 keys in the database and removes them through p (RemoveMany).
func (w *worker) remove(p *proc, inc, c int) {
	ks := w.keys(1 + w.rng.IntN(3))
	ks = slices.Compact(slices.Sorted(slices.Values(ks))) // locked in order
	for _, k := range ks {
		w.o.keys[c][k].w.Lock()
		defer w.o.keys[c][k].w.Unlock()
		if time.Now().Before(w.o.keys[c][k].holdUntil) {
			return
		}
	}
	tok := w.o.steady()
	start := time.Now()
	vs := make([]uint64, len(ks))
	for i, k := range ks {
		vs[i] = w.o.db.bump(c, k)
	}
	ok, clean := w.write(p, inc, url.Values{"cache": {strconv.Itoa(c)}, "keys": {keyList(ks)}}, opRemove, start)
	now := time.Now()
	for i, k := range ks {
		w.o.note(c, k, fmt.Sprintf("Remove%v(clean=%v)", ks, clean && w.o.stillSteady(tok)), p, inc, vs[i], start, now, fmt.Sprint(ok))
		if ok {
			w.o.acked(c, k, vs[i], clean && w.o.stillSteady(tok), now)
		} else {
			w.o.keys[c][k].holdUntil = now.Add(time.Second)
		}
	}
}

// write calls a write endpoint of p; ok reports that the write took effect on the owner (nil or
// ErrIncomplete), clean that it returned nil.
func (w *worker) write(p *proc, inc int, q url.Values, op int, start time.Time) (ok, clean bool) {
	var r reply
	err := w.cl.callProc(p, opPath(op), q, &r)
	if w.aborted(p, inc, err, op) {
		return false, false
	}
	w.cnt.lat[op].add(time.Since(start))
	w.cnt.ops[op]++
	if r.Kind != "" {
		w.cnt.errs[op][r.Kind]++
	}
	return r.Kind == "" || r.Kind == "incomplete", r.Kind == ""
}

func opPath(op int) string {
	return map[int]string{opSet: "/set", opRemove: "/remove", opClear: "/clear"}[op]
}

// clearer runs a Clear of a random cache through a random node every period, until ctx ends.
func clearer(ctx context.Context, w *worker, period time.Duration, done *sync.WaitGroup) {
	defer done.Done()
	every(ctx, period, func() {
		p, inc := w.cl.pickUp(w.rng.IntN)
		if p == nil {
			return
		}
		c := w.rng.IntN(len(cacheNames))
		tok := w.o.steady()
		start := time.Now()
		snap := w.o.db.snapshot(c)
		ok, clean := w.write(p, inc, url.Values{"cache": {strconv.Itoa(c)}}, opClear, start)
		if ok {
			w.o.cleared(c, snap, clean && w.o.stillSteady(tok), time.Now())
		}
	})
}
