package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Schedules keeps the scheduler's shared state beside a Store, so that
// replicas fire each tick once and agree on pauses (it implements
// schedule.Store):
//
//	<prefix>schedule:last   hash: schedule name → latest claimed tick (Unix ms)
//	<prefix>schedule:pause  hash: schedule name → pause record (the scheduler's JSON)
//
// A claim is one Lua script on one key, so of replicas claiming a tick at
// the same moment exactly one wins, on a Cluster too.
type Schedules struct {
	c      goredis.UniversalClient
	prefix string
}

// NewSchedules returns the schedule state kept beside s.
func NewSchedules(s *Store) *Schedules { return &Schedules{c: s.Client(), prefix: s.Prefix()} }

func (s *Schedules) lastKey() string  { return s.prefix + "schedule:last" }
func (s *Schedules) pauseKey() string { return s.prefix + "schedule:pause" }

// claimTick sets field ARGV[1] of KEYS[1] to ARGV[2] when it holds less.
var claimTick = goredis.NewScript(`
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur and tonumber(cur) >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1`)

// Claim records tick as the schedule's latest unless a tick at or after it
// was claimed, and reports whether this call claimed it.
func (s *Schedules) Claim(ctx context.Context, schedule string, tick time.Time) (bool, error) {
	n, err := claimTick.Run(ctx, s.c, []string{s.lastKey()}, schedule, strconv.FormatInt(tick.UnixMilli(), 10)).Int()
	if err != nil {
		return false, fmt.Errorf("redis: claiming a tick of schedule %s: %w", schedule, err)
	}
	return n == 1, nil
}

// Ticks returns the latest claimed tick of every schedule.
func (s *Schedules) Ticks(ctx context.Context) (map[string]time.Time, error) {
	m, err := s.c.HGetAll(ctx, s.lastKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("redis: reading schedule ticks: %w", err)
	}
	out := make(map[string]time.Time, len(m))
	for name, v := range m {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("redis: schedule %s: bad tick %q", name, v)
		}
		out[name] = time.UnixMilli(ms).UTC()
	}
	return out, nil
}

// SavePause replaces the schedule's pause record.
func (s *Schedules) SavePause(ctx context.Context, schedule string, record []byte) error {
	if err := s.c.HSet(ctx, s.pauseKey(), schedule, record).Err(); err != nil {
		return fmt.Errorf("redis: saving the pause of schedule %s: %w", schedule, err)
	}
	return nil
}

// Pauses returns every schedule's pause record.
func (s *Schedules) Pauses(ctx context.Context) (map[string][]byte, error) {
	m, err := s.c.HGetAll(ctx, s.pauseKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("redis: reading schedule pauses: %w", err)
	}
	out := make(map[string][]byte, len(m))
	for name, v := range m {
		out[name] = []byte(v)
	}
	return out, nil
}

// IdempotencyKeys remembers the API's Idempotency-Keys beside a Store, so
// that a retry reaching another replica finds the first attempt:
//
//	<prefix>idempotency:<key>  string, expiring
type IdempotencyKeys struct {
	c      goredis.UniversalClient
	prefix string
}

// NewIdempotencyKeys returns the key store kept beside s.
func NewIdempotencyKeys(s *Store) *IdempotencyKeys {
	return &IdempotencyKeys{c: s.Client(), prefix: s.Prefix()}
}

func (k *IdempotencyKeys) key(name string) string { return k.prefix + "idempotency:" + name }

// Remember binds key to value for ttl unless it is bound, and returns what
// key is bound to (value, when this call bound it).
func (k *IdempotencyKeys) Remember(ctx context.Context, key, value string, ttl time.Duration) (string, error) {
	got, err := k.c.SetArgs(ctx, k.key(key), value, goredis.SetArgs{Mode: "NX", TTL: ttl, Get: true}).Result()
	if errors.Is(err, goredis.Nil) {
		return value, nil // it was free
	}
	if err != nil {
		return "", fmt.Errorf("redis: remembering an idempotency key: %w", err)
	}
	return got, nil
}

// Set binds key to value for ttl, whatever it was bound to.
func (k *IdempotencyKeys) Set(ctx context.Context, key, value string, ttl time.Duration) error {
	if err := k.c.Set(ctx, k.key(key), value, ttl).Err(); err != nil {
		return fmt.Errorf("redis: saving an idempotency key: %w", err)
	}
	return nil
}

// forgetIf deletes KEYS[1] when it holds ARGV[1].
var forgetIf = goredis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)

// Forget unbinds key when it is still bound to value.
func (k *IdempotencyKeys) Forget(ctx context.Context, key, value string) error {
	if err := forgetIf.Run(ctx, k.c, []string{k.key(key)}, value).Err(); err != nil && !errors.Is(err, goredis.Nil) {
		return fmt.Errorf("redis: forgetting an idempotency key: %w", err)
	}
	return nil
}
