// Package ratelimit lets an event through at most once per period: for warnings that a fault
// would otherwise write once per request.
package ratelimit

import (
	"sync/atomic"
	"time"
)

// Gate lets the first event through, then at most one per period. The zero value is ready; it is
// safe for concurrent use.
type Gate struct {
	next atomic.Int64 // unix nanoseconds from which the next event passes; 0: the first passes
}

// Pass reports whether an event at now (unix nanoseconds, by any clock the caller keeps to) may
// pass; if so, the next one passes a period later.
func (g *Gate) Pass(now int64, period time.Duration) bool {
	n := g.next.Load()
	if n != 0 && now < n {
		return false
	}
	return g.next.CompareAndSwap(n, now+int64(period))
}
