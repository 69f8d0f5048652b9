package deadline

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestContext(t *testing.T) {
	t.Parallel()
	type key struct{}
	parent := context.WithValue(context.Background(), key{}, "v")
	at := time.Now().Add(time.Hour)
	c := Context{Context: parent, At: at}
	if d, ok := c.Deadline(); !ok || !d.Equal(at) {
		t.Fatalf("Deadline = %v, %v", d, ok)
	}
	if c.Err() != nil || c.Done() != nil || c.Value(key{}) != "v" {
		t.Fatalf("before the deadline: Err %v, Done %v, Value %v", c.Err(), c.Done(), c.Value(key{}))
	}
	past := Context{Context: parent, At: time.Now().Add(-time.Millisecond)}
	if !errors.Is(past.Err(), context.DeadlineExceeded) {
		t.Fatalf("past the deadline: %v", past.Err())
	}
}
