package embedded

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/runbookbot/runbookbot/engine"
)

// EventsOf answers what Events answers for each execution, whatever the
// layout of their records: interleaved one event per Append, whole
// executions per Append, far apart, and after a reopen.
func TestEventsOfMatchesEvents(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	var ids []string
	// Twenty executions appended an event at a time, round robin, so that
	// their records interleave.
	var interleaved [][]engine.Event
	for i := range 20 {
		id := fmt.Sprintf("inter-%02d", i)
		ids = append(ids, id)
		interleaved = append(interleaved, stepEvents(id, 3))
	}
	for j := range interleaved[0] {
		for _, evs := range interleaved {
			mustAppend(t, s, evs[j])
		}
	}
	// One execution whose records lie far from the others' (a large
	// output between), and executions appended whole.
	big := stepEvents("far", 1)
	big[2].Step.Output = map[string]any{"stdout": strings.Repeat("x", 3*bulkWindow)}
	mustAppend(t, s, big...)
	ids = append(ids, "far")
	for i := range 5 {
		id := fmt.Sprintf("whole-%d", i)
		mustAppend(t, s, stepEvents(id, 2)...)
		ids = append(ids, id)
	}
	ids = append(ids, "unknown")

	check := func(s *Store) {
		t.Helper()
		got, err := s.EventsOf(context.Background(), ids)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(ids) {
			t.Fatalf("%d answers for %d ids", len(got), len(ids))
		}
		for i, id := range ids {
			if want := eventsOf(t, s, id); !reflect.DeepEqual(got[i], want) {
				t.Errorf("EventsOf[%s] = %d events, Events = %d (or they differ)", id, len(got[i]), len(want))
			}
		}
		if len(got[len(ids)-1]) != 0 {
			t.Errorf("unknown execution has events")
		}
	}
	check(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir)
	defer s.Close()
	check(s)
}
