package wire

import "errors"

// Shorthands of the tests: an error with each status, as a Backend returns one, and ErrClosed for
// the error of a closed Client. matches tells whether an error has the status of one of them.
var (
	ErrNotFound     = &Error{Status: StatusNotFound}
	ErrUnknownCache = &Error{Status: StatusUnknownCache}
	ErrTooLarge     = &Error{Status: StatusTooLarge}
	ErrOverloaded   = &Error{Status: StatusOverloaded}
	ErrInternal     = &Error{Status: StatusInternal}
	ErrBadRequest   = &Error{Status: StatusBadRequest}
	ErrVersion      = &Error{Status: StatusBadVersion}
	ErrClosed       = errUnavailable
)

// matches reports whether err has want's status (for a shorthand above) or matches want.
func matches(err, want error) bool {
	var w *Error
	if errors.As(want, &w) && w.Status != StatusOK {
		return StatusOf(err) == w.Status
	}
	return errors.Is(err, want)
}
