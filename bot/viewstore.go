package bot

import (
	"context"
	"encoding/json"
	"sync"
)

// ViewStore keeps, durably, what each execution's conversation has been
// shown (an opaque record per execution) and the view's cursor: the
// position in the event log up to which every event is shown. Stores live
// beside the event stores (integrations/embedded, integrations/redis) and
// know nothing of the record's contents.
type ViewStore interface {
	// Cursor returns the saved cursor (0 when none).
	Cursor(ctx context.Context) (uint64, error)
	// SetCursor saves the cursor; it never moves backwards.
	SetCursor(ctx context.Context, pos uint64) error
	// Load returns an execution's record, or nil when none was saved.
	Load(ctx context.Context, executionID string) ([]byte, error)
	// Save replaces an execution's record; it returns once it is durable.
	Save(ctx context.Context, executionID string, record []byte) error
}

// viewRecord is what an execution's conversation has been shown.
type viewRecord struct {
	// Seq: every event of the execution up to Seq is shown.
	Seq int64 `json:"seq"`
	// Msgs are the messages of the execution by key.
	Msgs map[string]shown `json:"msgs,omitempty"`
	// Links open messages (the parent, approval cards) by key.
	Links map[string]string `json:"links,omitempty"`
}

// shown is one message as delivered.
type shown struct {
	Ref  MessageRef `json:"ref"`
	Hash uint64     `json:"h,omitempty"`
	// Posting: a post was attempted and its result not recorded (a crash
	// in between); look for the message before posting again.
	Posting bool `json:"p,omitempty"`
	// Skipped: the message was left out under the rate limit (the parent
	// lists it instead).
	Skipped bool `json:"s,omitempty"`
}

func decodeRecord(b []byte) viewRecord {
	var r viewRecord
	if len(b) > 0 {
		_ = json.Unmarshal(b, &r)
	}
	if r.Msgs == nil {
		r.Msgs = map[string]shown{}
	}
	return r
}

// MemoryViews is a ViewStore in memory: for tests and for running without
// a durable store (a restart then re-renders every unfinished execution).
type MemoryViews struct {
	mu      sync.Mutex
	cursor  uint64
	records map[string][]byte
	// Saves counts Save calls.
	Saves int
}

var _ ViewStore = (*MemoryViews)(nil)

// NewMemoryViews returns an empty in-memory ViewStore.
func NewMemoryViews() *MemoryViews { return &MemoryViews{records: map[string][]byte{}} }

// Cursor implements ViewStore.
func (m *MemoryViews) Cursor(context.Context) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cursor, nil
}

// SetCursor implements ViewStore.
func (m *MemoryViews) SetCursor(_ context.Context, pos uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cursor = max(m.cursor, pos)
	return nil
}

// Load implements ViewStore.
func (m *MemoryViews) Load(_ context.Context, id string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.records[id], nil
}

// Save implements ViewStore.
func (m *MemoryViews) Save(_ context.Context, id string, rec []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.records[id] = append([]byte(nil), rec...)
	m.Saves++
	return nil
}
