package schedule_test

import (
	"testing"

	"github.com/runbookbot/runbookbot/commands/schedule"
	"github.com/runbookbot/runbookbot/commands/schedule/scheduletest"
)

func TestMemoryStore(t *testing.T) {
	var s *schedule.MemoryStore
	scheduletest.RunStoreSuite(t, func(t *testing.T, reopen bool) schedule.Store {
		if !reopen || s == nil {
			s = schedule.NewMemoryStore()
		}
		return s // a process that "restarts" keeps its memory here
	})
}
