package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/typedcache/groupcache"
)

// The tests of Run run in a synctest bubble: time is a fake clock that moves only when every
// goroutine of the test is blocked, so time.Sleep there advances the clock by exactly its
// argument (it stands in for the passing of time, not for synchronisation), and synctest.Wait
// returns once Run and the source have done all they can. Timings are then exact.

// fakeNode records the SetPeers calls Run makes.
type fakeNode struct {
	self string
	fail func(peers []string) error // nil: every call succeeds

	mu    sync.Mutex
	calls []setPeersCall
}

type setPeersCall struct {
	peers []string
	at    time.Time
}

func newFakeNode(self string) *fakeNode { return &fakeNode{self: self} }

func (n *fakeNode) Self() string { return n.self }

func (n *fakeNode) SetPeers(peers ...string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.calls = append(n.calls, setPeersCall{slices.Clone(peers), time.Now()})
	if n.fail != nil {
		return n.fail(peers)
	}
	return nil
}

func (n *fakeNode) Calls() []setPeersCall {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.calls)
}

// sets returns the peer sets of the SetPeers calls.
func (n *fakeNode) sets() [][]string {
	var s [][]string
	for _, c := range n.Calls() {
		s = append(s, c.peers)
	}
	return s
}

// logRecorder is a slog.Handler that keeps every record.
type logRecorder struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logRecorder) WithGroup(string) slog.Handler            { return h }
func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, r.Clone())
	return nil
}

// find returns the records whose message contains msg.
func (h *logRecorder) find(msg string) []slog.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []slog.Record
	for _, r := range h.recs {
		if strings.Contains(r.Message, msg) {
			out = append(out, r)
		}
	}
	return out
}

func attr(r slog.Record, key string) slog.Value {
	var v slog.Value
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v = a.Value
			return false
		}
		return true
	})
	return v
}

// chanSource forwards what the test sends on its channel.
type chanSource chan Update

func (c chanSource) Watch(ctx context.Context, updates chan<- Update) error {
	for {
		select {
		case u := <-c:
			select {
			case updates <- u:
			case <-ctx.Done():
				return ctx.Err()
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// started is a Run in progress.
type started struct {
	r      *Runner
	log    *logRecorder
	cancel context.CancelFunc
	done   chan error
}

// startRun starts Run with a recording logger; stop ends it.
func startRun(t *testing.T, node Node, src Source, opts ...Option) *started {
	t.Helper()
	log := &logRecorder{}
	r, err := NewRunner(node, src, append([]Option{WithLogger(slog.New(log))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &started{r: r, log: log, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- r.Run(ctx) }()
	t.Cleanup(func() { s.stop(t) })
	return s
}

// stop cancels Run's context and returns what Run returned.
func (s *started) stop(t *testing.T) error {
	t.Helper()
	s.cancel()
	err := <-s.done
	s.done <- err // for a second stop
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Run returned %v, want context.Canceled", err)
	}
	return err
}

func TestRunChecksSets(t *testing.T) {
	t.Parallel()
	const self = "10.0.0.1:80"
	tests := []struct {
		name      string
		peers     []string
		want      []string // nil: no SetPeers
		dropped   int64
		selfAdded bool
	}{
		{
			name:  "sorted and deduplicated",
			peers: []string{"10.0.0.3:80", "10.0.0.2:80", "10.0.0.3:80", self, "10.0.0.2:80"},
			want:  []string{self, "10.0.0.2:80", "10.0.0.3:80"},
		},
		{
			name:      "self added",
			peers:     []string{"10.0.0.3:80", "10.0.0.2:80"},
			want:      []string{self, "10.0.0.2:80", "10.0.0.3:80"},
			selfAdded: true,
		},
		{
			name: "invalid addresses dropped",
			peers: []string{
				"10.0.0.2:80", "[::1]:80", "[fe80::1%eth0]:8080", "node-4.cache.example:65535", self, "10.0.0.2:80",
				"10.0.0.5", ":80", "10.0.0.6:", "10.0.0.7:0", "10.0.0.8:65536", "10.0.0.9:http", "", "::1:80",
				"a b:80", "10.0.0.10:-1", "tab\t:80", "[::1:80",
			},
			want:    []string{self, "10.0.0.2:80", "[::1]:80", "[fe80::1%eth0]:8080", "node-4.cache.example:65535"},
			dropped: 12,
		},
		{
			name:      "only valid is another node",
			peers:     []string{"bad", "10.0.0.2:80"},
			want:      []string{self, "10.0.0.2:80"},
			dropped:   1,
			selfAdded: true,
		},
		{name: "nothing valid", peers: []string{"bad", "10.0.0.2:0"}, dropped: 2},
		{name: "empty", peers: []string{}},
		{name: "nil", peers: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				node := newFakeNode(self)
				src := make(chanSource)
				run := startRun(t, node, src)
				in := slices.Clone(tt.peers)
				src <- Update{Peers: in}
				synctest.Wait()

				if !slices.Equal(in, tt.peers) {
					t.Errorf("Run modified the update's slice: %q", in)
				}
				var want [][]string
				if tt.want != nil {
					want = [][]string{tt.want}
				}
				if got := node.sets(); !slices.EqualFunc(got, want, slices.Equal) {
					t.Errorf("SetPeers calls %q, want %q", got, want)
				}
				st := run.r.Stats()
				wantRejected, wantApplied := int64(0), int64(1)
				if tt.want == nil {
					wantRejected, wantApplied = 1, 0
				}
				if st != (Stats{Updates: 1, Applied: wantApplied, Rejected: wantRejected, Dropped: tt.dropped}) {
					t.Errorf("stats %+v", st)
				}
				recs := run.log.find("dropped invalid")
				switch {
				case tt.dropped == 0 && len(recs) != 0:
					t.Errorf("logged dropped addresses: %v", recs)
				case tt.dropped > 0 && len(recs) != 1:
					t.Errorf("%d records of dropped addresses, want 1", len(recs))
				case tt.dropped > 0 && attr(recs[0], "count").Int64() != tt.dropped:
					t.Errorf("logged count %v, want %d", attr(recs[0], "count"), tt.dropped)
				}
				if got := len(run.log.find("lacks this node")) == 1; got != tt.selfAdded {
					t.Errorf("self-missing logged: %v, want %v", got, tt.selfAdded)
				}
				if got := len(run.log.find("keeping the last peer set")) == 1; got != (tt.want == nil) {
					t.Errorf("rejection logged: %v, want %v", got, tt.want == nil)
				}
			})
		})
	}
}

func TestRunKeepsLastGoodSet(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const self = "10.0.0.1:80"
		a := []string{self, "10.0.0.2:80"}
		b := []string{self, "10.0.0.3:80"}
		node := newFakeNode(self)
		src := make(chanSource)
		run := startRun(t, node, src, WithDebounce(0))
		steps := []struct {
			u    Update
			want [][]string // all SetPeers calls so far
		}{
			{Update{Peers: a}, [][]string{a}},
			{Update{Err: errors.New("lookup failed")}, [][]string{a}},
			{Update{Peers: []string{}}, [][]string{a}},
			{Update{Peers: []string{"no-port", "10.0.0.3:99999"}}, [][]string{a}},
			{Update{Peers: a, Err: errors.New("peers ignored")}, [][]string{a}},
			{Update{Peers: []string{a[1], a[0], a[1]}}, [][]string{a}}, // same set: not applied again
			{Update{Peers: b}, [][]string{a, b}},
		}
		for i, s := range steps {
			src <- s.u
			synctest.Wait()
			if got := node.sets(); !slices.EqualFunc(got, s.want, slices.Equal) {
				t.Fatalf("step %d: SetPeers calls %q, want %q", i, got, s.want)
			}
		}
		if st := run.r.Stats(); st != (Stats{Updates: 7, Applied: 2, Rejected: 4, Dropped: 2}) {
			t.Errorf("stats %+v", st)
		}
		if recs := run.log.find("source reported an error"); len(recs) != 2 || attr(recs[0], "err").String() != "lookup failed" {
			t.Errorf("source errors logged: %v", recs)
		}
		if recs := run.log.find("no valid peer"); len(recs) != 2 {
			t.Errorf("empty sets logged %d times, want 2", len(recs))
		}
	})
}

// setN returns a distinct peer set for each n.
func setN(self string, n int) []string {
	return []string{self, fmt.Sprintf("10.1.%d.%d:80", n/256, n%256)}
}

func TestRunDebounce(t *testing.T) {
	t.Parallel()
	const self = "10.0.0.1:80"
	const debounce = 500 * time.Millisecond
	t.Run("burst coalesced", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			node := newFakeNode(self)
			src := make(chanSource)
			run := startRun(t, node, src, WithDebounce(debounce), WithMaxDelay(time.Minute))
			start := time.Now()
			src <- Update{Peers: setN(self, 0)}
			synctest.Wait()
			if calls := node.Calls(); len(calls) != 1 || !calls[0].at.Equal(start) {
				t.Fatalf("first set: calls %v, want one at once", calls)
			}
			for i := 1; i <= 20; i++ {
				src <- Update{Peers: setN(self, i)}
				time.Sleep(debounce / 5) // quieter than the window
			}
			last := time.Now().Add(-debounce / 5) // when setN(20) was sent
			time.Sleep(debounce - debounce/5 - time.Nanosecond)
			synctest.Wait()
			if n := len(node.Calls()); n != 1 {
				t.Fatalf("%d SetPeers calls before the window ended, want 1", n)
			}
			time.Sleep(time.Nanosecond)
			synctest.Wait()
			calls := node.Calls()
			if len(calls) != 2 || !slices.Equal(calls[1].peers, setN(self, 20)) || calls[1].at.Sub(last) != debounce {
				t.Fatalf("calls %v, want setN(20) %v after it was sent", calls, debounce)
			}
			if st := run.r.Stats(); st.Updates != 21 || st.Applied != 2 {
				t.Errorf("stats %+v", st)
			}
		})
	})
	t.Run("flap back costs nothing", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			node := newFakeNode(self)
			src := make(chanSource)
			startRun(t, node, src, WithDebounce(debounce))
			src <- Update{Peers: setN(self, 0)}
			for range 5 {
				src <- Update{Peers: setN(self, 1)}
				time.Sleep(debounce / 2)
				src <- Update{Peers: setN(self, 0)}
				time.Sleep(debounce / 2)
			}
			time.Sleep(10 * debounce)
			if got := node.sets(); len(got) != 1 {
				t.Errorf("SetPeers calls %q, want only the first set", got)
			}
		})
	})
	t.Run("zero window applies each change", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			node := newFakeNode(self)
			src := make(chanSource)
			startRun(t, node, src, WithDebounce(0))
			for i := range 5 {
				src <- Update{Peers: setN(self, i)}
				synctest.Wait()
				if n := len(node.Calls()); n != i+1 {
					t.Fatalf("after %d updates: %d SetPeers calls", i+1, n)
				}
			}
		})
	})
}

func TestRunMaxDelay(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const (
			self     = "10.0.0.1:80"
			every    = 100 * time.Millisecond
			maxDelay = 2050 * time.Millisecond // fires between two sends
		)
		node := newFakeNode(self)
		src := make(chanSource)
		startRun(t, node, src, WithDebounce(500*time.Millisecond), WithMaxDelay(maxDelay))
		start := time.Now()
		// A source that never goes quiet: a new set every 100 ms for 10 s.
		for i := 0; i <= 100; i++ {
			src <- Update{Peers: setN(self, i)}
			time.Sleep(every)
		}
		// The first set at once; then the latest set maxDelay after each first change after an
		// apply: sets 1, 22, 43, 64 and 85 start the waits.
		want := []struct {
			at  time.Duration
			set int
		}{{0, 0}, {every + maxDelay, 21}, {22*every + maxDelay, 42}, {43*every + maxDelay, 63}, {64*every + maxDelay, 84}}
		calls := node.Calls()
		if len(calls) != len(want) {
			t.Fatalf("%d SetPeers calls in 10 s, want %d: %v", len(calls), len(want), calls)
		}
		for i, w := range want {
			if at := calls[i].at.Sub(start); at != w.at || !slices.Equal(calls[i].peers, setN(self, w.set)) {
				t.Errorf("call %d: %q at %v, want set %d at %v", i, calls[i].peers, at, w.set, w.at)
			}
		}
		// Quiet now: the last set is applied once the debounce window has passed.
		time.Sleep(time.Second)
		if calls := node.Calls(); len(calls) != len(want)+1 || !slices.Equal(calls[len(want)].peers, setN(self, 100)) {
			t.Errorf("after the source went quiet: %v", calls[len(want):])
		}
	})
}

// script is a Source whose n-th Watch does attempts[n-1]; later ones block until ctx ends.
type script struct {
	attempts []func(ctx context.Context, updates chan<- Update) error

	mu          sync.Mutex
	starts, end []time.Time
}

func (s *script) Watch(ctx context.Context, updates chan<- Update) error {
	s.mu.Lock()
	n := len(s.starts)
	s.starts = append(s.starts, time.Now())
	s.mu.Unlock()
	err := ctx.Err()
	if n < len(s.attempts) {
		err = s.attempts[n](ctx, updates)
	} else {
		<-ctx.Done()
	}
	s.mu.Lock()
	s.end = append(s.end, time.Now())
	s.mu.Unlock()
	return err
}

// times returns when each Watch started and when those that returned did.
func (s *script) times() (starts, ends []time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.starts), slices.Clone(s.end)
}

func fail(err error) func(context.Context, chan<- Update) error {
	return func(context.Context, chan<- Update) error { return err }
}

func TestRunRestartsWatch(t *testing.T) {
	t.Parallel()
	const self = "10.0.0.1:80"
	a := []string{self, "10.0.0.2:80"}
	b := []string{self, "10.0.0.3:80"}
	boom := errors.New("boom")
	sendThenFail := func(peers []string, after time.Duration) func(context.Context, chan<- Update) error {
		return func(ctx context.Context, updates chan<- Update) error {
			updates <- Update{Peers: peers}
			time.Sleep(after)
			return boom
		}
	}
	const min, max = time.Second, 4 * time.Second
	tests := []struct {
		name     string
		attempts []func(context.Context, chan<- Update) error
		// gaps[i] bounds the time from the end of attempt i to the start of attempt i+1.
		gaps [][2]time.Duration
	}{
		{
			name:     "back-off doubles with jitter up to max",
			attempts: []func(context.Context, chan<- Update) error{sendThenFail(a, 0), fail(boom), fail(nil), fail(boom), fail(boom)},
			gaps:     [][2]time.Duration{{min, min}, {min, 2 * min}, {2 * min, 4 * min}, {2 * min, max}, {2 * min, max}},
		},
		{
			name:     "a long run resets the back-off",
			attempts: []func(context.Context, chan<- Update) error{sendThenFail(a, 0), fail(boom), sendThenFail(a, max), fail(boom)},
			gaps:     [][2]time.Duration{{min, min}, {min, 2 * min}, {min, min}, {min, 2 * min}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				node := newFakeNode(self)
				last := func(ctx context.Context, updates chan<- Update) error {
					updates <- Update{Peers: b}
					<-ctx.Done()
					return ctx.Err()
				}
				src := &script{attempts: append(slices.Clone(tt.attempts), last)}
				run := startRun(t, node, src, WithBackoff(min, max), WithDebounce(0))
				time.Sleep(time.Minute)

				starts, ends := src.times()
				if len(starts) != len(tt.attempts)+1 || len(ends) != len(tt.attempts) {
					t.Fatalf("%d Watch calls, %d returned; want %d", len(starts), len(ends), len(tt.attempts)+1)
				}
				for i, g := range tt.gaps {
					if gap := starts[i+1].Sub(ends[i]); gap < g[0] || gap > g[1] {
						t.Errorf("restart %d after %v, want [%v, %v]", i+1, gap, g[0], g[1])
					}
				}
				if got := node.sets(); !slices.EqualFunc(got, [][]string{a, b}, slices.Equal) {
					t.Errorf("SetPeers calls %q, want a then b only", got)
				}
				if st := run.r.Stats(); st.Restarts != int64(len(tt.attempts)) {
					t.Errorf("stats %+v, want %d restarts", st, len(tt.attempts))
				}
				if recs := run.log.find("source stopped"); len(recs) != len(tt.attempts) {
					t.Errorf("%d failures logged, want %d", len(recs), len(tt.attempts))
				}
			})
		})
	}
}

func TestRunBlockingSource(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		node := newFakeNode("10.0.0.1:80")
		blocked := make(chan struct{})
		src := SourceFunc(func(ctx context.Context, _ chan<- Update) error {
			close(blocked)
			<-ctx.Done()
			return ctx.Err()
		})
		run := startRun(t, node, src)
		<-blocked
		time.Sleep(time.Hour)
		start := time.Now()
		run.stop(t)
		if d := time.Since(start); d != 0 {
			t.Errorf("Run took %v to return", d)
		}
		if calls := node.Calls(); len(calls) != 0 {
			t.Errorf("SetPeers calls %v", calls)
		}
	})
}

func TestRunStopTimeout(t *testing.T) {
	t.Parallel()
	const grace = 2 * time.Second
	t.Run("Watch ignoring ctx is abandoned", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			release := make(chan struct{})
			src := SourceFunc(func(ctx context.Context, _ chan<- Update) error {
				<-release
				return nil
			})
			run := startRun(t, newFakeNode("10.0.0.1:80"), src, WithStopTimeout(grace))
			synctest.Wait()
			start := time.Now()
			run.stop(t)
			if d := time.Since(start); d != grace {
				t.Errorf("Run returned after %v, want %v", d, grace)
			}
			if n := len(run.log.find("ignored the end of its context")); n != 1 {
				t.Errorf("abandonment logged %d times", n)
			}
			close(release)
			synctest.Wait()
			if n := len(run.log.find("abandoned source returned")); n != 1 {
				t.Errorf("late return logged %d times", n)
			}
		})
	})
	t.Run("late sends are drained", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			src := SourceFunc(func(ctx context.Context, updates chan<- Update) error {
				<-ctx.Done()
				time.Sleep(grace / 2)
				updates <- Update{Peers: []string{"10.0.0.2:80"}} // no select on ctx
				return nil
			})
			node := newFakeNode("10.0.0.1:80")
			run := startRun(t, node, src, WithStopTimeout(grace))
			synctest.Wait()
			start := time.Now()
			run.stop(t)
			if d := time.Since(start); d != grace/2 {
				t.Errorf("Run returned after %v, want %v", d, grace/2)
			}
			if len(node.Calls()) != 0 || len(run.log.find("ignored")) != 0 {
				t.Errorf("calls %v, abandonment logged %v", node.Calls(), run.log.find("ignored"))
			}
		})
	})
}

func TestRunSetPeersError(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const self = "10.0.0.1:80"
		errRefused := errors.New("refused")
		node := newFakeNode(self)
		node.fail = func(peers []string) error {
			if slices.Contains(peers, "10.0.0.9:80") {
				return fmt.Errorf("node: %w", errRefused)
			}
			return nil
		}
		type applied struct {
			peers []string
			err   error
		}
		var (
			mu  sync.Mutex
			got []applied
		)
		src := make(chanSource)
		run := startRun(t, node, src, WithDebounce(0), WithOnApply(func(peers []string, err error) {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, applied{peers, err})
		}))
		a, bad, c := setN(self, 1), setN(self, 9), setN(self, 3)
		bad[1] = "10.0.0.9:80"
		for _, s := range [][]string{a, bad, bad, c} {
			src <- Update{Peers: s}
		}
		synctest.Wait()
		mu.Lock()
		defer mu.Unlock()
		want := []applied{{a, nil}, {bad, errRefused}, {bad, errRefused}, {c, nil}}
		if !slices.EqualFunc(got, want, func(x, y applied) bool {
			return slices.Equal(x.peers, y.peers) && errors.Is(x.err, y.err) && (x.err == nil) == (y.err == nil)
		}) {
			t.Errorf("applied %v, want %v", got, want)
		}
		if st := run.r.Stats(); st != (Stats{Updates: 4, Applied: 2, SetPeersErrors: 2}) {
			t.Errorf("stats %+v", st)
		}
		recs := run.log.find("SetPeers failed")
		if len(recs) != 2 || recs[0].Level != slog.LevelError || !strings.Contains(attr(recs[0], "err").String(), "refused") {
			t.Errorf("SetPeers failures logged: %v", recs)
		}
	})
}

type badSelfNode struct{ self string }

func (b badSelfNode) Self() string           { return b.self }
func (badSelfNode) SetPeers(...string) error { return nil }

func TestNewRunnerInvalid(t *testing.T) {
	t.Parallel()
	node := newFakeNode("10.0.0.1:80")
	src := Static("10.0.0.1:80")
	tests := []struct {
		name string
		node Node
		src  Source
		opts []Option
	}{
		{"nil node", nil, src, nil},
		{"nil source", node, nil, nil},
		{"bad self", badSelfNode{"10.0.0.1"}, src, nil},
		{"self port 0", badSelfNode{"10.0.0.1:0"}, src, nil},
		{"nil logger", node, src, []Option{WithLogger(nil)}},
		{"negative debounce", node, src, []Option{WithDebounce(-1)}},
		{"zero max delay", node, src, []Option{WithMaxDelay(0)}},
		{"zero backoff", node, src, []Option{WithBackoff(0, time.Second)}},
		{"backoff max < min", node, src, []Option{WithBackoff(2*time.Second, time.Second)}},
		{"negative stop timeout", node, src, []Option{WithStopTimeout(-time.Second)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := NewRunner(tt.node, tt.src, tt.opts...); !errors.Is(err, groupcache.ErrInvalidOption) {
				t.Errorf("NewRunner: %v, want groupcache.ErrInvalidOption", err)
			}
			if err := Run(context.Background(), tt.node, tt.src, tt.opts...); !errors.Is(err, groupcache.ErrInvalidOption) {
				t.Errorf("Run: %v, want groupcache.ErrInvalidOption", err)
			}
		})
	}
	valid := []Option{nil, WithDebounce(0), WithMaxDelay(time.Nanosecond), WithBackoff(time.Second, time.Second),
		WithStopTimeout(0), WithOnApply(nil), WithLogger(slog.Default())}
	if _, err := NewRunner(node, src, valid...); err != nil {
		t.Errorf("valid options: %v", err)
	}
}

func TestRunMisconfiguredSource(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		src  Source
	}{
		{"DNS empty name", DNS("", 80)},
		{"DNS port 0", DNS("cache.example", 0)},
		{"DNS port 65536", DNS("cache.example", 65536)},
		{"DNS zero interval", DNS("cache.example", 80, WithInterval(0))},
		{"DNS nil resolver", DNS("cache.example", 80, WithResolver(nil))},
		{"SRV empty name", SRV("cache", "tcp", "")},
		{"SRV negative interval", SRV("cache", "tcp", "example", WithInterval(-time.Second))},
		{"DNS zero lookup timeout", DNS("cache.example", 80, WithLookupTimeout(0))},
		{"custom", SourceFunc(func(context.Context, chan<- Update) error {
			return fmt.Errorf("etcd: %w: no endpoints", groupcache.ErrInvalidOption)
		})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				r, err := NewRunner(newFakeNode("10.0.0.1:80"), tt.src, WithLogger(slog.New(&logRecorder{})))
				if err != nil {
					t.Fatal(err)
				}
				start := time.Now()
				if err := r.Run(context.Background()); !errors.Is(err, groupcache.ErrInvalidOption) {
					t.Errorf("Run: %v, want groupcache.ErrInvalidOption", err)
				}
				if d := time.Since(start); d != 0 || r.Stats().Restarts != 0 {
					t.Errorf("returned after %v and %d restarts", d, r.Stats().Restarts)
				}
			})
		})
	}
}

func TestRunContextAlreadyDone(t *testing.T) {
	t.Parallel()
	called := false
	src := SourceFunc(func(context.Context, chan<- Update) error { called = true; return nil })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Run(ctx, newFakeNode("10.0.0.1:80"), src); !errors.Is(err, context.Canceled) || called {
		t.Errorf("Run: %v, Watch called: %v", err, called)
	}
}

func TestRunnerRunOnce(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		node := newFakeNode("10.0.0.1:80")
		run := startRun(t, node, Static("10.0.0.1:80", "10.0.0.2:80"))
		synctest.Wait()
		if msg := panicOf(func() { run.r.Run(context.Background()) }); !strings.Contains(msg, "another Run") {
			t.Errorf("second Run: panic %q, want one saying another Run is in progress", msg)
		}
		run.stop(t)
		// Stopped, the runner runs again; its counters carry on.
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- run.r.Run(ctx) }()
		synctest.Wait()
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run again: %v", err)
		}
		if st := run.r.Stats(); st.Updates != 2 || st.Applied != 2 {
			t.Errorf("stats %+v", st)
		}
	})
}

// panicOf calls f and returns what it panicked with, formatted; "" if it did not panic.
func panicOf(f func()) (msg string) {
	defer func() {
		if v := recover(); v != nil {
			msg = fmt.Sprint(v)
		}
	}()
	f()
	return ""
}

func TestStatic(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		peers := []string{"10.0.0.2:80", "10.0.0.1:80"}
		src := Static(peers...)
		peers[0] = "changed:1"
		ctx, cancel := context.WithCancel(context.Background())
		updates := make(chan Update)
		done := make(chan error)
		go func() { done <- src.Watch(ctx, updates) }()
		u := <-updates
		if u.Err != nil || !slices.Equal(u.Peers, []string{"10.0.0.2:80", "10.0.0.1:80"}) {
			t.Errorf("update %+v", u)
		}
		time.Sleep(time.Hour)
		select {
		case u := <-updates:
			t.Errorf("second update %+v", u)
		case err := <-done:
			t.Errorf("Watch returned %v before ctx ended", err)
		default:
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Watch: %v", err)
		}

		// Canceled before anyone reads: Watch returns without sending.
		go func() { done <- src.Watch(ctx, updates) }()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Watch on a done ctx: %v", err)
		}
	})
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	tests := []struct {
		min, max time.Duration
		n        int
		lo, hi   time.Duration
	}{
		{time.Second, 30 * time.Second, 1, time.Second, time.Second},
		{time.Second, 30 * time.Second, 2, time.Second, 2 * time.Second},
		{time.Second, 30 * time.Second, 3, 2 * time.Second, 4 * time.Second},
		{time.Second, 30 * time.Second, 5, 8 * time.Second, 16 * time.Second},
		{time.Second, 30 * time.Second, 6, 15 * time.Second, 30 * time.Second},
		{time.Second, 30 * time.Second, 1000, 15 * time.Second, 30 * time.Second},
		{time.Second, time.Second, 10, time.Second, time.Second},
		{time.Second, math.MaxInt64, 100, math.MaxInt64 / 2, math.MaxInt64},
		{3 * time.Second, 4 * time.Second, 2, 3 * time.Second, 4 * time.Second},
	}
	for _, tt := range tests {
		seen := map[time.Duration]bool{}
		for range 200 {
			d := backoff(tt.min, tt.max, tt.n)
			if d < tt.lo || d > tt.hi {
				t.Fatalf("backoff(%v, %v, %d) = %v, want [%v, %v]", tt.min, tt.max, tt.n, d, tt.lo, tt.hi)
			}
			seen[d] = true
		}
		if tt.lo < tt.hi && len(seen) < 2 {
			t.Errorf("backoff(%v, %v, %d): no jitter", tt.min, tt.max, tt.n)
		}
	}
}
