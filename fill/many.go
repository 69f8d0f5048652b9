package fill

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"sync/atomic"
)

// errNoResult is the error DoMany reports for a key its batch function returned without setting.
var errNoResult = errors.New("fill: batch function returned no result for the key")

// Result is the outcome of one key of DoMany.
type Result[V any] struct {
	Val V
	Err error
	// Shared reports that the key was joined: its load was started by another caller (Do,
	// DoHere or another DoMany).
	Shared bool
}

// DoMany is Do for several distinct keys at once. It returns one Result per key, in the order of
// keys; with no keys it returns nil without calling fn.
//
// A key already being loaded (by Do, DoHere or another DoMany) is joined, as Do would, and gets
// Shared == true. The other keys are claimed: DoMany registers a load of each, so that callers of
// those keys arriving meanwhile (Do, DoHere or DoMany) join it, and calls fn once, in a goroutine
// of its own, with the claimed keys in the order they appear in keys. fn is not called if every
// key was joined. fn must not modify its keys slice, which is DoMany's own copy.
//
// fn reports the result of its i-th key (an index into the slice fn was given, not into keys) by
// calling set(i, v, err). set may be called from any goroutine, concurrently, until fn returns;
// each key's waiters are released as soon as its set is called, so a fast key need not wait for a
// slow one. Only the first set of an index counts: later ones, and any set after fn has returned,
// after the group's timeout or after every caller of the key has gone away, are ignored. set
// panics if i is out of range. When fn returns, every claimed key it did not set gets an error
// saying so; if fn panics they get a *PanicError (already set keys keep their results), and if
// it calls runtime.Goexit an error saying so.
//
// fn's context is detached from ctx as Do's is: it keeps ctx's values but not its deadline or
// cancellation, and carries the group's timeout. One context, with one timer, serves the whole
// batch. It is cancelled when fn returns, when the timeout passes (the keys fn has not set by then
// get the group's timeout error), or when no claimed key is left
// that fn has not set and that somebody still waits for, and at least one was given up by all
// its callers. A key given up by all its callers is forgotten at once, so the next Do of it starts
// a new load, while fn's other keys go on for the callers still waiting for them.
//
// If ctx ends, DoMany returns at once: the keys whose results are there keep them, the others get
// ctx.Err(); the loads go on for their other waiters. If ctx has already ended when DoMany is
// called, every key gets ctx.Err() and nothing is loaded or joined.
//
// keys should be distinct. A key repeated in keys is loaded (or joined) once, and every
// occurrence gets the same Result.
//
// As with Do, nothing is cached: each key is forgotten before its waiters are released. While fn
// runs, InFlight counts the batch as one running function, whatever its number of keys.
func (g *Group[K, V]) DoMany(ctx context.Context, keys []K, fn func(ctx context.Context, keys []K, set func(i int, v V, err error))) []Result[V] {
	if len(keys) == 0 {
		return nil
	}
	res := make([]Result[V], len(keys))
	if err := ctx.Err(); err != nil {
		for i := range res {
			res[i].Err = err
		}
		return res
	}
	fs, b := g.claimMany(ctx, keys, res)
	if b != nil {
		go b.run(fn, slices.Clone(b.keys))
		// The caller waits for all the keys of its batch at once, so that it is woken once
		// rather than by each set.
		select {
		case <-b.all:
		case <-ctx.Done():
		}
	}
	var again []int // keys whose DoLent flight lost its starter
	for i, f := range fs {
		if res[i].Shared {
			res[i].Val, res[i].Err, _ = g.wait(ctx, keys[i], f, true)
			if res[i].Err == errStarterLeft {
				again = append(again, i)
			}
			continue
		}
		// A key of this call's batch: finished, unless ctx has ended.
		if f.finished.Load() {
			res[i].Val, res[i].Err = f.val, f.err
		} else {
			g.leave(keys[i], f)
			res[i].Err = ctx.Err()
		}
	}
	if len(again) > 0 {
		g.retryMany(ctx, keys, again, res, fn)
	}
	return res
}

// claimMany joins the flights of keys that have one (marking their results Shared) and claims
// the others in a new batch, nil when every key was joined. It returns the flight each key waits
// for.
func (g *Group[K, V]) claimMany(ctx context.Context, keys []K, res []Result[V]) ([]*flight[V], *batch[K, V]) {
	fs := make([]*flight[V], len(keys))
	var b *batch[K, V]
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.flights == nil {
		g.flights = make(map[K]*flight[V])
	}
	for i, key := range keys {
		if f, ok := g.flights[key]; ok {
			f.waiters++
			fs[i] = f
			// A repeated key joins the flight this call claimed for its first occurrence.
			res[i].Shared = b == nil || f.ctx != b.ctx
			continue
		}
		if b == nil {
			b = g.newBatch(ctx, len(keys)-i)
		}
		fs[i] = b.claim(key)
	}
	if b != nil {
		b.live.Store(int32(len(b.keys)))
		g.running++
	}
	return fs, b
}

// retryMany starts or joins newer flights for the keys again of keys, whose DoLent flight lost
// its starter, and puts their results in res.
func (g *Group[K, V]) retryMany(ctx context.Context, keys []K, again []int, res []Result[V], fn func(ctx context.Context, keys []K, set func(i int, v V, err error))) {
	retry := make([]K, len(again))
	for j, i := range again {
		retry[j] = keys[i]
	}
	for j, r := range g.DoMany(ctx, retry, fn) {
		res[again[j]].Val, res[again[j]].Err = r.Val, r.Err
	}
}

// batch is the run of one DoMany call's function: the flights of the keys that call claimed,
// which share one detached context and one timer.
//
// A claimed key's flight has a plain done channel, which is closed once the flight is finished.
// Its closed flag, set under Group.mu, says that it is finished or being finished: a key is
// finished once only, by set, by fn returning or by the timeout, and never after all its waiters
// have left (waiters == 0, which only happens to a flight nobody finished). Each claimed key
// leaves live once: when it is finished, or when its last waiter leaves it unfinished.
type batch[K comparable, V any] struct {
	g       *Group[K, V]
	ctx     context.Context    // fn's context; the ctx of every flight of the batch
	cancel  context.CancelFunc // cancels ctx
	stop    func() bool        // unregisters expire from ctx (nil without a timeout)
	abandon func()             // b.keyAbandoned, the cancel of every flight of the batch
	all     chan struct{}      // closed when live reaches 0

	// Appended to under Group.mu while DoMany registers the flights, then read-only.
	keys    []K             // the claimed keys; flights[j] is the flight of keys[j]
	flights []flight[V]     // allocated once with the capacity of all keys, never moved
	done    []chan struct{} // done[j] is flights[j].done, which finish closes

	live       atomic.Int32 // claimed keys neither finished nor given up by all their waiters
	wasAbandon atomic.Bool  // some claimed key was given up by all its waiters
}

// newBatch returns a batch for at most n keys, with its context; g.mu must be held.
func (g *Group[K, V]) newBatch(ctx context.Context, n int) *batch[K, V] {
	b := &batch[K, V]{
		g:       g,
		keys:    make([]K, 0, n),
		flights: make([]flight[V], 0, n),
		done:    make([]chan struct{}, 0, n),
		all:     make(chan struct{}),
	}
	b.abandon = b.keyAbandoned
	detached := context.WithoutCancel(ctx)
	if g.timeout > 0 {
		b.ctx, b.cancel = context.WithTimeout(detached, g.timeout)
		// Called when the deadline passes. Every other end of ctx unregisters it first.
		b.stop = context.AfterFunc(b.ctx, b.expire)
	} else {
		b.ctx, b.cancel = context.WithCancel(detached)
	}
	return b
}

// claim registers the flight of key in b; g.mu must be held and key must have no flight.
func (b *batch[K, V]) claim(key K) *flight[V] {
	j := len(b.keys)
	done := make(chan struct{})
	b.keys = append(b.keys, key)
	b.done = append(b.done, done)
	b.flights = b.flights[:j+1] // within capacity: earlier flights do not move
	f := &b.flights[j]
	f.ctx, f.cancel, f.done, f.waiters = b.ctx, b.abandon, done, 1
	b.g.flights[key] = f
	return f
}

// run calls fn, then finishes the keys it did not set and ends the batch.
func (b *batch[K, V]) run(fn func(ctx context.Context, keys []K, set func(i int, v V, err error)), keys []K) {
	returned := false
	defer func() {
		err := errNoResult
		if !returned {
			// fn panicked or called runtime.Goexit; recover tells the two apart.
			if r := recover(); r != nil {
				err = &PanicError{Value: r, Stack: debug.Stack()}
			} else {
				err = errGoexit
			}
		}
		b.finishRest(err, true)
	}()
	fn(b.ctx, keys, b.set)
	returned = true
}

// set finishes claimed key i with v and err, unless it is finished or given up already.
func (b *batch[K, V]) set(i int, v V, err error) {
	if i < 0 || i >= len(b.keys) {
		panic(fmt.Sprintf("fill: DoMany: set(%d, ...) with %d keys", i, len(b.keys)))
	}
	g, f := b.g, &b.flights[i]
	g.mu.Lock()
	if f.closed.Load() || f.waiters == 0 {
		g.mu.Unlock()
		return
	}
	f.closed.Store(true)
	g.forget(b.keys[i], f)
	g.mu.Unlock()

	if err != nil {
		err = g.asTimeout(b.ctx, err)
	}
	f.val, f.err = v, err
	f.finished.Store(true)
	close(b.done[i])
	b.drop(1)
}

// keyAbandoned is the cancel function of the batch's flights, called by Group.leave when the last
// waiter of a flight that is not finished leaves. When it was the last key still wanted, ctx is
// cancelled.
func (b *batch[K, V]) keyAbandoned() {
	b.wasAbandon.Store(true)
	b.drop(1)
}

// drop takes n > 0 claimed keys out of live, finished or abandoned. When no key is left, it wakes
// DoMany's caller and, if some key was abandoned, cancels ctx: nobody waits for anything fn could
// still deliver.
func (b *batch[K, V]) drop(n int32) {
	if b.live.Add(-n) == 0 {
		close(b.all)
		if b.wasAbandon.Load() {
			b.end()
		}
	}
}

// expire finishes the keys still unfinished when ctx's deadline passes.
func (b *batch[K, V]) expire() {
	b.finishRest(b.g.errTimeout(), false)
}

// finishRest finishes every claimed key that is neither finished nor given up with err, counts fn
// out of the group's running functions if it has returned, and ends the batch.
func (b *batch[K, V]) finishRest(err error, returned bool) {
	g := b.g
	n := int32(0)
	g.mu.Lock()
	if returned {
		g.running--
	}
	for j := range b.flights {
		f := &b.flights[j]
		if f.closed.Load() || f.waiters == 0 {
			continue
		}
		f.closed.Store(true)
		g.forget(b.keys[j], f)
		f.err = err
		f.finished.Store(true)
		close(b.done[j])
		n++
	}
	g.mu.Unlock()
	if n > 0 {
		b.drop(n)
	}
	b.end()
}

// end cancels the batch's context, after unregistering expire from it.
func (b *batch[K, V]) end() {
	if b.stop != nil {
		b.stop()
	}
	b.cancel()
}
