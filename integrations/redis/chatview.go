package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	goredis "github.com/redis/go-redis/v9"
)

// ChatViews keeps the chat view's records and cursor in Redis beside a
// Store (the bot's ViewStore), so every replica sees what every
// conversation was shown:
//
//	<prefix>chatview:cursor      string: the cursor (only ever raised)
//	<prefix>chatview:<execution> string: the execution's record (JSON)
//
// Any replica may raise the cursor: it moves past an event only once the
// event's execution is shown, whoever showed it.
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
