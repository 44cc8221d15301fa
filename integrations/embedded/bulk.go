package embedded

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/runbookbot/runbookbot/engine"
)

var _ engine.BulkReader = (*Store)(nil)

// Bulk reads: records lying at most bulkGap bytes apart are read with one
// pread of at most bulkWindow bytes.
const (
	bulkGap    = 4 << 10
	bulkWindow = 1 << 20
)

// bulkRecord is one record EventsOf reads back, and where its event goes.
type bulkRecord struct {
	exec, seq int // index into ids, and into that execution's events
	pos       uint64
	off, end  int64
}

// EventsOf returns the events of each of ids, as Events does for each, in
// one pass over the log: the records of all of them are read in offset
// order, neighbours with one pread. Recover reads thousands of parked
// executions this way at start-up, whose events lie interleaved in the log.
func (s *Store) EventsOf(ctx context.Context, ids []string) ([][]engine.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.life.RUnlock()

	out := make([][]engine.Event, len(ids))
	var recs []bulkRecord
	x := &s.idx
	x.mu.RLock()
	for i, id := range ids {
		ent := x.execs[id]
		if ent == nil {
			continue
		}
		out[i] = make([]engine.Event, len(ent.pos))
		for j, p := range ent.pos {
			recs = append(recs, bulkRecord{exec: i, seq: j, pos: p, off: x.offsets[p-1], end: x.endOf(p)})
		}
	}
	x.mu.RUnlock()

	slices.SortFunc(recs, func(a, b bulkRecord) int { return cmp.Compare(a.off, b.off) })
	var buf []byte
	for i := 0; i < len(recs); {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		start := recs[i].off
		j := i + 1
		for j < len(recs) && recs[j].off-recs[j-1].end <= bulkGap && recs[j].end-start <= bulkWindow {
			j++
		}
		n := int(recs[j-1].end - start)
		if cap(buf) < n {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := s.file.ReadAt(buf, start); err != nil {
			return nil, fmt.Errorf("embedded: read log at %d: %w", start, err)
		}
		for _, r := range recs[i:j] {
			h, payload, err := parseRecord(buf[r.off-start : r.end-start])
			if err != nil || h.pos != r.pos {
				return nil, fmt.Errorf("%w: record at offset %d (pos %d) no longer reads back", ErrCorrupt, r.off, r.pos)
			}
			e, err := decodeEvent(payload, r.pos)
			if err != nil {
				return nil, fmt.Errorf("%w: record at offset %d (pos %d): %v", ErrCorrupt, r.off, r.pos, err)
			}
			out[r.exec][r.seq] = e
		}
		i = j
	}
	return out, nil
}
