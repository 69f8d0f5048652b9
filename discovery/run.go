package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/typedcache/groupcache"
)

// maxLoggedAddrs bounds the invalid addresses listed in one log record.
const maxLoggedAddrs = 16

// Stats are the counters of a Runner since NewRunner. Each is read atomically on its own.
type Stats struct {
	// Updates is the number of updates received from the source.
	Updates int64
	// Applied is the number of peer sets passed to SetPeers that it accepted.
	Applied int64
	// Rejected is the number of updates that kept the last good set: those with Err set and those
	// without a single valid address.
	Rejected int64
	// Dropped is the number of invalid addresses removed from updates.
	Dropped int64
	// Restarts is the number of times Watch was started again after returning early.
	Restarts int64
	// SetPeersErrors is the number of SetPeers calls that failed.
	SetPeersErrors int64
}

// Runner applies the peer sets of a Source to a Node; Run does the work. Made by NewRunner, it
// differs from the Run function only in that its counters can be read with Stats.
type Runner struct {
	node Node
	self string
	src  Source
	s    settings
	log  *slog.Logger

	running atomic.Bool // set while a Run is in progress

	updates, applied, rejected, dropped, restarts, setPeersErrors atomic.Int64
}

// Run applies the peer sets of src to node until ctx ends, as (*Runner).Run does.
func Run(ctx context.Context, node Node, src Source, opts ...Option) error {
	r, err := NewRunner(node, src, opts...)
	if err != nil {
		return err
	}
	return r.Run(ctx)
}

// NewRunner checks its arguments and options; errors wrap groupcache.ErrInvalidOption. node.Self()
// must be a valid "host:port" address.
func NewRunner(node Node, src Source, opts ...Option) (*Runner, error) {
	if node == nil {
		return nil, invalid("NewRunner", "nil node")
	}
	if src == nil {
		return nil, invalid("NewRunner", "nil source")
	}
	self := node.Self()
	if err := checkAddr(self); err != nil {
		return nil, invalid("NewRunner", "node address %q: %v", self, err)
	}
	s := defaultSettings()
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o.apply(&s); err != nil {
			return nil, err
		}
	}
	log := s.logger
	if str, ok := src.(fmt.Stringer); ok {
		log = log.With(slog.String("source", str.String()))
	}
	return &Runner{node: node, self: self, src: src, s: s, log: log}, nil
}

// Stats returns the runner's counters. It is safe to call at any time.
func (r *Runner) Stats() Stats {
	return Stats{
		Updates:        r.updates.Load(),
		Applied:        r.applied.Load(),
		Rejected:       r.rejected.Load(),
		Dropped:        r.dropped.Load(),
		Restarts:       r.restarts.Load(),
		SetPeersErrors: r.setPeersErrors.Load(),
	}
}

// Run starts the source's Watch on a goroutine of its own and applies the peer sets it reports
// to the node until ctx ends, or until the node is closed if it has a Done method that says so
// (groupcache.Node has), then returns ctx.Err() or context.Canceled (never nil). It returns earlier
// only with the error of a Watch that wraps groupcache.ErrInvalidOption: a misconfigured source is
// not started again. A Runner does one Run at a time: a Run while another Run of r is in progress
// is a bug in the caller, and panics. Once a Run has returned, r can run again; its counters carry
// on.
//
// Each set is checked: addresses that are not "host:port" with a non-empty host (free of spaces
// and control characters) and a decimal port in 1..65535 are dropped (one log record per update lists them), duplicates are removed, the set is
// sorted, and node.Self() is added if missing (logged). An update with Err set, or with no valid
// address, is rejected: the last good set stays (logged and counted). The first good set of a Run
// is applied at once; later changes wait until the source has been quiet for the debounce window
// (WithDebounce), but never longer than the max delay (WithMaxDelay) after the first of them; a
// set equal to the one applied last is not applied again. A set waiting for its window when ctx
// ends is not applied. A SetPeers error is logged and counted, and the node keeps the set it had.
// SetPeers runs on Run's goroutine: Run notices the end of ctx once it has returned.
//
// If Watch returns before ctx ends, whatever it returned, Run logs it and starts it again after a
// back-off (WithBackoff); the node keeps its set meanwhile. A source that blocks without sending
// leaves the node as it is. When ctx ends Run cancels Watch's context and waits for Watch to
// return, at most the stop timeout (WithStopTimeout); a Watch still running then is abandoned and
// logged, and Run returns anyway.
func (r *Runner) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		panic("discovery: Runner.Run called while another Run of the same Runner is in progress")
	}
	defer r.running.Store(false)
	if d, ok := r.node.(interface{ Done() <-chan struct{} }); ok {
		// A node that can be closed (groupcache.Node) ends the run when it is.
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		go func() {
			select {
			case <-d.Done():
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	l := &loop{
		r:        r,
		ctx:      ctx,
		updates:  make(chan Update),
		debounce: stoppedTimer(),
		maxDelay: stoppedTimer(),
		restart:  stoppedTimer(),
	}
	defer l.debounce.Stop()
	defer l.maxDelay.Stop()
	defer l.restart.Stop()
	l.start()
	for {
		select {
		case <-ctx.Done():
			l.stop()
			return ctx.Err()
		case u := <-l.updates:
			l.receive(u)
		case <-l.debounce.C:
			l.flush()
		case <-l.maxDelay.C:
			l.flush()
		case err := <-watchDone(l.watch):
			started := l.watch.started
			l.watch = nil
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, groupcache.ErrInvalidOption) {
				return err
			}
			l.failed(err, started)
		case <-l.restart.C:
			r.restarts.Add(1)
			l.start()
		}
	}
}

// watchDone returns the channel on which w reports that Watch returned; nil (never ready) if w is.
func watchDone(w *watch) <-chan error {
	if w == nil {
		return nil
	}
	return w.done
}

func stoppedTimer() *time.Timer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}

// Watch goroutine states.
const (
	watchRunning int32 = iota
	watchReturned
	watchAbandoned
)

// watch is one run of Source.Watch.
type watch struct {
	cancel  context.CancelFunc
	done    chan error // buffered: the goroutine never blocks on it
	state   atomic.Int32
	started time.Time
}

// loop is the state of one Run. Only Run's goroutine touches it.
type loop struct {
	r       *Runner
	ctx     context.Context
	updates chan Update
	watch   *watch // nil while waiting for a restart

	applied    []string // last set SetPeers accepted in this Run; nil before the first
	pending    []string // latest good set not applied yet; nil if none
	debounce   *time.Timer
	maxDelay   *time.Timer
	restart    *time.Timer
	failures   int // consecutive early returns of Watch
	appliedAny bool
}

// start runs Watch on a new goroutine.
func (l *loop) start() {
	ctx, cancel := context.WithCancel(l.ctx)
	w := &watch{cancel: cancel, done: make(chan error, 1), started: time.Now()}
	l.watch = w
	src, updates, log := l.r.src, l.updates, l.r.log
	go func() {
		err := src.Watch(ctx, updates)
		cancel()
		if !w.state.CompareAndSwap(watchRunning, watchReturned) {
			log.Warn("discovery: abandoned source returned", slog.Any("err", err))
		}
		w.done <- err
	}()
}

// failed schedules the restart of a Watch that returned err before the context ended.
func (l *loop) failed(err error, started time.Time) {
	s := &l.r.s
	if time.Since(started) >= s.backoffMax {
		l.failures = 0
	}
	l.failures++
	wait := backoff(s.backoffMin, s.backoffMax, l.failures)
	l.restart.Reset(wait)
	l.r.log.Warn("discovery: source stopped; restarting it after a back-off, keeping the last peer set",
		slog.Any("err", err), slog.Int("failures", l.failures), slog.Duration("backoff", wait))
}

// backoff returns the wait before the n-th consecutive restart (n >= 1): min for the first, then a
// random duration in [max(min, d/2), d] with d = min·2^(n-1) capped at max.
func backoff(min, max time.Duration, n int) time.Duration {
	d := min
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	if d > max || d <= 0 { // d <= 0: overflow
		d = max
	}
	lo := d / 2
	if lo < min {
		lo = min
	}
	if d <= lo {
		return lo
	}
	return lo + rand.N(d-lo+1)
}

// stop ends the Watch, waiting for it at most the stop timeout.
func (l *loop) stop() {
	w := l.watch
	if w == nil {
		return
	}
	w.cancel()
	grace := time.NewTimer(l.r.s.stopTimeout)
	defer grace.Stop()
	for {
		select {
		case <-w.done:
			return
		case <-l.updates: // a Watch that sends late must not block on it
		case <-grace.C:
			if w.state.CompareAndSwap(watchRunning, watchAbandoned) {
				l.r.log.Error("discovery: source ignored the end of its context; Run returns without it",
					slog.Duration("waited", l.r.s.stopTimeout))
				return
			}
			// It has just returned: its result is on the way.
			<-w.done
			return
		}
	}
}

// receive handles one update of the source.
func (l *loop) receive(u Update) {
	r := l.r
	r.updates.Add(1)
	if u.Err != nil {
		r.rejected.Add(1)
		r.log.Warn("discovery: source reported an error; keeping the last peer set", slog.Any("err", u.Err))
		return
	}
	set, invalid, nInvalid := clean(u.Peers)
	if nInvalid > 0 {
		r.dropped.Add(int64(nInvalid))
		r.log.Warn("discovery: dropped invalid peer addresses", slog.Int("count", nInvalid), slog.Any("invalid", invalid))
	}
	if len(set) == 0 {
		r.rejected.Add(1)
		r.log.Warn("discovery: source reported no valid peer; keeping the last peer set", slog.Int("received", len(u.Peers)))
		return
	}
	if i, found := slices.BinarySearch(set, r.self); !found {
		set = slices.Insert(set, i, r.self)
		r.log.Warn("discovery: source's peer set lacks this node; added it (does the node's address match the source's?)",
			slog.String("self", r.self), slog.Int("peers", len(set)))
	}

	switch {
	case !l.appliedAny || r.s.debounce == 0:
		l.pending = set
		l.flush()
	case l.pending == nil && slices.Equal(set, l.applied):
		// Nothing to do.
	default:
		if l.pending == nil {
			l.maxDelay.Reset(r.s.maxDelay)
		}
		l.pending = set
		l.debounce.Reset(r.s.debounce)
	}
}

// flush applies the pending set if it differs from the applied one.
func (l *loop) flush() {
	l.debounce.Stop()
	l.maxDelay.Stop()
	set := l.pending
	l.pending = nil
	if set == nil || (l.appliedAny && slices.Equal(set, l.applied)) {
		return
	}
	r := l.r
	err := r.node.SetPeers(set...)
	if err != nil {
		r.setPeersErrors.Add(1)
		r.log.Error("discovery: SetPeers failed; the node keeps its peer set", slog.Any("err", err), slog.Any("peers", set))
	} else {
		r.applied.Add(1)
		l.applied, l.appliedAny = set, true
		r.log.Info("discovery: peer set applied", slog.Int("count", len(set)), slog.Any("peers", set))
	}
	if f := r.s.onApply; f != nil {
		f(slices.Clone(set), err)
	}
}

// clean returns the valid addresses of peers, sorted and without duplicates, and the invalid ones
// (at most maxLoggedAddrs of them, each with its reason) and their count. peers is not modified.
func clean(peers []string) (set, invalid []string, nInvalid int) {
	set = make([]string, 0, len(peers))
	for _, p := range peers {
		if err := checkAddr(p); err != nil {
			nInvalid++
			if len(invalid) < maxLoggedAddrs {
				invalid = append(invalid, strconv.Quote(p)+": "+err.Error())
			}
			continue
		}
		set = append(set, p)
	}
	slices.Sort(set)
	return slices.Compact(set), invalid, nInvalid
}

// checkAddr reports whether addr is "host:port" with a non-empty host free of spaces and control
// characters and a decimal port in 1..65535.
func checkAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		if ae, ok := err.(*net.AddrError); ok {
			return errors.New(ae.Err) // without the address, which the caller prints
		}
		return err
	}
	if host == "" {
		return errors.New("empty host")
	}
	if strings.ContainsFunc(host, func(c rune) bool { return unicode.IsSpace(c) || unicode.IsControl(c) }) {
		return errors.New("space or control character in host")
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return fmt.Errorf("port %q is not in 1..65535", port)
	}
	return nil
}
