package peer

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"runtime/metrics"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/typedcache/groupcache/internal/wire"
)

// The hostile-client suite: each attack runs from raw connections against a real Server on a
// loopback port, with its default limits unless the attack needs a shorter timeout to end within
// the test. Meanwhile a well-behaved Client on its own connection asks for a 16 KiB value: it
// must get every answer, the server's live heap must not grow by more than 256 MiB, and Close
// must return. BenchmarkSiege reports the well-behaved client's latencies under each attack.

const (
	siegeValue   = 16 << 10
	heapBudget   = 256 << 20
	goodRequests = 500
)

// siege is one attack on a server, measured.
type siege struct {
	s    *Server
	addr string
	b    *testBackend
	good *Client // the well-behaved client

	stop     chan struct{}
	attacks  sync.WaitGroup
	engaged  chan struct{} // closed by the attack once it is in effect
	engage   sync.Once
	peakLive atomic.Uint64
	requests int // of the well-behaved client; goodRequests if 0
	baseline uint64
}

// liveHeap returns the heap the last GC found live.
func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func newSiege(t testing.TB, opts ...ServerOption) *siege {
	t.Helper()
	b := newBackend()
	b.inline = true
	b.set("c", "k", Value{Data: make([]byte, siegeValue)})
	s, addr := startServer(t, b, opts...)
	sg := &siege{s: s, addr: addr, b: b, stop: make(chan struct{}), engaged: make(chan struct{}), good: newClient(t)}
	if _, err := sg.good.Get(context.Background(), addr, "c", []byte("k")); err != nil {
		t.Fatal(err) // connected before the attack
	}
	runtime.GC()
	sg.baseline = liveHeap()
	return sg
}

// attack runs f on n goroutines until the siege ends; f calls in() once its attack is in effect.
func (sg *siege) attack(n int, f func(in func())) {
	in := func() { sg.engage.Do(func() { close(sg.engaged) }) }
	for range n {
		sg.attacks.Go(func() { f(in) })
	}
}

// run waits for the attack to be in effect, then has a well-behaved client ask sg.requests
// times, sampling the live heap meanwhile; it returns the client's latencies and errors.
func (sg *siege) run(t testing.TB) (lat []time.Duration, errs []error) {
	t.Helper()
	c := sg.good
	select {
	case <-sg.engaged:
	case <-time.After(20 * time.Second):
		t.Fatal("the attack never took effect")
	}
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			sg.peakLive.Store(max(sg.peakLive.Load(), liveHeap()))
			select {
			case <-tick.C:
			case <-sg.stop:
				return
			}
		}
	}()
	n := sg.requests
	if n == 0 {
		n = goodRequests
	}
	for range n {
		start := time.Now()
		v, err := c.Get(context.Background(), sg.addr, "c", []byte("k"))
		lat = append(lat, time.Since(start))
		if err == nil && len(v.Data) != siegeValue {
			err = errors.New("wrong value")
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	runtime.GC()
	sg.peakLive.Store(max(sg.peakLive.Load(), liveHeap()))
	close(sg.stop)
	<-sampled
	return lat, errs
}

// end closes the server, which must end the attack's connections, and returns how long Close took.
func (sg *siege) end(t testing.TB) time.Duration {
	start := time.Now()
	sg.s.Close()
	took := time.Since(start)
	sg.attacks.Wait()
	return took
}

// check asserts the targets of one attack.
func (sg *siege) check(t *testing.T, lat []time.Duration, errs []error) {
	t.Helper()
	if len(errs) > 0 {
		t.Errorf("%d of %d well-behaved requests failed; first: %v", len(errs), len(lat), errs[0])
	}
	if grew := int64(sg.peakLive.Load()) - int64(sg.baseline); grew > heapBudget {
		t.Errorf("live heap grew by %d MiB", grew>>20)
	}
	took := sg.end(t)
	if took > 5*time.Second {
		t.Errorf("Close took %v", took)
	}
	slices.Sort(lat)
	t.Logf("live heap %d -> peak %d MiB; well-behaved p50 %v p99 %v; Close %v",
		sg.baseline>>20, sg.peakLive.Load()>>20, lat[len(lat)/2], lat[len(lat)*99/100], took)
}

// attacker is an attacker's upgraded connection.
type attacker struct {
	nc net.Conn
	br *bufio.Reader
}

// dialAttacker opens and upgrades a connection to addr, or returns nil if it cannot.
func dialAttacker(addr string) *attacker {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return nil
	}
	io.WriteString(nc, "GET "+DefaultBasePath+" HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: "+UpgradeToken+"\r\n\r\n")
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		nc.Close()
		return nil
	}
	return &attacker{nc: nc, br: br}
}

// reqFrame returns a request frame with its prefix.
func reqFrame(id uint32, r *wire.Request) []byte {
	b := wire.AppendRequest(wire.AppendPrefix(nil, 0, id), r)
	binary.BigEndian.PutUint32(b, uint32(len(b)-wire.PrefixLen))
	return b
}

// closeOnStop closes nc when the siege stops or the attacker leaves, ending its blocked calls.
func (sg *siege) closeOnStop(nc net.Conn) func() {
	left := make(chan struct{})
	go func() {
		select {
		case <-sg.stop:
		case <-left:
		}
		nc.Close()
	}()
	return func() { close(left) }
}

// TestSiegeUnreadReplies: multiplexed GetMany requests of 4,096 keys of a 16 KiB value (64 MiB
// replies), as fast as the connection takes them, with no reply ever read. The server stops
// reading the connection once its replies hold the connection's budget, and closes it after the
// stall timeout.
func TestSiegeUnreadReplies(t *testing.T) { runSiege(t, startUnreadReplies) }

func startUnreadReplies(tb testing.TB) (*siege, func(*testing.T)) {
	sg := newSiege(tb)
	keys := make([][]byte, DefaultMaxBatchKeys)
	for i := range keys {
		keys[i] = []byte("k")
	}
	req := reqFrame(0, &wire.Request{Op: OpGetMany, Cache: "c", Keys: keys})
	sg.attack(1, func(in func()) {
		p := dialAttacker(sg.addr)
		if p == nil {
			return
		}
		defer sg.closeOnStop(p.nc)()
		for id := uint32(1); ; id++ {
			binary.BigEndian.PutUint32(req[4:], id)
			p.nc.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
			if _, err := p.nc.Write(req); err != nil {
				if isTimeout(err) {
					in() // the server no longer reads
					p.nc.SetWriteDeadline(time.Time{})
					<-sg.stop
				}
				return
			}
		}
	})
	return sg, nil
}

// TestSiegeStalledConnections: connections that upgrade and then send a few bytes of a frame
// (part of its prefix, or a prefix and a drip of its body), as many as the server takes. The
// server takes no more than its connection limit (the rest get HTTP 503) and closes each stalled
// one after the stall timeout (shortened here so that the test waits for it).
func TestSiegeStalledConnections(t *testing.T) { runSiege(t, startStalledConnections) }

func startStalledConnections(tb testing.TB) (*siege, func(*testing.T)) {
	const maxConns, attackers = 64, 96
	sg := newSiege(tb, WithMaxConns(maxConns), WithStallTimeout(300*time.Millisecond))
	var upgraded, closedByServer, refused atomic.Int64
	var tried sync.WaitGroup // every attacker has connected or been refused: no stall timer runs before
	tried.Add(attackers)
	sg.attack(attackers, func(in func()) {
		p := dialAttacker(sg.addr)
		tried.Done()
		if p == nil {
			refused.Add(1)
			in() // the limit is reached
			return
		}
		upgraded.Add(1)
		defer p.nc.Close()
		tried.Wait() // an idle connection waits for the idle timeout (minutes), not the stall one
		var err error
		if upgraded.Load()%2 == 0 {
			p.nc.Write(wire.AppendPrefix(nil, 1<<20, 1))
			for i := 0; ; i++ { // a byte of the frame every 20 ms
				p.nc.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
				if _, err = p.br.ReadByte(); err != nil && !isTimeout(err) {
					break
				}
				p.nc.Write([]byte{byte(i)})
			}
		} else {
			p.nc.Write([]byte{0, 0})
			p.nc.SetReadDeadline(time.Now().Add(20 * time.Second))
			_, err = p.br.ReadByte()
		}
		if !isTimeout(err) {
			closedByServer.Add(1)
		}
	})
	return sg, func(t *testing.T) {
		sg.attacks.Wait() // every attacker is refused, or closed by the server
		if st := sg.s.Stats(); upgraded.Load() != maxConns-1 || refused.Load() != attackers-maxConns+1 ||
			st.Refused != refused.Load() || closedByServer.Load() != upgraded.Load() {
			t.Errorf("upgraded %d, refused %d, closed by the server %d; server %+v", upgraded.Load(), refused.Load(),
				closedByServer.Load(), st)
		}
	}
}

// TestSiegeInflatedSets: Set frames of a few dozen bytes whose values would inflate to 50 MiB,
// as fast as the server answers them. Each is refused before anything is inflated.
func TestSiegeInflatedSets(t *testing.T) { runSiege(t, startInflatedSets) }

func startInflatedSets(tb testing.TB) (*siege, func(*testing.T)) {
	req := reqFrame(1, &wire.Request{Op: OpSet, Cache: "c", Key: []byte("k2"), Value: bombOf(50 << 20)})
	sg := newSiege(tb)
	tb.Logf("a Set frame of %d bytes", len(req))
	var refusedSets atomic.Int64
	sg.attack(1, func(in func()) {
		p := dialAttacker(sg.addr)
		if p == nil {
			return
		}
		defer sg.closeOnStop(p.nc)()
		batch := bytes.Repeat(req, 64)
		for {
			if _, err := p.nc.Write(batch); err != nil {
				return
			}
			for range 64 {
				r, ok := readAttackReply(p)
				if !ok {
					return
				}
				if r.Status == StatusTooLarge {
					refusedSets.Add(1)
				}
			}
			in()
		}
	})
	return sg, func(t *testing.T) {
		if refusedSets.Load() == 0 || sg.b.ops[OpSet].Load() != 0 {
			t.Errorf("%d Sets refused, %d reached the backend", refusedSets.Load(), sg.b.ops[OpSet].Load())
		}
	}
}

// readAttackReply reads one reply frame on an attacker's connection.
func readAttackReply(p *attacker) (wire.Response, bool) {
	hdr := make([]byte, wire.PrefixLen)
	if _, err := io.ReadFull(p.br, hdr); err != nil {
		return wire.Response{}, false
	}
	n, _ := wire.ParsePrefix(hdr)
	b := make([]byte, n)
	if _, err := io.ReadFull(p.br, b); err != nil {
		return wire.Response{}, false
	}
	r, err := wire.ParseResponse(b, Limits{})
	return r, err == nil
}

// TestSiegeLargeSets: six connections send Set frames of 1 MiB values to a slow backend, as
// fast as the server takes them, against budgets of 2 MiB per connection and 8 MiB per server
// (the defaults scaled down eightfold and more, for the race detector's sake). What the server
// holds of them stays within its budget: a frame over it is skipped and answered
// StatusOverloaded.
func TestSiegeLargeSets(t *testing.T) { runSiege(t, startLargeSets) }

func startLargeSets(tb testing.TB) (*siege, func(*testing.T)) {
	return startLargeSetsOf(tb, 6, 1<<20, WithMaxBuffered(2<<20, 8<<20))
}

// startLargeSetsOf is the attack of TestSiegeLargeSets from conns connections with values of size
// bytes and the given server options; BenchmarkSiege runs it with the default budgets too.
func startLargeSetsOf(tb testing.TB, conns, size int, opts ...ServerOption) (*siege, func(*testing.T)) {
	req := reqFrame(1, &wire.Request{Op: OpSet, Cache: "c", Key: []byte("big"), Value: Value{Data: make([]byte, size)}})
	sg := newSiege(tb, opts...)
	sg.requests = 100 // each waits behind the attackers' megabytes on two cores
	sg.b.hook = func(ctx context.Context, op Op, _ []byte) error {
		if op == OpSet {
			<-ctx.Done() // a slow backend: every Set holds its frame until the connection ends
		}
		return nil
	}
	sg.attack(conns, func(in func()) {
		p := dialAttacker(sg.addr)
		if p == nil {
			return
		}
		defer sg.closeOnStop(p.nc)()
		go func() {
			for {
				r, ok := readAttackReply(p)
				if !ok {
					return
				}
				if r.Status == StatusOverloaded {
					in() // the server's budget is reached
				}
			}
		}()
		for {
			if _, err := p.nc.Write(req); err != nil {
				return
			}
		}
	})
	return sg, nil
}

// runSiege runs an attack as a test: the well-behaved client's requests, the attack's own checks,
// then the suite's targets.
func runSiege(t *testing.T, start func(testing.TB) (*siege, func(*testing.T))) {
	sg, extra := start(t)
	lat, errs := sg.run(t)
	if extra != nil {
		extra(t)
	}
	sg.check(t, lat, errs)
}

// BenchmarkSiege reports, for each attack, the well-behaved client's p50 and p99 latency, the
// server's peak live heap above its baseline and how long Close took; LargeSetsDefaultBudgets is
// LargeSets from 12 connections with 8 MiB values and the default budgets. Run it with a fixed count:
//
//	go test -run '^$' -bench Siege -benchtime 500x ./peer/
func BenchmarkSiege(b *testing.B) {
	for _, a := range []struct {
		name  string
		start func(testing.TB) (*siege, func(*testing.T))
	}{
		{"UnreadReplies", startUnreadReplies},
		{"StalledConnections", startStalledConnections},
		{"InflatedSets", startInflatedSets},
		{"LargeSets", startLargeSets},
		{"LargeSetsDefaultBudgets", func(tb testing.TB) (*siege, func(*testing.T)) { return startLargeSetsOf(tb, 12, 8<<20) }},
	} {
		b.Run(a.name, func(b *testing.B) {
			sg, _ := a.start(b)
			sg.requests = b.N
			lat, errs := sg.run(b)
			if len(errs) > 0 {
				b.Fatalf("%d of %d well-behaved requests failed; first: %v", len(errs), len(lat), errs[0])
			}
			took := sg.end(b)
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			b.ReportMetric(float64(int64(sg.peakLive.Load())-int64(sg.baseline))/(1<<20), "heap-MiB")
			b.ReportMetric(float64(took.Microseconds())/1000, "close-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}
