// Package deadline has a context that only a deadline ends and that arms no timer, for code
// whose context can never end otherwise (its Done channel is nil) and that calls functions which
// honour deadlines, as network calls do by setting them on their connection.
package deadline

import (
	"context"
	"time"
)

// Context is Parent with At as its deadline. It has no Done channel of its own: it must wrap a
// context whose Done is nil, and be passed only to functions that honour Deadline. Err reports
// context.DeadlineExceeded once At has passed.
type Context struct {
	context.Context // the parent; can never end
	At              time.Time
}

// Deadline returns At.
func (c Context) Deadline() (time.Time, bool) { return c.At, true }

// Err returns context.DeadlineExceeded once At has passed, nil before.
func (c Context) Err() error {
	if !time.Now().Before(c.At) {
		return context.DeadlineExceeded
	}
	return nil
}
