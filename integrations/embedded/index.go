package embedded

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/runbookbot/runbookbot/engine"
)

// execEntry is what the store keeps in memory about one execution: its
// summary and the positions of its events (the events stay on disk).
type execEntry struct {
	sum      engine.Summary
	pos      []uint64
	finished bool // an execution.finished event was seen
}

// index holds the in-memory indexes. The writer goroutine is its only
// mutator (under mu); readers take mu shared.
type index struct {
	mu sync.RWMutex
	// offsets[p-1] is the log offset of the record with Pos p. Positions are
	// dense, so this is the whole Pos index.
	offsets []int64
	// end is the log offset just past the last durable record.
	end int64
	// execs maps execution IDs to their entries.
	execs map[string]*execEntry
	// order holds every entry sorted by (StartedAt, ExecutionID) ascending;
	// History walks it backwards.
	order []*execEntry
	// unfinished holds the entries without execution.finished.
	unfinished map[string]*execEntry
	// strs interns the low-cardinality strings of summaries (runbook names,
	// versions, requesters, step names...) so that 100,000 summaries do not
	// each carry their own copies.
	strs map[string]string
}

func (x *index) init() {
	x.execs = make(map[string]*execEntry)
	x.unfinished = make(map[string]*execEntry)
	x.strs = make(map[string]string)
}

// cmpEntry orders entries by start time, then execution ID.
func cmpEntry(a, b *execEntry) int {
	return cmpKey(a, b.sum.StartedAt, b.sum.ExecutionID)
}

func cmpKey(a *execEntry, start time.Time, id string) int {
	if c := a.sum.StartedAt.Compare(start); c != 0 {
		return c
	}
	return cmp.Compare(a.sum.ExecutionID, id)
}

// apply folds one durable event, stored at log offset off, into the
// indexes. The caller holds mu. With sorted false (replay) new entries are
// appended to order unsorted and finishReplay sorts once at the end.
func (x *index) apply(e engine.Event, off int64, sorted bool) {
	ent := x.execs[e.ExecutionID]
	isNew := ent == nil
	if isNew {
		ent = &execEntry{}
		// Known even if the first event is not execution.started.
		ent.sum.ExecutionID = e.ExecutionID
		x.execs[e.ExecutionID] = ent
	}
	oldStart := ent.sum.StartedAt
	oldID := ent.sum.ExecutionID
	ent.sum.Apply(e)
	x.intern(&ent.sum)
	ent.pos = append(ent.pos, e.Pos)
	x.offsets = append(x.offsets, off)

	if e.Type == engine.EventExecutionFinished {
		ent.finished = true
		delete(x.unfinished, e.ExecutionID)
	} else if !ent.finished {
		x.unfinished[e.ExecutionID] = ent
	}

	switch {
	case !sorted:
		if isNew {
			x.order = append(x.order, ent)
		}
	case isNew:
		x.insert(ent)
	case !oldStart.Equal(ent.sum.StartedAt) || oldID != ent.sum.ExecutionID:
		// Only an out-of-the-ordinary event stream moves an execution.
		i := sort.Search(len(x.order), func(i int) bool { return cmpKey(x.order[i], oldStart, oldID) >= 0 })
		if i < len(x.order) && x.order[i] == ent {
			x.order = slices.Delete(x.order, i, i+1)
		}
		x.insert(ent)
	}
}

func (x *index) insert(ent *execEntry) {
	i := sort.Search(len(x.order), func(i int) bool { return cmpEntry(x.order[i], ent) > 0 })
	x.order = slices.Insert(x.order, i, ent)
}

// finishReplay sorts order once replay has appended every entry.
func (x *index) finishReplay() {
	x.mu.Lock()
	defer x.mu.Unlock()
	slices.SortFunc(x.order, cmpEntry)
}

func (x *index) intern(s *engine.Summary) {
	in := func(p *string) {
		if *p == "" {
			return
		}
		if v, ok := x.strs[*p]; ok {
			*p = v
			return
		}
		x.strs[*p] = *p
	}
	in(&s.RunbookName)
	in(&s.RunbookVersion)
	in(&s.Trigger.Type)
	in(&s.Trigger.Source)
	in(&s.Trigger.TriggeredBy)
	in(&s.Trigger.Channel)
	in(&s.Status)
	in(&s.CurrentStep)
	in((*string)(&s.Outcome))
}

// endOf returns the log offset just past the record with Pos p. The caller
// holds mu.
func (x *index) endOf(p uint64) int64 {
	if p < uint64(len(x.offsets)) {
		return x.offsets[p]
	}
	return x.end
}

// span is a run of consecutive positions to read back from the log.
type span struct {
	first uint64
	offs  []int64
	end   int64
}

// Events returns all events of one execution in Seq order, read back from
// the log. An unknown execution has no events (and no error).
func (s *Store) Events(ctx context.Context, executionID string) ([]engine.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.life.RUnlock()

	x := &s.idx
	x.mu.RLock()
	ent := x.execs[executionID]
	if ent == nil {
		x.mu.RUnlock()
		return nil, nil
	}
	// Events appended in one call sit next to each other in the log: read
	// each run of consecutive positions with one pread.
	var spans []span
	for i := 0; i < len(ent.pos); {
		j := i + 1
		for j < len(ent.pos) && ent.pos[j] == ent.pos[j-1]+1 {
			j++
		}
		first, last := ent.pos[i], ent.pos[j-1]
		spans = append(spans, span{
			first: first,
			offs:  slices.Clone(x.offsets[first-1 : last]),
			end:   x.endOf(last),
		})
		i = j
	}
	count := len(ent.pos)
	x.mu.RUnlock()

	out := make([]engine.Event, 0, count)
	for _, sp := range spans {
		evs, err := s.readSpan(sp.offs, sp.end, sp.first)
		if err != nil {
			return nil, err
		}
		out = append(out, evs...)
	}
	return out, nil
}

// ReadFrom returns up to limit events whose Pos is greater than after, in
// Pos order. A limit of zero or less means no limit.
func (s *Store) ReadFrom(ctx context.Context, after uint64, limit int) ([]engine.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.life.RUnlock()

	x := &s.idx
	x.mu.RLock()
	n := uint64(len(x.offsets))
	if after >= n {
		x.mu.RUnlock()
		return nil, nil
	}
	to := n
	if limit > 0 && uint64(limit) < n-after {
		to = after + uint64(limit)
	}
	offs := slices.Clone(x.offsets[after:to])
	end := x.endOf(to)
	x.mu.RUnlock()
	return s.readSpan(offs, end, after+1)
}

// Unfinished lists the executions without an execution.finished event,
// oldest first (by StartedAt, then ID): the order to resume them in.
func (s *Store) Unfinished(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.life.RUnlock()

	type key struct {
		start time.Time
		id    string
	}
	s.idx.mu.RLock()
	keys := make([]key, 0, len(s.idx.unfinished))
	for _, e := range s.idx.unfinished {
		keys = append(keys, key{e.sum.StartedAt, e.sum.ExecutionID})
	}
	s.idx.mu.RUnlock()
	slices.SortFunc(keys, func(a, b key) int {
		if c := a.start.Compare(b.start); c != 0 {
			return c
		}
		return cmp.Compare(a.id, b.id)
	})
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = k.id
	}
	return ids, nil
}

// Get returns the summary of one execution, or an error wrapping
// engine.ErrNotFound.
func (s *Store) Get(ctx context.Context, executionID string) (engine.Summary, error) {
	if err := ctx.Err(); err != nil {
		return engine.Summary{}, err
	}
	if err := s.enter(); err != nil {
		return engine.Summary{}, err
	}
	defer s.life.RUnlock()

	s.idx.mu.RLock()
	defer s.idx.mu.RUnlock()
	ent := s.idx.execs[executionID]
	if ent == nil {
		return engine.Summary{}, fmt.Errorf("%w: %q", engine.ErrNotFound, executionID)
	}
	return cloneSummary(ent.sum), nil
}

// History returns the summaries matching q, newest first (by StartedAt, then
// ExecutionID descending). Since and Until narrow the scan by binary search;
// other filters are checked with HistoryQuery.Match. A Limit of zero or less
// means no limit.
func (s *Store) History(ctx context.Context, q engine.HistoryQuery) ([]engine.Summary, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.life.RUnlock()

	s.idx.mu.RLock()
	defer s.idx.mu.RUnlock()
	order := s.idx.order
	lo, hi := 0, len(order)
	if !q.Since.IsZero() {
		lo = sort.Search(len(order), func(i int) bool { return !order[i].sum.StartedAt.Before(q.Since) })
	}
	if !q.Until.IsZero() {
		hi = sort.Search(len(order), func(i int) bool { return !order[i].sum.StartedAt.Before(q.Until) })
	}
	var out []engine.Summary
	for i := hi - 1; i >= lo; i-- {
		if !q.Match(order[i].sum) {
			continue
		}
		out = append(out, cloneSummary(order[i].sum))
		if q.Limit > 0 && len(out) == q.Limit {
			break
		}
	}
	return out, nil
}

// cloneSummary copies the maps and pointers of a summary so callers cannot
// change the store's copy.
func cloneSummary(s engine.Summary) engine.Summary {
	if s.Parameters != nil {
		s.Parameters = cloneValue(s.Parameters).(map[string]any)
	}
	s.Trigger.Labels = maps.Clone(s.Trigger.Labels)
	if s.EndedAt != nil {
		t := *s.EndedAt
		s.EndedAt = &t
	}
	return s
}

// cloneValue deep-copies a JSON-decoded value.
func cloneValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, x := range v {
			m[k] = cloneValue(x)
		}
		return m
	case []any:
		l := make([]any, len(v))
		for i, x := range v {
			l[i] = cloneValue(x)
		}
		return l
	default:
		return v
	}
}
