// Package fill is a typed single-flight: concurrent misses of one key run the load function
// once, and every caller waiting for that key gets its result.
//
//	g := fill.New[string, *User](5*time.Second, nil)
//	u, err, shared := g.Do(ctx, "user:42", func(ctx context.Context) (*User, error) {
//		return db.LoadUser(ctx, 42)
//	})
//
// Nothing is cached: a load is forgotten as soon as it ends, before its waiters are released, so
// a Do issued after another Do of the same key returned starts (or joins) a newer load. Errors
// are therefore never remembered either; the next Do after a failed load tries again. Caching is
// the caller's business: the load function typically checks the cache again, loads, and stores.
//
// # Detached load contexts
//
// The load function runs in a goroutine of its own, with a context made by
// context.WithoutCancel from the context of the caller that started the load. It keeps that
// caller's values (trace IDs and the like) but not its deadline or cancellation: one impatient
// caller must not fail a load that other callers still wait for. The load's context ends when
//
//   - the group's timeout (the first argument of New) passes, or
//   - the last caller waiting for the load has gone away, or
//   - the load function has returned.
//
// A caller whose own context ends gets ctx.Err() from Do at once, while the load goes on for the
// others.
//
// # Abandoned loads
//
// When the last waiting caller leaves, the load's context is cancelled and the load is removed
// from the group at once, not when the load function returns. A load function should stop soon
// after its context is cancelled, but it may not: if the load stayed in the group, a caller
// arriving later would join a load that has been cancelled and would get its error (or wait for a
// function that ignores its context). Removing it means the next caller starts a fresh load with
// a live context. When the old load function finally returns, its result is dropped, and it does
// not disturb a newer load of the same key.
//
// # Timeout
//
// With a timeout, every waiter also watches the load's context. When the timeout passes, all of
// them get the group's timeout error at once (the second argument of New; nil means one of this
// package's that matches context.DeadlineExceeded), even if the load function ignores its context
// and never returns, and the load is removed from the group. The package exports no sentinel
// errors: the caller names its own timeout.
// The goroutine running such a function lives on until the function returns; the group cannot
// stop it. InFlight counts it until then.
//
// # Batches
//
// DoMany loads several keys with one call of a batch function (one SQL query, one request per
// peer) while keeping the single-flight guarantees per key. The keys somebody is already loading
// are joined; the others are registered as loads, one per key, that later Do, DoHere and DoMany
// callers of those keys join, and are passed together to the batch function. It reports each
// key with set(i, v, err), which releases that key's waiters at once, so a key found early does
// not wait for the slowest one. The batch shares one detached context and one timer; a key whose
// callers all went away is forgotten on its own while the batch goes on for the other keys.
//
//	res := g.DoMany(ctx, ids, func(ctx context.Context, ids []int, set func(int, *User, error)) {
//		users, err := db.LoadUsers(ctx, ids) // one query; ids are the keys nobody else was loading
//		for i, id := range ids {
//			set(i, users[id], err)
//		}
//	})
//
// # Lent values
//
// DoLent serves callers that are lent their value, to use before they return, rather than given
// it: the function runs in the goroutine of the caller that starts the flight and may return a
// value in memory that caller reuses afterwards (a buffer from a pool), together with a function
// that makes a copy of its own. Callers that joined the flight share one such copy, made once
// before they are released; the starter, alone in the common case, copies nothing. Since the
// function runs with the starter's context, a starter that leaves before a result makes the
// callers that joined start (or join) a newer flight instead of failing with its cancellation.
//
// # Panics
//
// A panic in the load function is recovered in the load's goroutine and returned to every waiter
// as a *PanicError holding the panic value and the stack of the panicking goroutine (its message
// is one line). The process keeps running.
package fill
