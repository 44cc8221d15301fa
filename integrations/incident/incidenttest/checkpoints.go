// Package incidenttest holds the behaviour every incident.Checkpoints
// implementation must show, as one suite each implementation runs (the
// memory and file checkpoints here, the Redis one where it is wired).
package incidenttest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/runbookbot/runbookbot/integrations/incident"
)

// RunCheckpointSuite runs the suite. open returns a fresh, empty backing
// store and a function that opens it: each call of that function is one
// process's view of the same checkpoint.
func RunCheckpointSuite(t *testing.T, open func(t *testing.T) func() incident.Checkpoints) {
	ctx := context.Background()
	t.Run("empty", func(t *testing.T) {
		cp := open(t)()
		data, v, err := cp.Load(ctx)
		if err != nil || len(data) != 0 || v != 0 {
			t.Fatalf("Load of a new checkpoint = %q, %d, %v; want nothing, version 0", data, v, err)
		}
	})
	t.Run("saves are read back by another process", func(t *testing.T) {
		proc := open(t)
		a, b := proc(), proc()
		v1, err := a.Save(ctx, []byte(`{"cursor":1}`), 0)
		if err != nil {
			t.Fatal(err)
		}
		v2, err := a.Save(ctx, []byte(`{"cursor":2}`), v1)
		if err != nil {
			t.Fatal(err)
		}
		if v2 == v1 {
			t.Fatalf("two saves gave the same version %d", v2)
		}
		data, v, err := b.Load(ctx)
		if err != nil || string(data) != `{"cursor":2}` || v != v2 {
			t.Fatalf("the other process reads %q at %d (%v), want the second save at %d", data, v, err, v2)
		}
	})
	t.Run("a stale version is refused", func(t *testing.T) {
		proc := open(t)
		a, b := proc(), proc()
		v1, err := a.Save(ctx, []byte(`{"cursor":1}`), 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Save(ctx, []byte(`{"cursor":9}`), 0); !errors.Is(err, incident.ErrConflict) {
			t.Fatalf("save over a newer version: %v, want ErrConflict", err)
		}
		if _, err := b.Save(ctx, []byte(`{"cursor":9}`), v1+7); !errors.Is(err, incident.ErrConflict) {
			t.Fatalf("save at a version never written: %v, want ErrConflict", err)
		}
		data, v, _ := a.Load(ctx)
		if string(data) != `{"cursor":1}` || v != v1 {
			t.Fatalf("after refused saves: %q at %d, want the first save", data, v)
		}
	})
	t.Run("concurrent writers: one wins each round", func(t *testing.T) {
		proc := open(t)
		const writers, rounds = 6, 5
		cps := make([]incident.Checkpoints, writers)
		for i := range cps {
			cps[i] = proc()
		}
		var version uint64
		for round := range rounds {
			var wg sync.WaitGroup
			wins := make(chan uint64, writers)
			errs := make(chan error, writers)
			for i, cp := range cps {
				wg.Add(1)
				go func() {
					defer wg.Done()
					v, err := cp.Save(ctx, fmt.Appendf(nil, `{"round":%d,"writer":%d}`, round, i), version)
					switch {
					case err == nil:
						wins <- v
					case !errors.Is(err, incident.ErrConflict):
						errs <- err
					}
				}()
			}
			wg.Wait()
			close(wins)
			close(errs)
			for err := range errs {
				t.Fatalf("round %d: %v", round, err)
			}
			if len(wins) != 1 {
				t.Fatalf("round %d: %d writers won from version %d, want exactly 1", round, len(wins), version)
			}
			version = <-wins
		}
		if _, v, err := proc().Load(ctx); err != nil || v != version {
			t.Fatalf("final version %d (%v), want %d", v, err, version)
		}
	})
}
