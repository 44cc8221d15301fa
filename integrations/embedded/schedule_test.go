package embedded_test

import (
	"context"
	"testing"
	"time"

	"github.com/runbookbot/runbookbot/commands/schedule"
	"github.com/runbookbot/runbookbot/commands/schedule/scheduletest"
	"github.com/runbookbot/runbookbot/integrations/embedded"
)

func TestSchedulesStoreSuite(t *testing.T) {
	var dir string
	scheduletest.RunStoreSuite(t, func(t *testing.T, reopen bool) schedule.Store {
		if !reopen {
			dir = t.TempDir()
		}
		s, err := embedded.OpenSchedules(dir)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestIdempotencyKeysSurviveARestartAndExpire(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	ctx := context.Background()
	k, err := embedded.OpenIdempotencyKeys(dir, clock)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := k.Remember(ctx, "key", "pending", time.Minute); err != nil || got != "pending" {
		t.Fatalf("Remember = %q, %v", got, err)
	}
	if err := k.Set(ctx, "key", "exec-1", 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := k.Forget(ctx, "key", "pending"); err != nil {
		t.Fatal(err)
	}

	// A restart reads the binding back.
	k, err = embedded.OpenIdempotencyKeys(dir, clock)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := k.Remember(ctx, "key", "other", time.Minute); got != "exec-1" {
		t.Fatalf("after a restart the key is bound to %q, want exec-1", got)
	}
	now = now.Add(24*time.Hour + time.Second)
	if got, _ := k.Remember(ctx, "key", "other", time.Minute); got != "other" {
		t.Fatalf("after its time to live the key is bound to %q, want it free", got)
	}
}
