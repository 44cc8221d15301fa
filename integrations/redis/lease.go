package redis

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/runbookbot/runbookbot/engine"
)

// Leases make sure only one process drives a given execution. A lease is a
// key <prefix>lease:<executionID> holding the owner's name with a
// millisecond TTL: it is taken with SET NX PX, and only its owner may renew
// or release it (checked by a Lua script, so a process whose lease expired
// and was taken by another cannot touch the new owner's lease). When a
// process dies its lease expires and another can acquire the execution.
//
// Owners should be unique per process (for example hostname plus pid plus a
// random suffix). A driver renews its lease well within the TTL (say every
// TTL/3) and stops driving the execution as soon as Renew returns false;
// Hold does that in the background.

// acquireScript takes a free lease or refreshes one the caller already owns.
// KEYS[1] lease; ARGV[1] owner, ARGV[2] ttl in ms. Returns 1 when held.
var acquireScript = goredis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if cur then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`)

// renewScript extends the lease only for its owner.
var renewScript = goredis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`)

// releaseScript deletes the lease only for its owner.
var releaseScript = goredis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// ErrBadLease is returned for an empty owner or a TTL under a millisecond.
var ErrBadLease = errors.New("redis: lease needs an owner and a TTL of at least 1ms")

func leaseArgs(owner string, ttl time.Duration) error {
	if owner == "" || ttl < time.Millisecond {
		return ErrBadLease
	}
	return nil
}

// Acquire takes the lease on executionID for owner for ttl. It returns true
// when owner now holds the lease (a free lease was taken, or owner already
// held it and its TTL was reset) and false when another owner holds it.
func (s *Store) Acquire(ctx context.Context, executionID, owner string, ttl time.Duration) (bool, error) {
	if err := leaseArgs(owner, ttl); err != nil {
		return false, err
	}
	n, err := acquireScript.Run(ctx, s.client, []string{s.k.lease(executionID)}, owner, ttl.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("redis: acquire lease %s: %w", executionID, err)
	}
	return n == 1, nil
}

// Renew resets the TTL of owner's lease on executionID. It returns false,
// and changes nothing, when owner does not hold the lease (it expired, or
// another owner took it): the caller must then stop driving the execution.
func (s *Store) Renew(ctx context.Context, executionID, owner string, ttl time.Duration) (bool, error) {
	if err := leaseArgs(owner, ttl); err != nil {
		return false, err
	}
	n, err := renewScript.Run(ctx, s.client, []string{s.k.lease(executionID)}, owner, ttl.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("redis: renew lease %s: %w", executionID, err)
	}
	return n == 1, nil
}

// Release gives up owner's lease on executionID so another process can take
// it at once. It returns false when owner did not hold the lease.
func (s *Store) Release(ctx context.Context, executionID, owner string) (bool, error) {
	if owner == "" {
		return false, ErrBadLease
	}
	n, err := releaseScript.Run(ctx, s.client, []string{s.k.lease(executionID)}, owner).Int()
	if err != nil {
		return false, fmt.Errorf("redis: release lease %s: %w", executionID, err)
	}
	return n == 1, nil
}

// LeaseHolder returns who holds the lease on executionID and for how much
// longer; owner is "" when nobody does.
func (s *Store) LeaseHolder(ctx context.Context, executionID string) (owner string, ttl time.Duration, err error) {
	pipe := s.client.Pipeline()
	get := pipe.Get(ctx, s.k.lease(executionID))
	pttl := pipe.PTTL(ctx, s.k.lease(executionID))
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
		return "", 0, fmt.Errorf("redis: lease %s: %w", executionID, err)
	}
	if errors.Is(get.Err(), goredis.Nil) {
		return "", 0, nil
	}
	d := pttl.Val()
	if d < 0 {
		d = 0
	}
	return get.Val(), d, nil
}

// ErrLeaseHeld is returned by Hold when another owner holds the lease.
var ErrLeaseHeld = errors.New("redis: lease held by another owner")

// Lease is a lease that Hold keeps renewing in the background until it is
// released or lost.
type Lease struct {
	s         *Store
	id, owner string
	ttl       time.Duration

	lost     chan struct{}
	stop     chan struct{}
	done     chan struct{}
	lostOnce sync.Once
	stopOnce sync.Once
}

// Hold acquires the lease on executionID for owner and renews it every
// ttl/3 until Release. It fails with ErrLeaseHeld when another owner holds
// it. If a renewal finds the lease taken, or no renewal has succeeded for a
// whole ttl (Redis unreachable, so the lease may have expired), the lease
// is lost: Lost is closed and the caller must stop driving the execution.
// Renewals are timed by the store's lease clock (WithLeaseClock).
func (s *Store) Hold(ctx context.Context, executionID, owner string, ttl time.Duration) (*Lease, error) {
	ok, err := s.Acquire(ctx, executionID, owner, ttl)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrLeaseHeld, executionID)
	}
	l := &Lease{
		s: s, id: executionID, owner: owner, ttl: ttl,
		lost: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{}),
	}
	go l.keep(s.clock.Now())
	return l, nil
}

// Lost is closed when the lease is lost (not when it is released).
func (l *Lease) Lost() <-chan struct{} { return l.lost }

// ExecutionID returns the execution the lease is on.
func (l *Lease) ExecutionID() string { return l.id }

// Release stops renewing and gives the lease up, so another process can
// take the execution at once. Releasing a lost lease only stops renewing.
func (l *Lease) Release(ctx context.Context) error {
	l.stopOnce.Do(func() { close(l.stop) })
	<-l.done
	select {
	case <-l.lost:
		return nil
	default:
	}
	_, err := l.s.Release(ctx, l.id, l.owner)
	return err
}

func (l *Lease) markLost(reason string, err error) {
	l.lostOnce.Do(func() {
		l.s.log.Warn("lease lost", "execution", l.id, "owner", l.owner, "reason", reason, "err", err)
		close(l.lost)
	})
}

// keep renews the lease every ttl/3 until stopped or lost.
func (l *Lease) keep(lastOK time.Time) {
	defer close(l.done)
	clock := l.s.clock
	interval := max(l.ttl/3, time.Millisecond)
	for {
		t := clock.NewTimer(interval)
		select {
		case <-l.stop:
			t.Stop()
			return
		case <-t.C():
		}
		ctx, cancel := context.WithTimeout(context.Background(), interval)
		ok, err := l.s.Renew(ctx, l.id, l.owner, l.ttl)
		cancel()
		switch {
		case err == nil && ok:
			lastOK = clock.Now()
		case err == nil:
			l.markLost("taken by another owner", nil)
			return
		case clock.Now().Sub(lastOK) >= l.ttl:
			l.markLost("not renewed within its ttl", err)
			return
		default:
			l.s.log.Warn("lease renewal failed, will retry", "execution", l.id, "owner", l.owner, "err", err)
		}
	}
}

var _ engine.BatchLeaser = (*Store)(nil)

// acquireAllScript is acquireScript over every key of KEYS. For each it
// returns -1 when ARGV[1] holds the lease now, else the milliseconds the
// other owner's lease has left (0 when it has no expiry).
var acquireAllScript = goredis.NewScript(`
local out = {}
for i, k in ipairs(KEYS) do
  local cur = redis.call('GET', k)
  if cur == ARGV[1] then
    redis.call('PEXPIRE', k, ARGV[2])
    out[i] = -1
  elseif cur then
    local left = redis.call('PTTL', k)
    if left < 0 then left = 0 elseif left == 0 then left = 1 end
    out[i] = left
  else
    redis.call('SET', k, ARGV[1], 'PX', ARGV[2])
    out[i] = -1
  end
end
return out
`)

// renewAllScript is renewScript over every key of KEYS: 1 where ARGV[1]
// still holds the lease (now renewed), else 0.
var renewAllScript = goredis.NewScript(`
local out = {}
for i, k in ipairs(KEYS) do
  if redis.call('GET', k) == ARGV[1] then
    redis.call('PEXPIRE', k, ARGV[2])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
`)

// releaseAllScript deletes the keys of KEYS that ARGV[1] holds.
var releaseAllScript = goredis.NewScript(`
local n = 0
for _, k in ipairs(KEYS) do
  if redis.call('GET', k) == ARGV[1] then
    n = n + redis.call('DEL', k)
  end
end
return n
`)

// leaseBatch is how many leases one script call handles; a pipeline sends
// all the calls of a batch operation in one round trip.
const leaseBatch = 500

// runLeaseScript runs script over the lease keys of ids, leaseBatch keys
// per call, pipelined, and returns the answers of the calls in order.
func (s *Store) runLeaseScript(ctx context.Context, script *goredis.Script, ids []string, args ...any) ([]*goredis.Cmd, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	for attempt := 0; ; attempt++ {
		pipe := s.client.Pipeline()
		var cmds []*goredis.Cmd
		for lo := 0; lo < len(ids); lo += leaseBatch {
			chunk := ids[lo:min(lo+leaseBatch, len(ids))]
			keys := make([]string, len(chunk))
			for i, id := range chunk {
				keys[i] = s.k.lease(id)
			}
			cmds = append(cmds, pipe.EvalSha(ctx, script.Hash(), keys, args...))
		}
		_, err := pipe.Exec(ctx)
		if err == nil {
			return cmds, nil
		}
		if attempt > 0 || !goredis.HasErrorPrefix(err, "NOSCRIPT") {
			return nil, err
		}
		// First use on this server (or it restarted): load and retry.
		if err := script.Load(ctx, s.client).Err(); err != nil {
			return nil, err
		}
	}
}

// AcquireAll tries to take the leases on ids for owner, as Acquire does
// for each, in a few pipelined script calls. For a lease another owner
// holds it reports how long that lease has left.
func (s *Store) AcquireAll(ctx context.Context, ids []string, owner string, ttl time.Duration) ([]engine.LeaseState, error) {
	if err := leaseArgs(owner, ttl); err != nil {
		return nil, err
	}
	cmds, err := s.runLeaseScript(ctx, acquireAllScript, ids, owner, ttl.Milliseconds())
	if err != nil {
		return nil, fmt.Errorf("redis: acquire %d leases: %w", len(ids), err)
	}
	out := make([]engine.LeaseState, 0, len(ids))
	for _, c := range cmds {
		vals, err := c.Int64Slice()
		if err != nil {
			return nil, fmt.Errorf("redis: acquire %d leases: %w", len(ids), err)
		}
		for _, v := range vals {
			if v < 0 {
				out = append(out, engine.LeaseState{Held: true})
			} else {
				out = append(out, engine.LeaseState{Left: time.Duration(v) * time.Millisecond})
			}
		}
	}
	if len(out) != len(ids) {
		return nil, fmt.Errorf("redis: acquire %d leases: %d answers", len(ids), len(out))
	}
	return out, nil
}

// RenewAll renews owner's leases on ids, as Renew does for each, and
// reports which owner still holds.
func (s *Store) RenewAll(ctx context.Context, ids []string, owner string, ttl time.Duration) ([]bool, error) {
	if err := leaseArgs(owner, ttl); err != nil {
		return nil, err
	}
	cmds, err := s.runLeaseScript(ctx, renewAllScript, ids, owner, ttl.Milliseconds())
	if err != nil {
		return nil, fmt.Errorf("redis: renew %d leases: %w", len(ids), err)
	}
	out := make([]bool, 0, len(ids))
	for _, c := range cmds {
		vals, err := c.Int64Slice()
		if err != nil {
			return nil, fmt.Errorf("redis: renew %d leases: %w", len(ids), err)
		}
		for _, v := range vals {
			out = append(out, v == 1)
		}
	}
	if len(out) != len(ids) {
		return nil, fmt.Errorf("redis: renew %d leases: %d answers", len(ids), len(out))
	}
	return out, nil
}

// ReleaseAll gives up owner's leases on ids, as Release does for each;
// leases other owners hold are left alone.
func (s *Store) ReleaseAll(ctx context.Context, ids []string, owner string) error {
	if owner == "" {
		return ErrBadLease
	}
	cmds, err := s.runLeaseScript(ctx, releaseAllScript, ids, owner)
	if err != nil {
		return fmt.Errorf("redis: release %d leases: %w", len(ids), err)
	}
	for _, c := range cmds {
		if err := c.Err(); err != nil {
			return fmt.Errorf("redis: release %d leases: %w", len(ids), err)
		}
	}
	return nil
}
