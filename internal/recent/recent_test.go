package recent

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/typedcache/groupcache/observe"
)

func TestFailures(t *testing.T) {
	var f Failures
	if len(f.List()) != 0 {
		t.Fatal("a new Failures lists something")
	}
	t0 := time.Unix(1000, 0)
	f.Add(t0, "users", "", errors.New("db down"))
	f.Add(t0.Add(time.Second), "users", "", errors.New("db down"))
	f.Add(t0.Add(2*time.Second), "users", "10.0.0.2:8080", errors.New("refused"))
	got := f.List()
	want := []observe.Failure{
		{Time: t0.Add(2 * time.Second), Cache: "users", Peer: "10.0.0.2:8080", Msg: "refused", Count: 1},
		{Time: t0.Add(time.Second), Cache: "users", Msg: "db down", Count: 2},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("List = %+v, want %+v", got, want)
	}
	for i := range 3 * FailureSlots {
		f.Add(t0.Add(time.Duration(10+i)*time.Second), "c", "", fmt.Errorf("failure %d", i))
	}
	got = f.List()
	if len(got) != FailureSlots || got[0].Msg != fmt.Sprintf("failure %d", 3*FailureSlots-1) || got[FailureSlots-1].Msg != fmt.Sprintf("failure %d", 2*FailureSlots) {
		t.Fatalf("after many: %d kept, newest %q, oldest %q", len(got), got[0].Msg, got[len(got)-1].Msg)
	}
}

func TestFailuresMessageCutAndEscaped(t *testing.T) {
	var f Failures
	f.Add(time.Now(), "c", "p", errors.New("\x1b[31mred\n"+strings.Repeat("x", 500)))
	msg := f.List()[0].Msg
	if strings.ContainsAny(msg, "\x1b\n") || !strings.HasPrefix(msg, `\x1b[31mred\n`) || !strings.HasSuffix(msg, "...") || len(msg) > 220 {
		t.Fatalf("message %q: not cut and escaped", msg)
	}
}

func TestNewest(t *testing.T) {
	t0 := time.Unix(0, 0)
	a := []observe.Failure{{Time: t0.Add(5), Msg: "a5"}, {Time: t0.Add(1), Msg: "a1"}}
	b := []observe.Failure{{Time: t0.Add(3), Msg: "b3"}}
	got := Newest(2, a, b)
	if len(got) != 2 || got[0].Msg != "a5" || got[1].Msg != "b3" {
		t.Fatalf("Newest = %+v", got)
	}
}

func TestKeysFindsTheHotOnes(t *testing.T) {
	var k Keys[string]
	// Keys 0..4 take 60% of the sightings, 5,000 cold keys the rest, interleaved.
	cold := 0
	for i := range 5000 {
		if i%5 < 3 {
			hot := i % 5
			k.See(uint64(hot)+1, fmt.Sprintf("hot-%d", hot))
		} else {
			k.See(uint64(1000+cold), fmt.Sprint(cold))
			cold++
		}
	}
	top := k.Top()
	if len(top) > TopKeys {
		t.Fatalf("Top returned %d keys", len(top))
	}
	found := map[string]bool{}
	for _, kc := range top[:3] {
		found[kc.Key] = true
	}
	// Each of hot-0, hot-1 and hot-2 was seen 1,000 times; 3 and 4 are cold here (i%5 >= 3).
	for _, want := range []string{"hot-0", "hot-1", "hot-2"} {
		if !found[want] {
			t.Fatalf("Top = %+v: %s is not among the first three", top, want)
		}
	}
	for i := 1; i < len(top); i++ {
		if top[i].Count > top[i-1].Count {
			t.Fatalf("Top not sorted: %+v", top)
		}
	}
	if top[0].Count < 1000 {
		t.Fatalf("hot key counted %d times, want at least 1000", top[0].Count)
	}
}

func TestKeysDecay(t *testing.T) {
	var k Keys[string]
	for range decayEvery - 1 {
		k.See(1, "old")
	}
	for range decayEvery {
		k.See(2, "new")
	}
	top := k.Top()
	if top[0].Key != "new" {
		t.Fatalf("after the hot key changed, Top = %+v", top)
	}
	old := top[1]
	if old.Key != "old" || old.Count >= decayEvery/2 {
		t.Fatalf("old key not decayed: %+v", top)
	}
}

func TestKeysConcurrent(t *testing.T) {
	var k Keys[int]
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 2000 {
				k.See(uint64(i%50+g), i%50+g)
			}
		})
	}
	wg.Wait()
	if len(k.Top()) != TopKeys {
		t.Fatalf("Top = %+v", k.Top())
	}
}

func TestKeyText(t *testing.T) {
	var k Keys[string]
	k.See(1, strings.Repeat("é", 100))
	if got := k.Top()[0].Key; len(got) > 70 || !strings.HasSuffix(got, "...") {
		t.Fatalf("long key shown as %q", got)
	}
}

func TestSeeDoesNotAllocate(t *testing.T) {
	var k Keys[string]
	i := uint64(0)
	keys := []string{"a", "b", "c"}
	if n := testing.AllocsPerRun(1000, func() {
		i++
		k.See(i, keys[i%3]) // a new hash every time: each takes a slot
	}); n != 0 {
		t.Fatalf("See allocates %v times", n)
	}
}
