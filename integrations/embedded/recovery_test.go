package embedded

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/engine/enginetest"
)

// tornFixture is a closed store holding execution "a" (4 events, appended
// one by one) and then execution "b" (3 events in one Append call).
type tornFixture struct {
	dir, log    string
	sizeA, size int64 // log size after "a", and after "b"
}

func newTornFixture(t *testing.T) tornFixture {
	t.Helper()
	dir := t.TempDir()
	s := openT(t, dir)
	for _, e := range enginetest.Lifecycle("a", "rb", "alice", "manual", t0, engine.OutcomeSuccess) {
		mustAppend(t, s, e)
	}
	sizeA := s.Stats().LogBytes
	mustAppend(t, s, enginetest.Lifecycle("b", "rb", "bob", "alert", t0, "")...)
	size := s.Stats().LogBytes
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return tornFixture{dir: dir, log: filepath.Join(dir, logName), sizeA: sizeA, size: size}
}

// firstRecordEnd returns the end offset of the first record of "b".
func (f tornFixture) firstRecordEnd(t *testing.T) int64 {
	b, err := os.ReadFile(f.log)
	if err != nil {
		t.Fatal(err)
	}
	n := binary.LittleEndian.Uint32(b[f.sizeA:]) & lenMask
	return f.sizeA + headerSize + int64(n)
}

func appendBytes(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

func TestTornWrite(t *testing.T) {
	tests := []struct {
		name   string
		mangle func(t *testing.T, f tornFixture)
		keepB  bool // the torn part comes after "b"
	}{
		{"garbage appended", func(t *testing.T, f tornFixture) {
			appendBytes(t, f.log, []byte("this is not a record, just junk after a crash"))
		}, true},
		{"zeroed page appended", func(t *testing.T, f tornFixture) {
			appendBytes(t, f.log, make([]byte, 4096))
		}, true},
		{"huge length", func(t *testing.T, f tornFixture) {
			appendBytes(t, f.log, []byte{0xff, 0xff, 0xff, 0x7f, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13})
		}, true},
		{"partial header", func(t *testing.T, f tornFixture) {
			os.Truncate(f.log, f.sizeA+10)
		}, false},
		{"partial payload of last record", func(t *testing.T, f tornFixture) {
			os.Truncate(f.log, f.size-5)
		}, false},
		{"call cut between its records", func(t *testing.T, f tornFixture) {
			os.Truncate(f.log, f.firstRecordEnd(t))
		}, false},
		{"bit flip in last record", func(t *testing.T, f tornFixture) {
			b, _ := os.ReadFile(f.log)
			b[f.size-3] ^= 0x20
			os.WriteFile(f.log, b, 0o600)
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newTornFixture(t)
			tt.mangle(t, f)
			fi, _ := os.Stat(f.log)
			torn := fi.Size() - f.size
			if !tt.keepB {
				torn = fi.Size() - f.sizeA
			}

			s := openT(t, f.dir)
			if got := s.Stats().TornBytes; got != torn {
				t.Errorf("TornBytes = %d, want %d", got, torn)
			}
			if evs := eventsOf(t, s, "a"); len(evs) != 4 || evs[3].Type != engine.EventExecutionFinished {
				t.Fatalf("a: %d events after recovery, want 4", len(evs))
			}
			wantB := 0
			if tt.keepB {
				wantB = 3
			}
			if evs := eventsOf(t, s, "b"); len(evs) != wantB {
				t.Fatalf("b: %d events after recovery, want %d (an Append call is all or nothing)", len(evs), wantB)
			}
			// The dropped bytes are kept aside.
			sides, _ := filepath.Glob(f.log + ".torn-*")
			if len(sides) != 1 {
				t.Fatalf("side files: %v", sides)
			}
			if fi, _ := os.Stat(sides[0]); fi.Size() != torn {
				t.Errorf("side file holds %d bytes, want %d", fi.Size(), torn)
			}

			// Appends continue, positions stay dense.
			if !tt.keepB {
				mustAppend(t, s, enginetest.Lifecycle("b", "rb", "bob", "alert", t0, "")...)
			}
			mustAppend(t, s, ev("b", 4, engine.EventExecutionFinished))
			s.Close()
			s = openT(t, f.dir)
			defer s.Close()
			if s.Stats().TornBytes != 0 {
				t.Errorf("second reopen found a torn tail again")
			}
			all, err := s.ReadFrom(context.Background(), 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(all) != 8 {
				t.Fatalf("log has %d events, want 8", len(all))
			}
			for i, e := range all {
				if e.Pos != uint64(i+1) {
					t.Errorf("event %d has Pos %d", i, e.Pos)
				}
			}
			if un, _ := s.Unfinished(context.Background()); len(un) != 0 {
				t.Errorf("Unfinished = %v", un)
			}
		})
	}
}

func TestTornLogHeader(t *testing.T) {
	dir := t.TempDir()
	// A crash while the new log's header was being written.
	if err := os.WriteFile(filepath.Join(dir, logName), []byte(magic[:3]), 0o600); err != nil {
		t.Fatal(err)
	}
	s := openT(t, dir)
	defer s.Close()
	mustAppend(t, s, ev("a", 1, engine.EventExecutionStarted))
}

// TestCorruptNotTorn checks that damage a torn write cannot explain stops
// Open instead of silently dropping data.
func TestCorruptNotTorn(t *testing.T) {
	t.Run("foreign file", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, logName), []byte("hello, I am somebody else's file"), 0o600)
		if _, err := Open(dir); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Open: %v, want ErrCorrupt", err)
		}
	})
	t.Run("valid record with wrong position", func(t *testing.T) {
		f := newTornFixture(t)
		b, _ := os.ReadFile(f.log)
		appendBytes(t, f.log, b[f.sizeA:f.firstRecordEnd(t)]) // replay of pos 5
		_, err := Open(f.dir)
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Open: %v, want ErrCorrupt", err)
		}
		if _, err := Open(f.dir); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("second Open: %v, want ErrCorrupt again (and no lock left behind)", err)
		}
	})
}

const helperEnv = "EMBEDDED_STORE_HELPER_DIR"

// TestHelperProcess is the child of TestCrashDurability: it appends events
// from several goroutines until killed, printing each one after Append
// returned.
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv(helperEnv)
	if dir == "" {
		return
	}
	s, err := Open(dir)
	if err != nil {
		fmt.Printf("open failed: %v\n", err)
		os.Exit(2)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for x := 0; ; x++ {
				id := fmt.Sprintf("exec-%d-%d", g, x)
				for _, e := range stepEvents(id, 5) {
					if err := s.Append(context.Background(), e); err != nil {
						fmt.Printf("append failed: %v\n", err)
						os.Exit(2)
					}
					mu.Lock()
					fmt.Printf("appended %s %d\n", id, e.Seq)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
}

func TestCrashDurability(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a child process")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), helperEnv+"="+dir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The child appends until killed: make sure it is, whatever happens.
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	acked := map[string]int64{} // execution -> highest seq reported appended
	lines := 0
	sc := bufio.NewScanner(out)
	read := func() bool {
		if !sc.Scan() {
			return false
		}
		var id string
		var seq int64
		if _, err := fmt.Sscanf(sc.Text(), "appended %s %d", &id, &seq); err != nil {
			t.Fatalf("child said %q", sc.Text())
		}
		acked[id] = max(acked[id], seq)
		lines++
		return true
	}
	for lines < 2000 && read() {
	}
	if lines < 2000 {
		cmd.Wait()
		t.Fatalf("child stopped after %d lines: %s", lines, stderr.String())
	}
	// While the child runs, the store is locked against this process too.
	if _, err := Open(dir); !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", cmd.Process.Pid)) {
		t.Errorf("Open while the child holds the store: %v", err)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Lines already in the pipe were printed after Append returned too.
	for read() {
	}
	cmd.Wait()

	s := openT(t, dir)
	defer s.Close()
	t.Logf("child acknowledged %d events before SIGKILL; store holds %d, torn bytes %d",
		lines, s.Stats().Events, s.Stats().TornBytes)
	for id, seq := range acked {
		evs := eventsOf(t, s, id)
		if int64(len(evs)) < seq {
			t.Errorf("%s: %d events stored, child reported seq %d appended", id, len(evs), seq)
			continue
		}
		for i, e := range evs {
			if e.Seq != int64(i+1) {
				t.Errorf("%s: event %d has seq %d", id, i, e.Seq)
			}
		}
	}
	if int(s.Stats().Events) < lines {
		t.Errorf("store holds %d events, child reported %d", s.Stats().Events, lines)
	}
}

// stepEvents returns the 12 events of an execution with steps steps
// (started, steps x (step.started, step.finished), finished).
func stepEvents(id string, steps int) []engine.Event {
	base := engine.Event{ExecutionID: id, RunbookName: "restart-pod", RunbookVersion: "1.2.0"}
	var out []engine.Event
	add := func(typ engine.EventType, f func(*engine.Event)) {
		e := base
		e.Seq = int64(len(out) + 1)
		e.Type = typ
		e.Time = t0.Add(time.Duration(e.Seq) * time.Second)
		if f != nil {
			f(&e)
		}
		out = append(out, e)
	}
	add(engine.EventExecutionStarted, func(e *engine.Event) {
		e.Trigger = &engine.TriggerInfo{Type: "alert", Source: "alertmanager", TriggeredBy: "oncall"}
		e.Parameters = map[string]any{"namespace": "prod", "pod": id}
	})
	for i := range steps {
		name := fmt.Sprintf("step-%d", i)
		add(engine.EventStepStarted, func(e *engine.Event) {
			e.Step = &engine.StepRecord{Name: name, Phase: engine.PhaseStep, Index: i, Action: "kubectl.exec", Status: engine.StepRunning}
		})
		add(engine.EventStepFinished, func(e *engine.Event) {
			e.Step = &engine.StepRecord{Name: name, Phase: engine.PhaseStep, Index: i, Action: "kubectl.exec",
				Status: engine.StepSuccess, Output: map[string]any{"stdout": "ok", "exitCode": 0.0}}
		})
	}
	add(engine.EventExecutionFinished, func(e *engine.Event) { e.Outcome = engine.OutcomeSuccess })
	return out
}
