package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// ChatViews keeps the chat view's records and cursor in Redis beside a
// Store (the bot's ViewStore), so every replica sees what every
// conversation was shown:
//
//	<prefix>chatview:cursor      string: the cursor (only ever raised)
//	<prefix>chatview:<execution> string: the execution's record (JSON)
//	<prefix>chatview:leader      string: the replica showing the log, with
//	                             the lease's expiry (PX)
//
// One replica at a time shows the log (it holds the lease, see Lead); it
// raises the cursor past an event once the event's execution is shown. A
// replica that takes the lease over reads from the cursor and re-renders
// every execution whose record lags its events.
type ChatViews struct {
	c      goredis.UniversalClient
	prefix string
}

// NewChatViews returns the chat view store of s.
func NewChatViews(s *Store) *ChatViews { return &ChatViews{c: s.Client(), prefix: s.Prefix()} }

// raiseCursor sets the cursor to ARGV[1] unless it is already higher.
var raiseCursor = goredis.NewScript(`
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local want = tonumber(ARGV[1])
if want > cur then redis.call('SET', KEYS[1], ARGV[1]) end
return 1`)

// lead takes the lease KEYS[1] for ARGV[1] (or renews it) for ARGV[2] ms.
var lead = goredis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if (not cur) or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0`)

// resign deletes the lease KEYS[1] when ARGV[1] holds it.
var resign = goredis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)

func (v *ChatViews) leaderKey() string          { return v.prefix + "chatview:leader" }
func (v *ChatViews) cursorKey() string          { return v.prefix + "chatview:cursor" }
func (v *ChatViews) recordKey(id string) string { return v.prefix + "chatview:" + id }

// Cursor returns the saved cursor.
func (v *ChatViews) Cursor(ctx context.Context) (uint64, error) {
	s, err := v.c.Get(ctx, v.cursorKey()).Result()
	if errors.Is(err, goredis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("redis: reading the chat view cursor: %w", err)
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("redis: chat view cursor %q: %w", s, err)
	}
	return n, nil
}

// SetCursor raises the cursor.
func (v *ChatViews) SetCursor(ctx context.Context, pos uint64) error {
	if err := raiseCursor.Run(ctx, v.c, []string{v.cursorKey()}, strconv.FormatUint(pos, 10)).Err(); err != nil {
		return fmt.Errorf("redis: saving the chat view cursor: %w", err)
	}
	return nil
}

// Load returns an execution's record, or nil.
func (v *ChatViews) Load(ctx context.Context, id string) ([]byte, error) {
	b, err := v.c.Get(ctx, v.recordKey(id)).Bytes()
	if errors.Is(err, goredis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("redis: reading a chat view record: %w", err)
	}
	return b, nil
}

// Save replaces an execution's record.
func (v *ChatViews) Save(ctx context.Context, id string, record []byte) error {
	if err := v.c.Set(ctx, v.recordKey(id), record, 0).Err(); err != nil {
		return fmt.Errorf("redis: saving a chat view record: %w", err)
	}
	return nil
}

// Lead takes the view lease for owner, or renews it when owner holds it,
// for ttl (the bot's ViewLease); it reports whether owner holds it.
func (v *ChatViews) Lead(ctx context.Context, owner string, ttl time.Duration) (bool, error) {
	if owner == "" || ttl < time.Millisecond {
		return false, errors.New("redis: a view lease needs an owner and a ttl of 1ms or more")
	}
	n, err := lead.Run(ctx, v.c, []string{v.leaderKey()}, owner, ttl.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("redis: taking the chat view lease: %w", err)
	}
	return n == 1, nil
}

// Resign gives the view lease up when owner holds it.
func (v *ChatViews) Resign(ctx context.Context, owner string) error {
	if err := resign.Run(ctx, v.c, []string{v.leaderKey()}, owner).Err(); err != nil {
		return fmt.Errorf("redis: giving the chat view lease up: %w", err)
	}
	return nil
}

// Leader returns the replica holding the view lease ("" when none).
func (v *ChatViews) Leader(ctx context.Context) (string, error) {
	s, err := v.c.Get(ctx, v.leaderKey()).Result()
	if errors.Is(err, goredis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("redis: reading the chat view lease: %w", err)
	}
	return s, nil
}
