package fill

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/typedcache/groupcache/internal/deadline"
)

// timeoutError is the timeout error of a group made with a nil one: it matches
// context.DeadlineExceeded.
type timeoutError struct{}

func (timeoutError) Error() string { return "fill: load timed out" }

// Is reports whether target is context.DeadlineExceeded.
func (timeoutError) Is(target error) bool { return target == context.DeadlineExceeded }

// Timeout reports true, so the error also satisfies the net.Error-style Timeout check.
func (timeoutError) Timeout() bool { return true }

// errGoexit is returned to the waiters of a load whose function called runtime.Goexit (for
// example t.FailNow inside a test's load function) instead of returning.
var errGoexit = errors.New("fill: load function called runtime.Goexit")

// PanicError is returned to every caller waiting for a load when the load function panicked. The
// panic is recovered in the load's goroutine, so the process keeps running.
type PanicError struct {
	// Value is what was passed to panic.
	Value any
	// Stack is the stack of the panicking goroutine, as printed by runtime/debug.Stack.
	Stack []byte
}

// Error returns one line with the panic value; the stack is in Stack.
func (e *PanicError) Error() string {
	return fmt.Sprintf("fill: load panicked: %v", e.Value)
}

// Unwrap returns the panic value when it is an error, so errors.Is and errors.As see through it.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// Group deduplicates concurrent loads of the same key. Create one with New; the zero value also
// works and has no timeout.
//
// A Group must not be copied after first use.
type Group[K comparable, V any] struct {
	timeout    time.Duration // read-only after New
	timeoutErr error         // read-only after New; nil means timeoutError{}

	mu      sync.Mutex
	flights map[K]*flight[V] // guarded by mu; the loads new callers of a key join
	running int              // guarded by mu; load functions that have not returned yet
}

// flight is one load of one key: one goroutine running the load function, and the callers
// waiting for its result.
type flight[V any] struct {
	// Set before the flight is published in Group.flights, then read-only.
	ctx    context.Context    // the load's detached context
	cancel context.CancelFunc // cancels ctx
	// done is ctx.Done(). It is closed when the load has finished (after finished is set), when
	// the group's timeout passes, or when the last waiter has left.
	done <-chan struct{}

	// Written by the load goroutine before it sets finished; read by waiters after they see
	// finished set.
	val      V
	err      error
	finished atomic.Bool
	// Flights with a plain done channel (DoHere's and DoMany's) only: the flight has finished,
	// so done is closed or about to be. DoMany's flights set it under Group.mu.
	closed atomic.Bool

	waiters int // guarded by Group.mu; callers still waiting for this flight

	// A flight run by its caller (DoHere) keeps its context and channel here, so that starting
	// one costs one allocation besides the channel; cancel is nil then.
	here   deadline.Context
	hereCh chan struct{}
}

// release closes done: by cancelling the flight's context, or for a flight run by its caller
// (whose context has no Done channel) by closing its channel once.
func (f *flight[V]) release() {
	if f.hereCh == nil {
		f.cancel()
		return
	}
	if f.closed.CompareAndSwap(false, true) {
		close(f.hereCh)
	}
}

// New returns a Group whose loads run with the given timeout (0 = no timeout). timeoutErr is the
// error the callers of a load get when the timeout passes; it should match
// context.DeadlineExceeded. nil means an error of this package that matches it.
func New[K comparable, V any](timeout time.Duration, timeoutErr error) *Group[K, V] {
	if timeout < 0 {
		timeout = 0
	}
	return &Group[K, V]{timeout: timeout, timeoutErr: timeoutErr, flights: make(map[K]*flight[V])}
}

// errTimeout returns the error the callers of a load that ran past the timeout get.
func (g *Group[K, V]) errTimeout() error {
	if g.timeoutErr == nil {
		return timeoutError{}
	}
	return g.timeoutErr
}

// Do runs fn once for all concurrent callers of key and returns its result to each of them.
// shared reports whether this caller got the result of a load started by another caller (a
// deduplicated waiter); the caller that started the load gets shared == false.
//
// fn runs in its own goroutine with a context detached from the ctx of the caller that started
// the load (context.WithoutCancel): it carries that ctx's values, but not its deadline or
// cancellation. Instead it ends when the group's timeout passes, when every caller waiting for the
// load has gone away, or after fn has returned. Only the starter's fn runs; the fn of a caller that
// joins a running load is ignored.
//
// Do returns early in three cases, while fn may still be running:
//   - ctx ends: Do returns ctx.Err(). The load goes on for the other waiters; when the last
//     waiter leaves, the load's context is cancelled and the key is forgotten, so the next Do
//     starts a new load.
//   - the group's timeout passes: every waiter gets the group's timeout error (see New), and the
//     key is forgotten.
//   - ctx has already ended when Do is called: Do returns ctx.Err() without starting a load.
//
// If fn ignores its context, its goroutine runs until fn returns; the result is then dropped.
//
// If fn panics, every waiter gets a *PanicError; if it calls runtime.Goexit (t.FailNow in a test),
// every waiter gets an error saying so. Results are not cached: the key is forgotten
// before the waiters are released, so a Do issued after another Do of the same key returned
// always starts or joins a newer load.
func (g *Group[K, V]) Do(ctx context.Context, key K, fn func(ctx context.Context) (V, error)) (v V, err error, shared bool) {
	for {
		if cerr := ctx.Err(); cerr != nil {
			return v, cerr, shared
		}
		g.mu.Lock()
		f, joined := g.flights[key]
		if joined {
			f.waiters++
			g.mu.Unlock()
		} else {
			f = g.begin(ctx, key)
			g.mu.Unlock()
			go g.run(key, f, fn)
		}
		shared = shared || joined
		if v, err, _ = g.wait(ctx, key, f, joined); err != errStarterLeft {
			return v, err, shared
		}
		// The DoLent flight joined lost its starter: start or join a newer one.
	}
}

// DoHere is Do, except that when ctx can never end (its Done channel is nil, as for
// context.Background) and no load of key is in flight, fn runs in the calling goroutine instead of
// a new one. Such a caller could not leave early anyway, so nothing is lost, and a load saves a
// goroutine, two hand-offs between goroutines and a timer, which is most of the cost of a fast
// load such as a request to another process. Other callers of key join and wait as with Do.
//
// fn's context then carries the group's timeout as its deadline but has no Done channel (no timer
// is armed): fn must honour ctx.Deadline, as network calls do by setting it on their connection,
// or run anything that may block past it under a context of its own made with
// context.WithDeadline. The caller and the callers that joined get fn's result when fn returns;
// one that fails with context.DeadlineExceeded after the deadline is reported as the group's
// timeout error. Use
// Do for functions that may ignore their deadline.
func (g *Group[K, V]) DoHere(ctx context.Context, key K, fn func(ctx context.Context) (V, error)) (v V, err error, shared bool) {
	if ctx.Done() != nil {
		return g.Do(ctx, key, fn)
	}
	g.mu.Lock()
	f, shared := g.flights[key]
	if shared {
		f.waiters++
		g.mu.Unlock()
		if v, err, _ = g.wait(ctx, key, f, true); err != errStarterLeft {
			return v, err, true
		}
		// The DoLent flight joined lost its starter: start or join a newer one.
		v, err, _ = g.DoHere(ctx, key, fn)
		return v, err, true
	}
	f = g.beginHere(ctx, key)
	g.mu.Unlock()
	g.run(key, f, fn)
	return f.val, f.err, false
}

// beginHere starts and registers a flight run by its caller, whose ctx can never end; g.mu must
// be held. Its context carries the group's deadline but no timer: nothing but the deadline can
// end it, fn (which must honour its context) sees the deadline, and done is closed when fn
// returns. This spares a detached context, a timer and their allocations per load.
func (g *Group[K, V]) beginHere(ctx context.Context, key K) *flight[V] {
	done := make(chan struct{})
	f := &flight[V]{waiters: 1, ctx: ctx, done: done, hereCh: done}
	if g.timeout > 0 {
		f.here = deadline.Context{Context: ctx, At: time.Now().Add(g.timeout)}
		f.ctx = &f.here
	}
	if g.flights == nil {
		g.flights = make(map[K]*flight[V])
	}
	g.flights[key] = f
	g.running++
	return f
}

// begin starts a flight for key and registers it; g.mu must be held.
func (g *Group[K, V]) begin(ctx context.Context, key K) *flight[V] {
	f := g.start(ctx)
	if g.flights == nil {
		g.flights = make(map[K]*flight[V])
	}
	g.flights[key] = f
	g.running++
	return f
}

// wait waits for the result of f, for the end of ctx, or for the group's timeout.
func (g *Group[K, V]) wait(ctx context.Context, key K, f *flight[V], shared bool) (v V, err error, _ bool) {
	select {
	case <-f.done:
		if f.finished.Load() {
			return f.val, f.err, shared
		}
		// The load's context ended before the load did. It was not abandoned, as this caller
		// still waits for it, so the group's timeout has passed.
		g.mu.Lock()
		g.forget(key, f)
		g.mu.Unlock()
		return v, g.errTimeout(), shared

	case <-ctx.Done():
		if f.finished.Load() {
			// Prefer a result that is already there.
			return f.val, f.err, shared
		}
		g.leave(key, f)
		return v, ctx.Err(), shared
	}
}

// start returns a new flight with one waiter and its detached context.
func (g *Group[K, V]) start(ctx context.Context) *flight[V] {
	f := &flight[V]{waiters: 1}
	detached := context.WithoutCancel(ctx)
	if g.timeout > 0 {
		f.ctx, f.cancel = context.WithTimeout(detached, g.timeout)
	} else {
		f.ctx, f.cancel = context.WithCancel(detached)
	}
	f.done = f.ctx.Done()
	return f
}

// run calls fn and publishes its result to the waiters of f.
func (g *Group[K, V]) run(key K, f *flight[V], fn func(ctx context.Context) (V, error)) {
	returned := false
	defer func() {
		if !returned {
			// fn panicked or called runtime.Goexit; recover tells the two apart.
			if r := recover(); r != nil {
				f.err = &PanicError{Value: r, Stack: debug.Stack()}
			} else {
				f.err = errGoexit
			}
		}
		g.finish(key, f)
	}()
	f.val, f.err = fn(f.ctx)
	returned = true
}

// finish forgets f, then publishes its result to the waiters and releases its context.
func (g *Group[K, V]) finish(key K, f *flight[V]) {
	if f.err != nil {
		f.err = g.asTimeout(f.ctx, f.err)
	}
	g.mu.Lock()
	g.forget(key, f)
	g.running--
	g.mu.Unlock()
	f.finished.Store(true)
	f.release() // closes done: wakes the waiters
}

// asTimeout returns err, the non-nil error of a load whose context is ctx, as the group's timeout
// error if the load gave up because the group's timeout passed.
func (g *Group[K, V]) asTimeout(ctx context.Context, err error) error {
	te := g.errTimeout()
	if ctx.Err() == context.DeadlineExceeded && errors.Is(err, context.DeadlineExceeded) &&
		!errors.Is(err, te) {
		return te
	}
	return err
}

// leave removes one waiter from f. The last waiter to leave cancels the load and forgets it, so
// that a later Do does not join a load nobody waits for any more.
func (g *Group[K, V]) leave(key K, f *flight[V]) {
	g.mu.Lock()
	f.waiters--
	// A closed flight (DoHere's or DoMany's) has finished and been forgotten: nothing to cancel.
	last := f.waiters == 0 && !f.closed.Load()
	if last {
		g.forget(key, f)
	}
	g.mu.Unlock()
	if last {
		f.release()
	}
}

// forget removes f from the map if it is still the flight of key; a newer flight of the same key
// is left alone. g.mu must be held.
func (g *Group[K, V]) forget(key K, f *flight[V]) {
	if g.flights[key] == f {
		delete(g.flights, key)
	}
}

// Forget makes the next Do of key start a new load, even if one is in flight. Callers already
// waiting for the old load keep waiting for it.
func (g *Group[K, V]) Forget(key K) {
	g.mu.Lock()
	delete(g.flights, key)
	g.mu.Unlock()
}

// ForgetAll is Forget for every key in flight.
func (g *Group[K, V]) ForgetAll() {
	g.mu.Lock()
	clear(g.flights)
	g.mu.Unlock()
}

// InFlight reports how many load functions are running: started and not yet returned. It counts
// loads that were abandoned (every waiter left, or the timeout passed) but whose function has
// not returned yet, so it may be larger than the number of keys being loaded. A DoMany batch
// counts as one function, however many keys it loads, until its function returns (which may be
// after DoMany has returned, if the function set every key before returning).
func (g *Group[K, V]) InFlight() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.running
}

// waiting reports how many callers wait for the current flight of key (0 if there is none). It
// is used by tests to synchronise with callers joining a flight.
func (g *Group[K, V]) waiting(key K) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if f, ok := g.flights[key]; ok {
		return f.waiters
	}
	return 0
}

// errStarterLeft is what the callers that joined a DoLent flight get when the caller that ran it
// left (its ctx ended) before it had a result; they try again.
var errStarterLeft = errors.New("fill: the caller running the load left")

// DoLent runs fn once for the concurrent callers of key, in the goroutine of the caller that
// starts the flight (as DoHere does), for callers that are lent their value rather than given it.
// fn returns v, which may share memory that the starting caller reuses once it is done with v,
// and own, which returns v in memory of its own (nil when v is in memory of its own already).
// Callers that joined the flight get own's result, computed once by the starting caller before
// they are released; the starting caller gets v itself, and ran reports which one a caller is
// (ran: v, or err, is the one its own fn returned; otherwise it joined another caller's flight).
// A caller of Do, DoHere or DoMany may join a DoLent flight and the other way round.
//
// fn runs with the starting caller's ctx, which may end: fn must then return promptly. The
// group's timeout does not apply to it (fn bounds itself). Callers that joined a flight whose
// starter left (fn failed after the starter's ctx ended) try again: they start or join a newer
// flight. A panic in fn reaches every caller as a *PanicError.
func (g *Group[K, V]) DoLent(ctx context.Context, key K, fn func(ctx context.Context) (v V, own func() (V, error), err error)) (v V, err error, ran bool) {
	for retry := false; ; retry = true {
		if cerr := ctx.Err(); retry && cerr != nil {
			return v, cerr, false
		}
		g.mu.Lock()
		if f, ok := g.flights[key]; ok {
			f.waiters++
			g.mu.Unlock()
			v, err, _ = g.wait(ctx, key, f, true)
			if err == errStarterLeft {
				continue
			}
			return v, err, false
		}
		ch := make(chan struct{})
		f := &flight[V]{waiters: 1, ctx: ctx, done: ch, hereCh: ch}
		if g.flights == nil {
			g.flights = make(map[K]*flight[V])
		}
		g.flights[key] = f
		g.running++
		g.mu.Unlock()
		v, err = g.runLent(ctx, key, f, fn)
		return v, err, true
	}
}

// ownCopy calls own, turning a panic into a *PanicError for the callers waiting for its result.
func (g *Group[K, V]) ownCopy(own func() (V, error)) (v V, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	return own()
}

// runLent runs fn for the starter of a DoLent flight and publishes to the callers that joined
// it what they get: own's result, or fn's error (errStarterLeft if the starter's ctx ended).
func (g *Group[K, V]) runLent(ctx context.Context, key K, f *flight[V], fn func(ctx context.Context) (V, func() (V, error), error)) (v V, err error) {
	returned := false
	var own func() (V, error)
	defer func() {
		if !returned {
			// fn panicked or called runtime.Goexit; recover tells the two apart.
			if r := recover(); r != nil {
				err = &PanicError{Value: r, Stack: debug.Stack()}
			} else {
				err = errGoexit
			}
		}
		g.mu.Lock()
		g.forget(key, f)
		g.running--
		joined := f.waiters > 1
		g.mu.Unlock()
		f.val, f.err = v, err
		switch {
		case err != nil && ctx.Err() != nil:
			f.err = errStarterLeft
		case err == nil && joined && own != nil:
			f.val, f.err = g.ownCopy(own)
		}
		f.finished.Store(true)
		f.release() // closes done: wakes the callers that joined
	}()
	v, own, err = fn(ctx)
	returned = true
	return v, err
}
