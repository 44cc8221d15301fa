package api

import (
	"context"
	"sync"
	"time"
)

// MemoryKeys keeps Idempotency-Keys in memory, for one process.
type MemoryKeys struct {
	mu   sync.Mutex
	now  func() time.Time
	keys map[string]memKey
}

type memKey struct {
	value   string
	expires time.Time
}

var _ Keys = (*MemoryKeys)(nil)

// NewMemoryKeys returns an empty key store; now tells expiry.
func NewMemoryKeys(now func() time.Time) *MemoryKeys {
	if now == nil {
		now = time.Now
	}
	return &MemoryKeys{now: now, keys: map[string]memKey{}}
}

// Remember implements Keys.
func (m *MemoryKeys) Remember(_ context.Context, key, value string, ttl time.Duration) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if k, ok := m.keys[key]; ok && now.Before(k.expires) {
		return k.value, nil
	}
	for k, v := range m.keys {
		if !now.Before(v.expires) {
			delete(m.keys, k)
		}
	}
	m.keys[key] = memKey{value, now.Add(ttl)}
	return value, nil
}

// Set implements Keys.
func (m *MemoryKeys) Set(_ context.Context, key, value string, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.keys[key] = memKey{value, m.now().Add(ttl)}
	return nil
}

// Forget implements Keys.
func (m *MemoryKeys) Forget(_ context.Context, key, value string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if k, ok := m.keys[key]; ok && k.value == value {
		delete(m.keys, key)
	}
	return nil
}
