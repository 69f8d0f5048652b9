package discovery

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/typedcache/groupcache"
)

// Defaults of Run's options.
const (
	// DefaultDebounce is how long a source must stay quiet before Run applies its latest set.
	DefaultDebounce = 500 * time.Millisecond
	// DefaultMaxDelay bounds how long a change waits for a quiet source.
	DefaultMaxDelay = 5 * time.Second
	// DefaultBackoffMin and DefaultBackoffMax bound the wait before Run starts a failed Watch again.
	DefaultBackoffMin = time.Second
	DefaultBackoffMax = 30 * time.Second
	// DefaultStopTimeout is how long Run waits, once its context has ended, for Watch to return.
	DefaultStopTimeout = 5 * time.Second
)

// Option configures Run and NewRunner.
type Option interface {
	apply(*settings) error
}

type optionFunc func(*settings) error

func (f optionFunc) apply(s *settings) error { return f(s) }

type settings struct {
	logger      *slog.Logger
	debounce    time.Duration
	maxDelay    time.Duration
	backoffMin  time.Duration
	backoffMax  time.Duration
	stopTimeout time.Duration
	onApply     func(peers []string, err error)
}

func defaultSettings() settings {
	return settings{
		logger:      slog.Default(),
		debounce:    DefaultDebounce,
		maxDelay:    DefaultMaxDelay,
		backoffMin:  DefaultBackoffMin,
		backoffMax:  DefaultBackoffMax,
		stopTimeout: DefaultStopTimeout,
	}
}

// invalid returns an error wrapping groupcache.ErrInvalidOption for a bad argument of option.
func invalid(option, format string, args ...any) error {
	return fmt.Errorf("%w: discovery: %s: %s", groupcache.ErrInvalidOption, option, fmt.Sprintf(format, args...))
}

// WithLogger sets the logger for peer-set changes (Info), rejected updates, dropped addresses and
// source failures (Warn), and SetPeers failures or a Watch that outlives Run (Error). Default
// slog.Default(); nil is refused.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(s *settings) error {
		if l == nil {
			return invalid("WithLogger", "nil logger")
		}
		s.logger = l
		return nil
	})
}

// WithDebounce sets the quiet window: a changed peer set is applied once the source has sent
// nothing for d (each update restarts the window), so a burst of changes costs one SetPeers.
// Default DefaultDebounce (500 ms); range d >= 0, where 0 applies every change at once. The first
// good set of a Run is always applied at once. A window longer than the max delay (WithMaxDelay)
// makes the max delay the effective wait.
func WithDebounce(d time.Duration) Option {
	return optionFunc(func(s *settings) error {
		if d < 0 {
			return invalid("WithDebounce", "%v is negative", d)
		}
		s.debounce = d
		return nil
	})
}

// WithMaxDelay bounds how long a change can wait for the source to go quiet: the latest set is
// applied at most d after the first change not yet applied, however often the source keeps
// sending. A source that never stops changing thus costs at most one SetPeers per d. Default
// DefaultMaxDelay (5 s); range d > 0.
func WithMaxDelay(d time.Duration) Option {
	return optionFunc(func(s *settings) error {
		if d <= 0 {
			return invalid("WithMaxDelay", "%v is not positive", d)
		}
		s.maxDelay = d
		return nil
	})
}

// WithBackoff sets the wait before Run starts a Watch again after it returned before the context
// ended. The first restart waits min; each further consecutive failure doubles the bound d (up to
// max) and waits a random duration in [max(min, d/2), d], so that nodes that failed together do
// not retry together. A Watch that ran for at least max before failing resets the sequence.
// Default DefaultBackoffMin (1 s) and DefaultBackoffMax (30 s); range 0 < min <= max.
func WithBackoff(min, max time.Duration) Option {
	return optionFunc(func(s *settings) error {
		if min <= 0 || max < min {
			return invalid("WithBackoff", "min %v, max %v: want 0 < min <= max", min, max)
		}
		s.backoffMin, s.backoffMax = min, max
		return nil
	})
}

// WithStopTimeout sets how long Run waits, once its context has ended, for Watch to return. A
// Watch that ignores its context is abandoned after d: Run logs it and returns, and the goroutine
// running Watch stays until Watch returns (it is then logged too). Updates such a Watch sends in
// the meantime are discarded while Run waits, and block it afterwards unless it selects on its
// context as Source requires. Default DefaultStopTimeout (5 s); range d >= 0.
func WithStopTimeout(d time.Duration) Option {
	return optionFunc(func(s *settings) error {
		if d < 0 {
			return invalid("WithStopTimeout", "%v is negative", d)
		}
		s.stopTimeout = d
		return nil
	})
}

// WithOnApply sets a function called after each SetPeers Run makes, with the set it passed (a
// copy the function may keep) and SetPeers' error. It runs on Run's goroutine and delays the next
// update while it runs, so it must be quick; it suits metrics, tests and readiness signals.
// Default none; nil means none.
func WithOnApply(f func(peers []string, err error)) Option {
	return optionFunc(func(s *settings) error {
		s.onApply = f
		return nil
	})
}
