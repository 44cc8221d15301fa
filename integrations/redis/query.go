package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/runbookbot/runbookbot/engine"
)

// History scanning limits: ids asked per script call when the query has no
// limit, and index entries one call may examine (bounding how long a single
// call holds the Redis event loop).
const (
	historyPage    = 1000
	historyMaxScan = 10000
)

// historyScript intersects history indexes server side.
//
// KEYS: the index ZSETs that must all contain an execution.
// ARGV: min score, max score, driver (index into KEYS, 0 = choose the one
// with the fewest entries in range), offset into the driver's range (newest
// first), ids wanted, entries to examine at most.
// Returns {driver, next offset, done (0/1), id...}.
//
// The driver's range is walked by rank (ZREVRANGE), which costs O(log N) per
// page however deep the offset; the other indexes are probed with ZSCORE.
// Executions inserted while a caller pages can shift ranks by one, so
// callers drop ids they have already seen.
var historyScript = goredis.NewScript(`
local min, max = ARGV[1], ARGV[2]
local driver = tonumber(ARGV[3])
local offset = tonumber(ARGV[4])
local want = tonumber(ARGV[5])
local maxscan = tonumber(ARGV[6])
if driver == 0 then
  driver = 1
  local best = -1
  for i = 1, #KEYS do
    local c = redis.call('ZCOUNT', KEYS[i], min, max)
    if best < 0 or c < best then best, driver = c, i end
  end
end
local key = KEYS[driver]
local top = 0
if max ~= '+inf' then top = redis.call('ZCOUNT', key, '(' .. max, '+inf') end
local total = redis.call('ZCOUNT', key, min, max)
local out = {driver, 0, 0}
local found, scanned = 0, 0
while found < want and scanned < maxscan and offset < total do
  local n = math.min(256, total - offset)
  -- With one index every entry matches: fetch only what is wanted.
  if #KEYS == 1 then n = math.min(n, want - found) end
  local page = redis.call('ZREVRANGE', key, top + offset, top + offset + n - 1)
  if #page == 0 then offset = total break end
  for _, id in ipairs(page) do
    offset = offset + 1
    scanned = scanned + 1
    local ok = true
    for i = 1, #KEYS do
      if i ~= driver and not redis.call('ZSCORE', KEYS[i], id) then ok = false break end
    end
    if ok then
      found = found + 1
      out[#out+1] = id
      if found >= want then break end
    end
  end
end
if found >= want and found > 0 then
  -- Entries tied with the last one found may be newer in finer time than
  -- the score shows: return them too and let the caller sort.
  local last = redis.call('ZSCORE', key, out[#out])
  while offset < total do
    local nxt = redis.call('ZREVRANGE', key, top + offset, top + offset, 'WITHSCORES')
    if #nxt == 0 or nxt[2] ~= last then break end
    offset = offset + 1
    local ok = true
    for i = 1, #KEYS do
      if i ~= driver and not redis.call('ZSCORE', KEYS[i], nxt[1]) then ok = false break end
    end
    if ok then out[#out+1] = nxt[1] end
  end
end
out[2] = offset
if offset >= total then out[3] = 1 end
return out
`)

// History returns the summaries matching q, newest StartedAt first, at most
// q.Limit of them (all when Limit is 0).
//
// The filters pick index ZSETs (by runbook, outcome, requester, trigger
// type; by time alone when none is set), Since and Until bound their score
// range, and a Lua script intersects them starting from the smallest. The
// summaries found are fetched with MGET and checked with HistoryQuery.Match,
// which keeps the answer exact at microsecond boundaries and for any stale
// index entry.
func (s *Store) History(ctx context.Context, q engine.HistoryQuery) ([]engine.Summary, error) {
	var idx []string
	if q.Runbook != "" {
		idx = append(idx, s.k.byRunbook(q.Runbook))
	}
	if q.Outcome != "" {
		idx = append(idx, s.k.byOutcome(string(q.Outcome)))
	}
	if q.Requester != "" {
		idx = append(idx, s.k.byRequester(q.Requester))
	}
	if q.TriggerType != "" {
		idx = append(idx, s.k.byTrigger(q.TriggerType))
	}
	if len(idx) == 0 {
		idx = []string{s.k.byTime()}
	}
	lo, hi := "-inf", "+inf"
	if !q.Since.IsZero() {
		lo = score(q.Since)
	}
	if !q.Until.IsZero() {
		// Until is exclusive, but an execution started earlier in the same
		// microsecond has the same score: include it and let Match decide.
		hi = score(q.Until)
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Since.Before(q.Until) {
		return []engine.Summary{}, nil
	}
	out := []engine.Summary{}
	seen := map[string]bool{}
	var driver, offset int64
	for {
		want := historyPage
		if q.Limit > 0 {
			want = min(want, q.Limit-len(out))
		}
		res, err := historyScript.Run(ctx, s.client, idx, lo, hi, driver, offset, want, historyMaxScan).Slice()
		if err != nil {
			return nil, fmt.Errorf("redis: history: %w", err)
		}
		driver, _ = res[0].(int64)
		offset, _ = res[1].(int64)
		done, _ := res[2].(int64)
		var ids []string
		for _, v := range res[3:] {
			if id, ok := v.(string); ok && !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
		sums, err := s.summaries(ctx, ids)
		if err != nil {
			return nil, err
		}
		for _, sum := range sums {
			if q.Match(sum) {
				out = append(out, sum)
			}
		}
		if done == 1 || (q.Limit > 0 && len(out) >= q.Limit) {
			break
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].StartedAt.After(out[j].StartedAt) })
	if q.Limit > 0 && len(out) > q.Limit {
		out = out[:q.Limit]
	}
	return out, nil
}

// summaries fetches the summaries of ids with one MGET, skipping any that
// vanished.
func (s *Store) summaries(ctx context.Context, ids []string) ([]engine.Summary, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	ks := make([]string, len(ids))
	for i, id := range ids {
		ks[i] = s.k.summary(id)
	}
	vals, err := s.client.MGet(ctx, ks...).Result()
	if err != nil {
		return nil, fmt.Errorf("redis: history summaries: %w", err)
	}
	out := make([]engine.Summary, 0, len(vals))
	for i, v := range vals {
		str, ok := v.(string)
		if !ok {
			continue
		}
		var sum engine.Summary
		if err := json.Unmarshal([]byte(str), &sum); err != nil {
			return nil, fmt.Errorf("redis: decode summary %s: %w", ids[i], err)
		}
		out = append(out, sum)
	}
	return out, nil
}

// score is a time as an index score: Unix microseconds, rounded down
// (exact in a float64 until the year 2255).
func score(t time.Time) string { return strconv.FormatInt(t.UnixMicro(), 10) }

// Events returns all events of one execution in Seq order (empty for an
// unknown execution).
func (s *Store) Events(ctx context.Context, executionID string) ([]engine.Event, error) {
	raw, err := s.client.LRange(ctx, s.k.events(executionID), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("redis: events %s: %w", executionID, err)
	}
	out := make([]engine.Event, len(raw))
	for i, r := range raw {
		if err := json.Unmarshal([]byte(r), &out[i]); err != nil {
			return nil, fmt.Errorf("redis: decode event %s/%d: %w", executionID, i+1, err)
		}
	}
	return out, nil
}

var _ engine.BulkReader = (*Store)(nil)

// EventsOf returns the events of each of ids, as Events does, reading
// them with pipelined LRANGEs (a few round trips for thousands of
// executions). Recover uses it.
func (s *Store) EventsOf(ctx context.Context, ids []string) ([][]engine.Event, error) {
	const perTrip = 1000
	out := make([][]engine.Event, len(ids))
	for lo := 0; lo < len(ids); lo += perTrip {
		chunk := ids[lo:min(lo+perTrip, len(ids))]
		pipe := s.client.Pipeline()
		cmds := make([]*goredis.StringSliceCmd, len(chunk))
		for i, id := range chunk {
			cmds[i] = pipe.LRange(ctx, s.k.events(id), 0, -1)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("redis: events of %d executions: %w", len(chunk), err)
		}
		for i, c := range cmds {
			raw := c.Val()
			evs := make([]engine.Event, len(raw))
			for j, r := range raw {
				if err := json.Unmarshal([]byte(r), &evs[j]); err != nil {
					return nil, fmt.Errorf("redis: decode event %s/%d: %w", chunk[i], j+1, err)
				}
			}
			out[lo+i] = evs
		}
	}
	return out, nil
}

// DefaultReadLimit is the batch ReadFrom uses when limit is not positive.
const DefaultReadLimit = 1000

// ReadFrom returns up to limit events with Pos greater than after, in Pos
// order, in two round trips: a range of the global log, then the events
// themselves, pipelined.
func (s *Store) ReadFrom(ctx context.Context, after uint64, limit int) ([]engine.Event, error) {
	if limit <= 0 {
		limit = DefaultReadLimit
	}
	msgs, err := s.client.XRangeN(ctx, s.k.log(), "("+strconv.FormatUint(after, 10), "+", int64(limit)).Result()
	if err != nil {
		return nil, fmt.Errorf("redis: read log: %w", err)
	}
	if len(msgs) == 0 {
		return nil, nil
	}
	pipe := s.client.Pipeline()
	cmds := make([]*goredis.StringCmd, len(msgs))
	for i, m := range msgs {
		id, _ := m.Values["e"].(string)
		seq, err := strconv.ParseInt(fmt.Sprint(m.Values["s"]), 10, 64)
		if err != nil || id == "" {
			return nil, fmt.Errorf("redis: malformed log entry %s", m.ID)
		}
		cmds[i] = pipe.LIndex(ctx, s.k.events(id), seq-1)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("redis: read events: %w", err)
	}
	out := make([]engine.Event, len(msgs))
	for i, c := range cmds {
		if err := json.Unmarshal([]byte(c.Val()), &out[i]); err != nil {
			return nil, fmt.Errorf("redis: decode event at %s: %w", msgs[i].ID, err)
		}
		want, _, _ := strings.Cut(msgs[i].ID, "-")
		if strconv.FormatUint(out[i].Pos, 10) != want {
			return nil, fmt.Errorf("redis: log entry %s points at event with pos %d", msgs[i].ID, out[i].Pos)
		}
	}
	return out, nil
}

// LastPos returns the highest Pos assigned so far (0 for an empty store).
// Mirror uses it to report its lag.
func (s *Store) LastPos(ctx context.Context) (uint64, error) {
	v, err := s.client.Get(ctx, s.k.pos()).Uint64()
	if errors.Is(err, goredis.Nil) {
		return 0, nil
	}
	return v, err
}

// Unfinished lists, sorted, the executions without an execution.finished
// event.
func (s *Store) Unfinished(ctx context.Context) ([]string, error) {
	ids, err := s.client.SMembers(ctx, s.k.unfinished()).Result()
	if err != nil {
		return nil, fmt.Errorf("redis: unfinished: %w", err)
	}
	sort.Strings(ids)
	return ids, nil
}

// Get returns the summary of one execution, or an error wrapping
// engine.ErrNotFound.
func (s *Store) Get(ctx context.Context, executionID string) (engine.Summary, error) {
	raw, err := s.client.Get(ctx, s.k.summary(executionID)).Bytes()
	if errors.Is(err, goredis.Nil) {
		return engine.Summary{}, fmt.Errorf("%w: %s", engine.ErrNotFound, executionID)
	}
	if err != nil {
		return engine.Summary{}, fmt.Errorf("redis: get %s: %w", executionID, err)
	}
	var sum engine.Summary
	if err := json.Unmarshal(raw, &sum); err != nil {
		return engine.Summary{}, fmt.Errorf("redis: decode summary %s: %w", executionID, err)
	}
	return sum, nil
}
