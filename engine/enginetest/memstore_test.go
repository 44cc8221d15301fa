package enginetest

import (
	"testing"

	"github.com/runbookbot/runbookbot/engine"
)

func TestMemStoreSuite(t *testing.T) {
	RunStoreSuite(t, func(t *testing.T) func() engine.Store {
		s := NewMemStore()
		return func() engine.Store { return s }
	})
}
