package fill_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/typedcache/groupcache/fill"
)

func Example() {
	g := fill.New[int, string](time.Second, nil)

	// Concurrent callers of Do with the same key share one run of the load function; the
	// caller that started it gets shared == false, the others true.
	v, err, shared := g.Do(context.Background(), 42, func(ctx context.Context) (string, error) {
		return "user 42", nil
	})
	fmt.Println(v, err, shared)

	// Nothing is cached: the next Do runs the load function again.
	v, _, _ = g.Do(context.Background(), 42, func(ctx context.Context) (string, error) {
		return "user 42, reloaded", nil
	})
	fmt.Println(v)
	// Output:
	// user 42 <nil> false
	// user 42, reloaded
}

func ExampleGroup_Do_timeout() {
	g := fill.New[string, int](10*time.Millisecond, nil)
	_, err, _ := g.Do(context.Background(), "slow", func(ctx context.Context) (int, error) {
		<-ctx.Done() // the load's context ends after the group's timeout
		return 0, ctx.Err()
	})
	fmt.Println(err, errors.Is(err, context.DeadlineExceeded))
	// Output: fill: load timed out true
}

func ExampleGroup_Do_panic() {
	g := fill.New[string, int](0, nil)
	_, err, _ := g.Do(context.Background(), "bad", func(ctx context.Context) (int, error) {
		panic("corrupt record")
	})
	var pe *fill.PanicError
	if errors.As(err, &pe) {
		fmt.Println("load panicked:", pe.Value)
	}
	// Output: load panicked: corrupt record
}

func ExampleGroup_DoMany() {
	g := fill.New[int, string](time.Second, nil)
	users := map[int]string{1: "ann", 2: "bob"}

	// One call of the batch function loads every key nobody else is loading; each key's result
	// is reported with set, by its index in the keys the function was given.
	res := g.DoMany(context.Background(), []int{1, 2, 3}, func(ctx context.Context, ids []int, set func(int, string, error)) {
		for i, id := range ids {
			if name, ok := users[id]; ok {
				set(i, name, nil)
			} else {
				set(i, "", fmt.Errorf("user %d not found", id))
			}
		}
	})
	for _, r := range res {
		fmt.Printf("%q %v %v\n", r.Val, r.Err, r.Shared)
	}
	// Output:
	// "ann" <nil> false
	// "bob" <nil> false
	// "" user 3 not found false
}
