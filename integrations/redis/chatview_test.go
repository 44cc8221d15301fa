package redis

import (
	"context"
	"strconv"
	"testing"
	"time"
)

func newChatViews(t *testing.T) (*ChatViews, *Store) {
	t.Helper()
	srv := startRedis(t)
	s, err := NewStore(context.Background(), srv.URL(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return NewChatViews(s), s
}

// What one replica saves, another (a new ChatViews on the same server, as
// after a restart) reads; the cursor never moves backwards; an execution
// never shown has no record.
func TestChatViewsRecordsAndCursor(t *testing.T) {
	ctx := context.Background()
	a, s := newChatViews(t)
	if got, err := a.Cursor(ctx); err != nil || got != 0 {
		t.Fatalf("fresh cursor = %d, %v; want 0", got, err)
	}
	if err := a.Save(ctx, "e1", []byte(`{"seq":3}`)); err != nil {
		t.Fatal(err)
	}
	if err := a.Save(ctx, "e1", []byte(`{"seq":5}`)); err != nil {
		t.Fatal(err)
	}
	if err := a.SetCursor(ctx, 42); err != nil {
		t.Fatal(err)
	}
	if err := a.SetCursor(ctx, 7); err != nil {
		t.Fatal(err)
	}
	b := NewChatViews(s)
	for _, tc := range []struct {
		name string
		got  func() (string, error)
		want string
	}{
		{"cursor never backwards", func() (string, error) { n, err := b.Cursor(ctx); return itoa(n), err }, "42"},
		{"latest record", func() (string, error) { r, err := b.Load(ctx, "e1"); return string(r), err }, `{"seq":5}`},
		{"no record", func() (string, error) { r, err := b.Load(ctx, "e2"); return string(r), err }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.got()
			if err != nil || got != tc.want {
				t.Errorf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

// One replica at a time holds the view lease: the holder renews it, the
// other is refused until it expires or is given up, and then takes it.
func TestChatViewsLease(t *testing.T) {
	ctx := context.Background()
	v, _ := newChatViews(t)
	lead := func(owner string, ttl time.Duration) bool {
		t.Helper()
		ok, err := v.Lead(ctx, owner, ttl)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !lead("a", time.Minute) {
		t.Fatal("a could not take a free lease")
	}
	if lead("b", time.Minute) {
		t.Fatal("b took a lease a holds")
	}
	if !lead("a", time.Minute) {
		t.Fatal("a could not renew its lease")
	}
	if who, _ := v.Leader(ctx); who != "a" {
		t.Fatalf("leader = %q, want a", who)
	}
	if err := v.Resign(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if lead("b", time.Minute) {
		t.Fatal("b's resignation released a's lease")
	}
	if err := v.Resign(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if !lead("b", 50*time.Millisecond) {
		t.Fatal("b could not take the lease a gave up")
	}
	// b dies (stops renewing): a takes over once the lease expires.
	deadline := time.Now().Add(5 * time.Second)
	for !lead("a", time.Minute) {
		if time.Now().After(deadline) {
			t.Fatal("a never took over the expired lease")
		}
		time.Sleep(10 * time.Millisecond) // the lease is expiring in Redis
	}
	if _, err := v.Lead(ctx, "", time.Second); err == nil {
		t.Error("a lease without an owner was accepted")
	}
}
