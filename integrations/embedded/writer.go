package embedded

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/runbookbot/runbookbot/engine"
)

// maxBatchBytes is where the writer stops adding requests to a batch. A
// single larger request still goes alone.
const maxBatchBytes = 8 << 20

// request is one Append call handed to the writer.
type request struct {
	ctx    context.Context
	events []pending
	size   int        // framed bytes
	done   chan error // buffered; receives exactly one result
}

// pending is one event of a request: its encoded payload and the decoded
// copy the indexes fold (decoding makes a summary the same before and after
// a reopen, and keeps it from sharing maps with the caller).
type pending struct {
	payload []byte
	ev      engine.Event
	off     int64 // set by the writer
}

// SeqError is the error Append returns when an execution's events do not
// continue its sequence. It matches ErrSeq with errors.Is.
type SeqError struct {
	ExecutionID string
	Got, Want   int64
}

// Error describes the gap or duplicate.
func (e *SeqError) Error() string {
	what := "gap"
	if e.Got < e.Want {
		what = "duplicate"
	}
	return fmt.Sprintf("embedded: execution %q: event seq %d, want %d (%s; is the execution being driven twice?)",
		e.ExecutionID, e.Got, e.Want, what)
}

// Is makes errors.Is(err, ErrSeq) true.
func (e *SeqError) Is(target error) bool { return target == ErrSeq }

// Append persists events in order and returns once they are fsynced. The
// events of one call are written in one batch and replayed all-or-nothing
// after a crash. Each execution's events must continue its sequence (Seq 1
// for a new execution, then the last Seq plus one); otherwise nothing of the
// call is written and the error wraps ErrSeq. The store assigns Pos (a Pos
// set by the caller is ignored) and does not modify the caller's events.
//
// If ctx ends before the writer takes the call, nothing is written and
// ctx.Err() is returned. Once the writer has taken it, Append waits for the
// outcome so that its answer is always true.
//
// After a failed write or fsync the store refuses every further Append
// (reads keep working); reopening it recovers what reached the disk.
func (s *Store) Append(ctx context.Context, events ...engine.Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.readOnly {
		return ErrReadOnly
	}
	r := &request{ctx: ctx, events: make([]pending, len(events)), done: make(chan error, 1)}
	// Encode here, in the callers' goroutines, so that the single writer
	// only frames, writes and syncs.
	for i, e := range events {
		if e.ExecutionID == "" {
			return fmt.Errorf("embedded: event %d (seq %d, %s) has no execution ID", i, e.Seq, e.Type)
		}
		e.Pos = 0
		payload, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("embedded: encode event %s #%d: %w", e.ExecutionID, e.Seq, err)
		}
		if len(payload) > maxPayload {
			return fmt.Errorf("embedded: event %s #%d is %d bytes encoded, over the %d-byte limit",
				e.ExecutionID, e.Seq, len(payload), maxPayload)
		}
		dec, err := foldOf(&e, payload)
		if err != nil {
			return fmt.Errorf("embedded: event %s #%d does not round-trip through JSON: %w", e.ExecutionID, e.Seq, err)
		}
		r.events[i] = pending{payload: payload, ev: dec}
		r.size += headerSize + len(payload)
	}
	if len(events) == 0 {
		if err := s.enter(); err != nil {
			return err
		}
		s.life.RUnlock()
		return nil
	}

	s.life.RLock()
	if s.closed {
		s.life.RUnlock()
		return ErrClosed
	}
	select {
	case s.reqs <- r:
	case <-ctx.Done():
		s.life.RUnlock()
		return ctx.Err()
	}
	s.life.RUnlock()
	return <-r.done
}

// run is the writer goroutine: it takes every request waiting, writes them
// with one write and one fsync, and answers them all. It exits when Close
// closes reqs, after finishing what was queued.
func (s *Store) run() {
	defer close(s.writerDone)
	var batch []*request
	for r := range s.reqs {
		batch = append(batch[:0], r)
		size := r.size
	drain:
		for size < maxBatchBytes {
			select {
			case r, ok := <-s.reqs:
				if !ok {
					break drain
				}
				batch = append(batch, r)
				size += r.size
			default:
				break drain
			}
		}
		s.commit(batch)
		clear(batch) // drop references to answered requests
	}
}

// commit validates, writes, syncs and indexes one batch, then answers its
// requests.
func (s *Store) commit(batch []*request) {
	if s.failed != nil {
		for _, r := range batch {
			r.done <- s.failed
		}
		return
	}
	// seqs tracks the last Seq of executions touched by this batch, on top
	// of the indexes (which hold what is already durable).
	seqs := make(map[string]int64)
	accepted := batch[:0:0]
	buf := s.buf[:0]
	start := s.idx.end // writer-owned: only this goroutine changes it
	pos := s.nextPos
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.done <- err
			continue
		}
		if err := s.checkSeq(r, seqs); err != nil {
			r.done <- err
			continue
		}
		for i := range r.events {
			p := &r.events[i]
			p.off = start + int64(len(buf))
			p.ev.Pos = pos
			buf = appendRecord(buf, pos, i < len(r.events)-1, p.payload)
			pos++
		}
		accepted = append(accepted, r)
	}
	if cap(buf) <= maxBatchBytes*2 {
		s.buf = buf // keep the buffer unless a huge request grew it
	}
	if len(accepted) == 0 {
		return
	}

	if err := s.writeAndSync(buf, start); err != nil {
		s.failed = err
		s.broken.Store(&err)
		for _, r := range accepted {
			r.done <- err
		}
		return
	}
	s.syncs.Add(1)

	x := &s.idx
	x.mu.Lock()
	for _, r := range accepted {
		for _, p := range r.events {
			x.apply(p.ev, p.off, true)
		}
	}
	x.end = start + int64(len(buf))
	x.mu.Unlock()
	s.nextPos = pos
	for _, r := range accepted {
		r.done <- nil
	}
}

// checkSeq verifies that the request continues each execution's sequence
// and, if so, records its last Seqs in seqs. On error seqs is unchanged.
func (s *Store) checkSeq(r *request, seqs map[string]int64) error {
	var local map[string]int64 // this request's own progress
	last := func(id string) int64 {
		if v, ok := local[id]; ok {
			return v
		}
		if v, ok := seqs[id]; ok {
			return v
		}
		// Reading the index without mu is safe: this goroutine is its only
		// writer.
		if ent := s.idx.execs[id]; ent != nil {
			return ent.sum.LastSeq
		}
		return 0
	}
	for i := range r.events {
		e := &r.events[i].ev
		want := last(e.ExecutionID) + 1
		if e.Seq != want {
			return &SeqError{ExecutionID: e.ExecutionID, Got: e.Seq, Want: want}
		}
		if local == nil {
			local = make(map[string]int64, 1)
		}
		local[e.ExecutionID] = e.Seq
	}
	for id, v := range local {
		seqs[id] = v
	}
	return nil
}

// writeAndSync writes a batch at offset start and fsyncs it. On failure it
// tries to cut the log back to start; the store then refuses further
// Appends (after a failed fsync the page cache cannot be trusted), and the
// next Open recovers whatever part reached the disk.
func (s *Store) writeAndSync(buf []byte, start int64) error {
	_, err := s.file.WriteAt(buf, start)
	if err == nil {
		err = s.file.Sync()
	}
	if err == nil {
		return nil
	}
	if terr := s.file.Truncate(start); terr != nil {
		err = errors.Join(err, terr)
	}
	err = fmt.Errorf("embedded: write to %s failed, store is read-only until reopened: %w",
		filepath.Join(s.dir, logName), err)
	s.logger.Error("embedded store: append failed", "err", err)
	return err
}
