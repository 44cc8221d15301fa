package redis

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/runbookbot/runbookbot/engine/enginetest"
)

func TestLeaseOneOwnerWins(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t)
	ok, err := s.Acquire(ctx, "e1", "alice", time.Minute)
	if err != nil || !ok {
		t.Fatalf("alice Acquire = %v, %v", ok, err)
	}
	if ok, err := s.Acquire(ctx, "e1", "bob", time.Minute); err != nil || ok {
		t.Fatalf("bob Acquire = %v, %v; want false", ok, err)
	}
	// Re-acquiring one's own lease succeeds (and refreshes it).
	if ok, err := s.Acquire(ctx, "e1", "alice", time.Minute); err != nil || !ok {
		t.Fatalf("alice re-Acquire = %v, %v", ok, err)
	}
	// Another execution is independent.
	if ok, _ := s.Acquire(ctx, "e2", "bob", time.Minute); !ok {
		t.Fatal("bob could not take e2")
	}
	owner, ttl, err := s.LeaseHolder(ctx, "e1")
	if err != nil || owner != "alice" || ttl <= 0 || ttl > time.Minute {
		t.Fatalf("LeaseHolder = %q, %v, %v", owner, ttl, err)
	}
	if owner, _, _ := s.LeaseHolder(ctx, "free"); owner != "" {
		t.Fatalf("free lease held by %q", owner)
	}
}

func TestLeaseRenewAndReleaseByOwnerOnly(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t)
	if ok, _ := s.Acquire(ctx, "e", "alice", 10*time.Second); !ok {
		t.Fatal("alice could not acquire")
	}
	if ok, err := s.Renew(ctx, "e", "bob", time.Hour); err != nil || ok {
		t.Fatalf("bob Renew = %v, %v; want false", ok, err)
	}
	if _, ttl, _ := s.LeaseHolder(ctx, "e"); ttl > 10*time.Second {
		t.Fatalf("bob's renew extended the lease to %v", ttl)
	}
	if ok, err := s.Renew(ctx, "e", "alice", time.Hour); err != nil || !ok {
		t.Fatalf("alice Renew = %v, %v", ok, err)
	}
	if _, ttl, _ := s.LeaseHolder(ctx, "e"); ttl <= 10*time.Second {
		t.Fatalf("alice's renew left ttl %v", ttl)
	}
	if ok, err := s.Release(ctx, "e", "bob"); err != nil || ok {
		t.Fatalf("bob Release = %v, %v; want false", ok, err)
	}
	if owner, _, _ := s.LeaseHolder(ctx, "e"); owner != "alice" {
		t.Fatalf("after bob's release the owner is %q", owner)
	}
	if ok, err := s.Release(ctx, "e", "alice"); err != nil || !ok {
		t.Fatalf("alice Release = %v, %v", ok, err)
	}
	if ok, _ := s.Renew(ctx, "e", "alice", time.Hour); ok {
		t.Fatal("renewed a released lease")
	}
	if ok, _ := s.Acquire(ctx, "e", "bob", time.Minute); !ok {
		t.Fatal("bob could not take the released lease")
	}
	if _, err := s.Acquire(ctx, "e", "", time.Minute); !errors.Is(err, ErrBadLease) {
		t.Fatalf("empty owner: %v", err)
	}
	if _, err := s.Renew(ctx, "e", "bob", 0); !errors.Is(err, ErrBadLease) {
		t.Fatalf("zero ttl: %v", err)
	}
}

func TestLeaseExpiryLetsAnotherTakeOver(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t)
	if ok, _ := s.Acquire(ctx, "e", "dead-process", 50*time.Millisecond); !ok {
		t.Fatal("could not acquire")
	}
	if ok, _ := s.Acquire(ctx, "e", "survivor", time.Minute); ok {
		t.Fatal("took a live lease")
	}
	// The first owner never renews; its lease expires in Redis.
	eventually(t, 5*time.Second, "the survivor to take the expired lease", func() bool {
		ok, err := s.Acquire(ctx, "e", "survivor", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	})
	if ok, _ := s.Renew(ctx, "e", "dead-process", time.Minute); ok {
		t.Fatal("the expired owner renewed the survivor's lease")
	}
	if ok, _ := s.Release(ctx, "e", "dead-process"); ok {
		t.Fatal("the expired owner released the survivor's lease")
	}
	if owner, _, _ := s.LeaseHolder(ctx, "e"); owner != "survivor" {
		t.Fatalf("owner = %q", owner)
	}
}

func TestLeaseRace(t *testing.T) {
	ctx := context.Background()
	srv := sharedRedis(t)
	prefix := testPrefix(t)
	// Twenty processes (each its own store and connection pool) race.
	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		s, err := NewStore(ctx, srv.URL(0), WithPrefix(prefix))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := s.Acquire(ctx, "contended", fmt.Sprintf("p%d", i), time.Minute)
			if err != nil {
				t.Error(err)
			}
			if ok {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d owners won the lease", wins.Load())
	}
}

func TestHoldRenewsUntilReleased(t *testing.T) {
	ctx := context.Background()
	clock := enginetest.NewFakeClock(tBase)
	s := newTestStore(t, WithLeaseClock(clock))
	l, err := s.Hold(ctx, "e", "alice", 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Hold(ctx, "e", "bob", 3*time.Second); !errors.Is(err, ErrLeaseHeld) {
		t.Fatalf("second Hold: %v, want ErrLeaseHeld", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// Shorten the lease in Redis; the next renewal (ttl/3 later on the
	// lease clock) must put the full ttl back.
	if err := s.client.PExpire(ctx, s.k.lease("e"), time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	if err := clock.WaitTimers(wctx, 1); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	eventually(t, 10*time.Second, "the lease renewed", func() bool {
		_, ttl, _ := s.LeaseHolder(ctx, "e")
		return ttl > 2*time.Second
	})
	select {
	case <-l.Lost():
		t.Fatal("lease reported lost")
	default:
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if owner, _, _ := s.LeaseHolder(ctx, "e"); owner != "" {
		t.Fatalf("released lease held by %q", owner)
	}
	if ok, _ := s.Acquire(ctx, "e", "bob", time.Minute); !ok {
		t.Fatal("bob could not take the released lease")
	}
}

func TestHoldLostWhenTaken(t *testing.T) {
	ctx := context.Background()
	clock := enginetest.NewFakeClock(tBase)
	s := newTestStore(t, WithLeaseClock(clock))
	l, err := s.Hold(ctx, "e", "alice", 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// As if alice stalled past her ttl and bob took over.
	if err := s.client.Set(ctx, s.k.lease("e"), "bob", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := clock.WaitTimers(wctx, 1); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	select {
	case <-l.Lost():
	case <-wctx.Done():
		t.Fatal("lease not reported lost")
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if owner, _, _ := s.LeaseHolder(ctx, "e"); owner != "bob" {
		t.Fatalf("alice's release of a lost lease left owner %q", owner)
	}
}

func TestHoldLostWhenRedisUnreachable(t *testing.T) {
	ctx := context.Background()
	srv := startRedis(t)
	clock := enginetest.NewFakeClock(tBase)
	s, err := NewStore(ctx, srv.URL(0)+"?max_retries=0&dial_timeout=200ms", WithLeaseClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	l, err := s.Hold(ctx, "e", "alice", 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	// Failed renewals at 1s and 2s are retried; at 3s the ttl has passed
	// without a renewal and the lease must be given up.
	for i := 1; i <= 3; i++ {
		if err := clock.WaitTimers(wctx, 1); err != nil {
			t.Fatalf("renewal %d never scheduled: %v", i, err)
		}
		select {
		case <-l.Lost():
			t.Fatalf("lease lost after %d failed renewals, before its ttl", i-1)
		default:
		}
		clock.Advance(time.Second)
	}
	select {
	case <-l.Lost():
	case <-wctx.Done():
		t.Fatal("lease not reported lost after its ttl")
	}
}
