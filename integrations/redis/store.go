package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	goredis "github.com/redis/go-redis/v9"

	"github.com/runbookbot/runbookbot/engine"
)

var _ engine.Store = (*Store)(nil)

// ErrSequence is returned (wrapped) by Append when the events of an
// execution do not continue its stored Seq numbering by one each.
var ErrSequence = errors.New("redis: events out of sequence")

// Store is an engine.Store kept in Redis. It is safe for concurrent use, and
// several processes may share one store: appends are checked and applied by
// a Lua script, so Seq numbering and Pos assignment stay consistent across
// replicas. Leases (Acquire, Renew, Release) tell replicas which one drives
// an execution.
type Store struct {
	client    goredis.UniversalClient
	ownClient bool
	k         keys
	log       *slog.Logger
	clock     engine.Clock

	cacheSize int
	mu        sync.Mutex
	cache     map[string]engine.Summary // running executions, by id

	closeOnce sync.Once
}

// NewStore connects to the Redis named by url (see NewClient for the forms)
// and checks it answers. The store owns the client and closes it on Close.
func NewStore(ctx context.Context, url string, opts ...Option) (*Store, error) {
	c, err := NewClient(url)
	if err != nil {
		return nil, err
	}
	s, err := NewStoreWithClient(ctx, c, opts...)
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	s.ownClient = true
	return s, nil
}

// NewStoreWithClient makes a store on an existing client, which Close leaves
// open. On a Cluster client a prefix without hash tag gets one (see the
// package documentation).
func NewStoreWithClient(ctx context.Context, c goredis.UniversalClient, opts ...Option) (*Store, error) {
	cfg := defaultStoreConfig()
	for _, o := range opts {
		o(&cfg)
	}
	if err := c.Ping(ctx).Err(); err != nil {
		return nil, fmt.Errorf("redis: ping: %w", err)
	}
	return &Store{
		client:    c,
		k:         keys{clusterSafePrefix(cfg.prefix, isCluster(c))},
		log:       cfg.logger,
		clock:     cfg.clock,
		cacheSize: cfg.cacheSize,
		cache:     map[string]engine.Summary{},
	}, nil
}

// Client returns the underlying go-redis client, for example to give it to
// NewMirror.
func (s *Store) Client() goredis.UniversalClient { return s.client }

// Prefix returns the key prefix in use (with the hash tag added on Cluster).
func (s *Store) Prefix() string { return s.k.p }

// Close releases the client if the store opened it.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		if s.ownClient {
			err = s.client.Close()
		}
	})
	return err
}

// appendScript checks and applies one Append call atomically.
//
// KEYS: pos counter, global log stream, unfinished set, then for each
// execution its event list, its summary and its index keys.
// ARGV: nexec, nevents; per execution: id, expected stored event count,
// summary JSON, unfinished flag ("1"/"0"), index score, index key count;
// per event: execution number (1-based), seq, event JSON without pos.
// Returns {1, last pos} or {0, execution number, stored count}.
var appendScript = goredis.NewScript(`
local nexec = tonumber(ARGV[1])
local nev = tonumber(ARGV[2])
local execs = {}
local k, a = 4, 3
for i = 1, nexec do
  local e = {ev = KEYS[k], sum = KEYS[k+1], id = ARGV[a], summary = ARGV[a+2],
    unfinished = ARGV[a+3], score = ARGV[a+4], idx = {}}
  local nidx = tonumber(ARGV[a+5])
  for j = 1, nidx do e.idx[j] = KEYS[k+1+j] end
  k = k + 2 + nidx
  local have = redis.call('LLEN', e.ev)
  if have ~= tonumber(ARGV[a+1]) then return {0, i, have} end
  a = a + 6
  execs[i] = e
end
local last = redis.call('INCRBY', KEYS[1], nev)
local pos = last - nev
for j = 1, nev do
  local e = execs[tonumber(ARGV[a])]
  pos = pos + 1
  local p = string.format('%d', pos)
  redis.call('RPUSH', e.ev, '{"pos":' .. p .. ',' .. string.sub(ARGV[a+2], 2))
  redis.call('XADD', KEYS[2], p .. '-0', 'e', e.id, 's', ARGV[a+1])
  a = a + 3
end
for i = 1, nexec do
  local e = execs[i]
  redis.call('SET', e.sum, e.summary)
  for j = 1, #e.idx do redis.call('ZADD', e.idx[j], e.score, e.id) end
  if e.unfinished == '1' then
    redis.call('SADD', KEYS[3], e.id)
  else
    redis.call('SREM', KEYS[3], e.id)
  end
end
return {1, last}
`)

// appendGroup is the part of one Append call that concerns one execution.
type appendGroup struct {
	id     string
	events []engine.Event
	base   engine.Summary // summary before these events
	next   engine.Summary // summary after them
}

// Append persists events atomically: either all are stored or none. Events
// of one execution must continue its Seq numbering (starting at 1) without
// gaps, or Append fails with ErrSequence. The store assigns Pos.
//
// Append is idempotent: events identical to ones already stored at their
// Seq (a retry after a failure that left it unknown whether the first try
// went through) succeed without being stored again.
//
// Durability is that of the Redis server: run it with appendonly yes (and
// appendfsync always where losing the last second on a crash matters).
func (s *Store) Append(ctx context.Context, events ...engine.Event) error {
	if len(events) == 0 {
		return nil
	}
	groups, order, err := groupEvents(events)
	if err != nil {
		return err
	}
	payload, err := encodeEvents(events)
	if err != nil {
		return err
	}
	fresh := false
	for attempt := 0; attempt < 3; attempt++ {
		if err := s.loadBases(ctx, groups, fresh); err != nil {
			if errors.Is(err, ErrSequence) {
				if dup, derr := s.alreadyStored(ctx, groups, order, payload); derr == nil && dup {
					return nil
				}
			}
			return err
		}
		keys, args := s.appendArgs(groups, events, order, payload)
		res, err := appendScript.Run(ctx, s.client, keys, args...).Slice()
		if err != nil {
			return fmt.Errorf("redis: append: %w", err)
		}
		if ok, _ := res[0].(int64); ok == 1 {
			s.remember(groups)
			return nil
		}
		// Another writer appended in between, or our cache was stale:
		// reload the summaries from Redis and check again.
		i, _ := res[1].(int64)
		s.forget(groups[i-1].id)
		fresh = true
	}
	return fmt.Errorf("%w: execution kept changing under concurrent appends", ErrSequence)
}

// alreadyStored reports whether every event of the call is stored already,
// byte for byte apart from its pos.
func (s *Store) alreadyStored(ctx context.Context, groups []*appendGroup, order []int, payload []string) (bool, error) {
	pipe := s.client.Pipeline()
	cmds := make([]*goredis.StringSliceCmd, len(groups))
	for i, g := range groups {
		first, last := g.events[0].Seq, g.events[len(g.events)-1].Seq
		cmds[i] = pipe.LRange(ctx, s.k.events(g.id), first-1, last-1)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return false, err
	}
	next := make([]int, len(groups))
	for i, p := range payload {
		gi := order[i]
		stored := cmds[gi].Val()
		if next[gi] >= len(stored) || stripPos(stored[next[gi]]) != p {
			return false, nil
		}
		next[gi]++
	}
	return true, nil
}

// stripPos undoes what the append script does to an event's JSON.
func stripPos(stored string) string {
	rest, ok := strings.CutPrefix(stored, `{"pos":`)
	if !ok {
		return stored
	}
	_, after, ok := strings.Cut(rest, ",")
	if !ok {
		return stored
	}
	return "{" + after
}

// encodeEvents marshals events without Pos: the append script puts the
// assigned pos in front of each.
func encodeEvents(events []engine.Event) ([]string, error) {
	payload := make([]string, len(events))
	for i, e := range events {
		e.Pos = 0
		b, err := json.Marshal(e)
		if err != nil {
			return nil, fmt.Errorf("redis: encode event %s/%d: %w", e.ExecutionID, e.Seq, err)
		}
		payload[i] = string(b)
	}
	return payload, nil
}

// groupEvents splits events by execution, keeping first-seen order, and
// checks that each execution's Seq values are consecutive.
func groupEvents(events []engine.Event) ([]*appendGroup, []int, error) {
	var groups []*appendGroup
	byID := map[string]int{}
	order := make([]int, len(events))
	for i, e := range events {
		if e.ExecutionID == "" {
			return nil, nil, fmt.Errorf("redis: event %d has no execution id", i)
		}
		gi, ok := byID[e.ExecutionID]
		if !ok {
			gi = len(groups)
			byID[e.ExecutionID] = gi
			groups = append(groups, &appendGroup{id: e.ExecutionID})
		}
		g := groups[gi]
		if n := len(g.events); n > 0 && e.Seq != g.events[n-1].Seq+1 {
			return nil, nil, fmt.Errorf("%w: %s seq %d follows %d", ErrSequence, e.ExecutionID, e.Seq, g.events[n-1].Seq)
		}
		if e.Seq < 1 {
			return nil, nil, fmt.Errorf("%w: %s seq %d (seq starts at 1)", ErrSequence, e.ExecutionID, e.Seq)
		}
		g.events = append(g.events, e)
		order[i] = gi
	}
	return groups, order, nil
}

// loadBases fills each group's base summary from the cache or Redis, and
// checks that its events continue it.
func (s *Store) loadBases(ctx context.Context, groups []*appendGroup, fresh bool) error {
	var missing []*appendGroup
	for _, g := range groups {
		first := g.events[0].Seq
		if first == 1 && !fresh {
			g.base = engine.Summary{}
			continue
		}
		if !fresh {
			if sum, ok := s.cached(g.id); ok && sum.LastSeq == first-1 {
				g.base = sum
				continue
			}
		}
		missing = append(missing, g)
	}
	if len(missing) > 0 {
		ks := make([]string, len(missing))
		for i, g := range missing {
			ks[i] = s.k.summary(g.id)
		}
		vals, err := s.client.MGet(ctx, ks...).Result()
		if err != nil {
			return fmt.Errorf("redis: load summaries: %w", err)
		}
		for i, g := range missing {
			g.base = engine.Summary{}
			if str, ok := vals[i].(string); ok {
				if err := json.Unmarshal([]byte(str), &g.base); err != nil {
					return fmt.Errorf("redis: decode summary %s: %w", g.id, err)
				}
			}
		}
	}
	for _, g := range groups {
		if first := g.events[0].Seq; g.base.LastSeq != first-1 {
			return fmt.Errorf("%w: %s seq %d but %d events stored", ErrSequence, g.id, first, g.base.LastSeq)
		}
		g.next = g.base
		for _, e := range g.events {
			g.next.Apply(e)
		}
	}
	return nil
}

// appendArgs lays out KEYS and ARGV for appendScript.
func (s *Store) appendArgs(groups []*appendGroup, events []engine.Event, order []int, payload []string) ([]string, []any) {
	keys := []string{s.k.pos(), s.k.log(), s.k.unfinished()}
	args := make([]any, 0, 2+6*len(groups)+3*len(events))
	args = append(args, len(groups), len(events))
	for _, g := range groups {
		sum, _ := json.Marshal(g.next)
		var idx []string
		if indexChanged(g.base, g.next) {
			idx = s.indexKeys(g.next)
		}
		unfinished := "1"
		if g.next.Status == engine.StatusFinished {
			unfinished = "0"
		}
		keys = append(keys, s.k.events(g.id), s.k.summary(g.id))
		keys = append(keys, idx...)
		args = append(args, g.id, g.events[0].Seq-1, string(sum), unfinished,
			score(g.next.StartedAt), len(idx))
	}
	for i, e := range events {
		args = append(args, order[i]+1, e.Seq, payload[i])
	}
	return keys, args
}

// indexChanged reports whether a summary change touches an indexed field.
func indexChanged(a, b engine.Summary) bool {
	return a.LastSeq == 0 || !a.StartedAt.Equal(b.StartedAt) || a.RunbookName != b.RunbookName ||
		a.Outcome != b.Outcome || a.Trigger.Type != b.Trigger.Type ||
		a.Trigger.TriggeredBy != b.Trigger.TriggeredBy
}

// indexKeys lists the history indexes a summary belongs to. Every index is a
// ZSET of execution ids scored by StartedAt in Unix microseconds.
func (s *Store) indexKeys(sum engine.Summary) []string {
	out := []string{s.k.byTime()}
	if sum.RunbookName != "" {
		out = append(out, s.k.byRunbook(sum.RunbookName))
	}
	if sum.Outcome != "" {
		out = append(out, s.k.byOutcome(string(sum.Outcome)))
	}
	if sum.Trigger.TriggeredBy != "" {
		out = append(out, s.k.byRequester(sum.Trigger.TriggeredBy))
	}
	if sum.Trigger.Type != "" {
		out = append(out, s.k.byTrigger(sum.Trigger.Type))
	}
	return out
}

func (s *Store) cached(id string) (engine.Summary, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sum, ok := s.cache[id]
	return sum, ok
}

func (s *Store) forget(id string) {
	s.mu.Lock()
	delete(s.cache, id)
	s.mu.Unlock()
}

// remember caches the summaries of running executions after an append.
func (s *Store) remember(groups []*appendGroup) {
	if s.cacheSize <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range groups {
		if g.next.Status == engine.StatusFinished {
			delete(s.cache, g.id)
			continue
		}
		if _, ok := s.cache[g.id]; !ok && len(s.cache) >= s.cacheSize {
			for victim := range s.cache { // evict an arbitrary entry
				delete(s.cache, victim)
				break
			}
		}
		s.cache[g.id] = g.next
	}
}
