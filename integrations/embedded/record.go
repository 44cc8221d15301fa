package embedded

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/runbookbot/runbookbot/engine"
)

// Record framing; see the package comment.
const (
	magic      = "RBBLOG\x00\x01"
	headerSize = 16
	flagMore   = 1 << 31
	lenMask    = flagMore - 1
	// maxPayload bounds one encoded event. Anything larger is refused by
	// Append and, found in the log, taken for a torn length field.
	maxPayload = 16 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// recordCRC is the checksum stored in a header: it covers the length word,
// the position and the payload.
func recordCRC(h []byte, payload []byte) uint32 {
	c := crc32.Update(0, castagnoli, h[0:4])
	c = crc32.Update(c, castagnoli, h[8:16])
	return crc32.Update(c, castagnoli, payload)
}

// appendRecord frames payload as the record for pos and appends it to buf.
func appendRecord(buf []byte, pos uint64, more bool, payload []byte) []byte {
	var h [headerSize]byte
	n := uint32(len(payload))
	if more {
		n |= flagMore
	}
	binary.LittleEndian.PutUint32(h[0:4], n)
	binary.LittleEndian.PutUint64(h[8:16], pos)
	binary.LittleEndian.PutUint32(h[4:8], recordCRC(h[:], payload))
	buf = append(buf, h[:]...)
	return append(buf, payload...)
}

// header is a decoded record header.
type header struct {
	n    int    // payload length
	more bool   // more events of the same Append follow
	crc  uint32 // stored checksum
	pos  uint64
}

func parseHeader(h []byte) header {
	n := binary.LittleEndian.Uint32(h[0:4])
	return header{
		n:    int(n & lenMask),
		more: n&flagMore != 0,
		crc:  binary.LittleEndian.Uint32(h[4:8]),
		pos:  binary.LittleEndian.Uint64(h[8:16]),
	}
}

// errBadRecord means bytes that are not a whole, valid record.
var errBadRecord = errors.New("bad record")

// parseRecord reads the record at the start of b, which must hold exactly
// the records expected (reads go by the index, so a short or failing record
// here means the file changed under us).
func parseRecord(b []byte) (header, []byte, error) {
	if len(b) < headerSize {
		return header{}, nil, errBadRecord
	}
	h := parseHeader(b)
	if h.n == 0 || h.n > maxPayload || len(b) < headerSize+h.n {
		return header{}, nil, errBadRecord
	}
	payload := b[headerSize : headerSize+h.n]
	if recordCRC(b, payload) != h.crc {
		return header{}, nil, errBadRecord
	}
	return h, payload, nil
}

// decodeEvent turns a payload back into the whole event, for readers.
func decodeEvent(payload []byte, pos uint64) (engine.Event, error) {
	var e engine.Event
	if err := json.Unmarshal(payload, &e); err != nil {
		return engine.Event{}, err
	}
	e.Pos = pos
	return e, nil
}

// foldEvent is the part of an engine.Event that engine.Summary.Apply reads.
// Replay and Append decode payloads into it for the indexes: skipping step
// inputs, outputs and approvals makes replay faster and lighter.
// TestFoldEventCoversApply fails if Apply starts reading another field.
type foldEvent struct {
	ExecutionID    string              `json:"executionId"`
	Seq            int64               `json:"seq"`
	Type           engine.EventType    `json:"type"`
	Time           time.Time           `json:"time"`
	RunbookName    string              `json:"runbookName"`
	RunbookVersion string              `json:"runbookVersion"`
	Trigger        *engine.TriggerInfo `json:"trigger"`
	Parameters     map[string]any      `json:"parameters"`
	Step           *struct {
		Name   string            `json:"stepName"`
		Status engine.StepStatus `json:"status"`
	} `json:"step"`
	Outcome engine.Outcome `json:"outcome"`
}

// decodeFold decodes the fields of a payload that summaries need.
func decodeFold(payload []byte, pos uint64) (engine.Event, error) {
	var f foldEvent
	if err := json.Unmarshal(payload, &f); err != nil {
		return engine.Event{}, err
	}
	e := engine.Event{
		ExecutionID:    f.ExecutionID,
		Seq:            f.Seq,
		Pos:            pos,
		Type:           f.Type,
		Time:           f.Time,
		RunbookName:    f.RunbookName,
		RunbookVersion: f.RunbookVersion,
		Trigger:        f.Trigger,
		Parameters:     f.Parameters,
		Outcome:        f.Outcome,
	}
	if f.Step != nil {
		e.Step = &engine.StepRecord{Name: f.Step.Name, Status: f.Step.Status}
	}
	return e, nil
}

// foldOf returns the copy of a caller's event that Append folds into the
// indexes: exactly what decodeFold would return for its payload, without
// the decoding when the event carries no maps (the common case: only
// execution.started has a trigger and parameters). Strings are immutable
// and the time is normalised through its JSON form, so the copy shares
// nothing with the caller and folds the same before and after a reopen.
func foldOf(e *engine.Event, payload []byte) (engine.Event, error) {
	if e.Trigger != nil || e.Parameters != nil {
		return decodeFold(payload, 0)
	}
	var t time.Time
	b, err := e.Time.MarshalJSON()
	if err == nil {
		err = t.UnmarshalJSON(b)
	}
	if err != nil {
		return engine.Event{}, err
	}
	f := engine.Event{
		ExecutionID:    e.ExecutionID,
		Seq:            e.Seq,
		Type:           e.Type,
		Time:           t,
		RunbookName:    e.RunbookName,
		RunbookVersion: e.RunbookVersion,
		Outcome:        e.Outcome,
	}
	if e.Step != nil {
		f.Step = &engine.StepRecord{Name: e.Step.Name, Status: e.Step.Status}
	}
	return f, nil
}

// rawRecord is a record found by replay, not yet decoded.
type rawRecord struct {
	off     int64
	pos     uint64
	payload []byte
}

// Replay tuning: records are decoded in parallel, one window at a time.
const (
	replayWindowBytes   = 4 << 20
	replayWindowRecords = 16384
	replayReadBuffer    = 1 << 20
)

// replay scans the log, rebuilds the indexes and truncates a torn tail.
func (s *Store) replay(size int64) error {
	f := s.file
	head := make([]byte, len(magic))
	if _, err := f.ReadAt(head, 0); err != nil {
		return fmt.Errorf("embedded: read log header: %w", err)
	}
	if string(head) != magic {
		return fmt.Errorf("%w: %s does not start with the runbookbot log header",
			ErrCorrupt, filepath.Join(s.dir, logName))
	}
	r := bufio.NewReaderSize(io.NewSectionReader(f, int64(len(magic)), size-int64(len(magic))), replayReadBuffer)

	off := int64(len(magic))      // offset of the next record
	goodEnd := off                // end of the last complete Append call
	var window, group []rawRecord // complete calls not yet applied; current call
	windowBytes := 0
	arena := make([]byte, 0, replayWindowBytes)
	var hb [headerSize]byte
	torn := ""
scan:
	for {
		if _, err := io.ReadFull(r, hb[:]); err != nil {
			switch {
			case err != io.EOF:
				torn = "short record header"
			case len(group) > 0:
				torn = "unfinished Append call"
			}
			break scan
		}
		h := parseHeader(hb[:])
		if h.n == 0 || h.n > maxPayload {
			torn = "bad record length"
			break scan
		}
		if off+headerSize+int64(h.n) > size {
			torn = "record runs past the end of the log"
			break scan
		}
		var payload []byte
		if len(arena)+h.n <= cap(arena) {
			payload = arena[len(arena) : len(arena)+h.n]
			arena = arena[:len(arena)+h.n]
		} else {
			payload = make([]byte, h.n)
		}
		if _, err := io.ReadFull(r, payload); err != nil {
			torn = "short record payload"
			break scan
		}
		if recordCRC(hb[:], payload) != h.crc {
			torn = "checksum mismatch"
			break scan
		}
		want := s.nextPos + uint64(len(window)+len(group))
		if h.pos != want {
			return fmt.Errorf("%w: record at offset %d has pos %d, want %d", ErrCorrupt, off, h.pos, want)
		}
		group = append(group, rawRecord{off: off, pos: h.pos, payload: payload})
		off += headerSize + int64(h.n)
		if h.more {
			continue
		}
		// The Append call is complete.
		window = append(window, group...)
		windowBytes += int(off - goodEnd)
		group = group[:0]
		goodEnd = off
		if windowBytes >= replayWindowBytes || len(window) >= replayWindowRecords {
			if err := s.applyWindow(window, goodEnd); err != nil {
				return err
			}
			window, windowBytes = window[:0], 0
			arena = make([]byte, 0, replayWindowBytes)
		}
	}
	if err := s.applyWindow(window, goodEnd); err != nil {
		return err
	}
	s.idx.finishReplay()
	if goodEnd < size {
		if torn == "" {
			torn = "unfinished Append call"
		}
		if s.readOnly {
			return nil // a snapshot ignores a tail the writer may still be writing
		}
		return s.truncateTail(goodEnd, size, torn)
	}
	return nil
}

// applyWindow decodes records in parallel and folds them into the indexes in
// log order; end is the log offset just past the last of them.
func (s *Store) applyWindow(recs []rawRecord, end int64) error {
	if len(recs) == 0 {
		// Still move the end: a log holding only its header must be
		// appended after the header, not over it.
		s.idx.mu.Lock()
		s.idx.end = max(s.idx.end, end)
		s.idx.mu.Unlock()
		return nil
	}
	events := make([]engine.Event, len(recs))
	workers := min(runtime.GOMAXPROCS(0), (len(recs)+255)/256)
	chunk := (len(recs) + workers - 1) / workers
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := w*chunk, min((w+1)*chunk, len(recs))
		wg.Go(func() {
			for i := lo; i < hi; i++ {
				e, err := decodeFold(recs[i].payload, recs[i].pos)
				if err != nil {
					errs[w] = fmt.Errorf("%w: record at offset %d (pos %d) has a valid checksum but does not decode: %v",
						ErrCorrupt, recs[i].off, recs[i].pos, err)
					return
				}
				events[i] = e
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	// No reader exists yet, but take the lock to keep the race detector and
	// future readers honest.
	s.idx.mu.Lock()
	for i := range events {
		s.idx.apply(events[i], recs[i].off, false)
	}
	s.idx.end = end
	s.idx.mu.Unlock()
	s.nextPos += uint64(len(recs))
	return nil
}

// truncateTail drops the log from offset at to size after copying the
// dropped bytes to a side file, so that even a misdiagnosed tail can be
// inspected by hand.
func (s *Store) truncateTail(at, size int64, why string) error {
	path := filepath.Join(s.dir, logName)
	side := fmt.Sprintf("%s.torn-%d-%d", path, at, time.Now().UnixNano())
	if err := copyRange(s.file, at, size-at, side); err != nil {
		return fmt.Errorf("embedded: save torn tail of %s: %w", path, err)
	}
	if err := syncDir(s.dir); err != nil {
		return err
	}
	if err := s.file.Truncate(at); err != nil {
		return fmt.Errorf("embedded: truncate torn tail of %s: %w", path, err)
	}
	if err := s.file.Sync(); err != nil {
		return fmt.Errorf("embedded: truncate torn tail of %s: %w", path, err)
	}
	s.tornBytes = size - at
	s.logger.Warn("embedded store: dropped torn write at end of event log",
		"log", path, "offset", at, "bytes", size-at, "reason", why, "saved", side,
		"events", s.nextPos-1)
	return nil
}

// copyRange writes n bytes of f from off into a new file at path, fsynced.
func copyRange(f *os.File, off, n int64, path string) error {
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, io.NewSectionReader(f, off, n)); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// readSpan reads the records of consecutive positions first, first+1, ...
// whose offsets are offs; end is the offset just past the last one. It reads
// in chunks of about readChunk bytes.
func (s *Store) readSpan(offs []int64, end int64, first uint64) ([]engine.Event, error) {
	out := make([]engine.Event, 0, len(offs))
	var buf []byte
	for i := 0; i < len(offs); {
		// Take records [i, j) so that the chunk stays near readChunk bytes
		// (always at least one record).
		j := i + 1
		for j < len(offs) && offs[j]-offs[i] < readChunk {
			j++
		}
		stop := end
		if j < len(offs) {
			stop = offs[j]
		}
		n := int(stop - offs[i])
		if cap(buf) < n {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := s.file.ReadAt(buf, offs[i]); err != nil {
			return nil, fmt.Errorf("embedded: read log at %d: %w", offs[i], err)
		}
		for k := i; k < j; k++ {
			rec := buf[offs[k]-offs[i]:]
			if k+1 < j {
				rec = buf[offs[k]-offs[i] : offs[k+1]-offs[i]]
			}
			pos := first + uint64(k)
			h, payload, err := parseRecord(rec)
			if err != nil || h.pos != pos {
				return nil, fmt.Errorf("%w: record at offset %d (pos %d) no longer reads back", ErrCorrupt, offs[k], pos)
			}
			e, err := decodeEvent(payload, pos)
			if err != nil {
				return nil, fmt.Errorf("%w: record at offset %d (pos %d): %v", ErrCorrupt, offs[k], pos, err)
			}
			out = append(out, e)
		}
		i = j
	}
	return out, nil
}

// readChunk is the size of one read done by readSpan.
const readChunk = 1 << 20
