package alerts

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeNow is a clock the test moves by hand.
type fakeNow struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeNow) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *fakeNow) Add(d time.Duration) time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.t = f.t.Add(d)
	return f.t
}

func newFakeNow() *fakeNow { return &fakeNow{t: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)} }

const rbMem = "high-memory-pod-remediation"

func TestOneExecutionPerAlertAndCoolDown(t *testing.T) {
	clk := newFakeNow()
	tr := NewTracker(TrackerConfig{Now: clk.Now})
	if ok, _ := tr.Begin("fp1", rbMem, clk.Now()); !ok {
		t.Fatal("first Begin refused")
	}
	if ok, existing := tr.Begin("fp1", rbMem, clk.Now()); ok || existing != Pending {
		t.Fatalf("duplicate before Attach: ok=%v existing=%q", ok, existing)
	}
	tr.Attach("fp1", rbMem, "exec-1")
	if ok, existing := tr.Begin("fp1", rbMem, clk.Add(time.Minute)); ok || existing != "exec-1" {
		t.Fatalf("duplicate while running: ok=%v existing=%q", ok, existing)
	}
	// Another runbook, or another alert, is independent.
	if ok, _ := tr.Begin("fp1", "other-runbook", clk.Now()); !ok {
		t.Error("other runbook refused")
	}
	if ok, _ := tr.Begin("fp2", rbMem, clk.Now()); !ok {
		t.Error("other alert refused")
	}
	tr.Finish("fp1", rbMem, "exec-other", clk.Now()) // stale: ignored
	if tr.Running(rbMem) != 2 {
		t.Fatalf("running = %d after a stale Finish", tr.Running(rbMem))
	}
	finished := clk.Add(time.Minute)
	tr.Finish("fp1", rbMem, "exec-1", finished)
	if ok, existing := tr.Begin("fp1", rbMem, clk.Add(9*time.Minute+59*time.Second)); ok || existing != "exec-1" {
		t.Fatalf("within cool-down: ok=%v existing=%q", ok, existing)
	}
	if until, cooling := tr.CoolingUntil("fp1", rbMem, clk.Now()); !cooling || !until.Equal(finished.Add(DefaultCoolDown)) {
		t.Errorf("cooling until %v %v", until, cooling)
	}
	if ok, _ := tr.Begin("fp1", rbMem, clk.Add(time.Second)); !ok {
		t.Fatal("refused after the cool-down")
	}
}

func TestAbortHasNoCoolDown(t *testing.T) {
	clk := newFakeNow()
	tr := NewTracker(TrackerConfig{CoolDown: time.Hour, Now: clk.Now})
	tr.Begin("fp", rbMem, clk.Now())
	tr.Abort("fp", rbMem)
	if tr.Running(rbMem) != 0 {
		t.Errorf("running = %d", tr.Running(rbMem))
	}
	if ok, _ := tr.Begin("fp", rbMem, clk.Now()); !ok {
		t.Error("refused after Abort")
	}
}

func TestStormIsCappedQueuedAndDrained(t *testing.T) {
	clk := newFakeNow()
	tr := NewTracker(TrackerConfig{Limit: 2, Now: clk.Now})
	var started []string
	queued := 0
	for i := range 5 {
		a := Alert{Name: "PodMemoryHigh", Fingerprint: fmt.Sprintf("fp%d", i)}
		ok, existing := tr.Begin(a.Fingerprint, rbMem, clk.Now())
		switch {
		case ok:
			started = append(started, a.Fingerprint)
			tr.Attach(a.Fingerprint, rbMem, "exec-"+a.Fingerprint)
		case existing == "":
			queued = tr.Queue(rbMem, a)
		default:
			t.Fatalf("unexpected duplicate %s", existing)
		}
	}
	if len(started) != 2 || queued != 3 {
		t.Fatalf("started %v, queued %d", started, queued)
	}
	// Requeueing the same alert does not grow the queue.
	if n := tr.Queue(rbMem, Alert{Name: "PodMemoryHigh", Fingerprint: "fp3"}); n != 3 {
		t.Errorf("requeue: %d", n)
	}
	if got := tr.Drain(rbMem); len(got) != 0 {
		t.Errorf("drained %d while full", len(got))
	}
	tr.Finish("fp0", rbMem, "exec-fp0", clk.Add(time.Minute))
	got := tr.Drain(rbMem)
	if len(got) != 1 || got[0].Fingerprint != "fp2" || tr.Running(rbMem) != 2 {
		t.Fatalf("drained %v, running %d", got, tr.Running(rbMem))
	}
	// fp3 resolves while waiting.
	if n := tr.Unqueue("fp3"); n != 1 {
		t.Errorf("unqueue = %d", n)
	}
	tr.Finish("fp1", rbMem, "exec-fp1", clk.Now())
	tr.Finish("fp2", rbMem, "", clk.Now())
	got = tr.Drain(rbMem)
	if len(got) != 1 || got[0].Fingerprint != "fp4" || len(tr.Queued(rbMem)) != 0 {
		t.Fatalf("drained %v, queued %v", got, tr.Queued(rbMem))
	}
}

func TestDrainDropsAlertsCoolingDown(t *testing.T) {
	clk := newFakeNow()
	tr := NewTracker(TrackerConfig{Limits: map[string]int{rbMem: 1}, Now: clk.Now})
	tr.Begin("a", rbMem, clk.Now())
	tr.Queue(rbMem, Alert{Fingerprint: "a"}) // the same alert again, from a repeat notification
	tr.Queue(rbMem, Alert{Fingerprint: "b"})
	tr.Finish("a", rbMem, "", clk.Add(time.Minute))
	got := tr.Drain(rbMem)
	if len(got) != 1 || got[0].Fingerprint != "b" {
		t.Errorf("drained %v", got)
	}
}

func TestLimits(t *testing.T) {
	tr := NewTracker(TrackerConfig{Limits: map[string]int{"x": 1}})
	if tr.Limit("x") != 1 || tr.Limit("y") != DefaultLimit {
		t.Errorf("limits %d %d", tr.Limit("x"), tr.Limit("y"))
	}
	tr.SetLimit("y", 7)
	tr.SetLimit("x", 0)
	if tr.Limit("x") != DefaultLimit || tr.Limit("y") != 7 {
		t.Errorf("limits %d %d", tr.Limit("x"), tr.Limit("y"))
	}
}

func TestQueueIsBounded(t *testing.T) {
	tr := NewTracker(TrackerConfig{MaxQueue: 3})
	for i := range 5 {
		tr.Queue(rbMem, Alert{Fingerprint: fmt.Sprint(i)})
	}
	q := tr.Queued(rbMem)
	if len(q) != 3 || q[0].Fingerprint != "2" {
		t.Errorf("queue = %v", q)
	}
}

func TestThreads(t *testing.T) {
	clk := newFakeNow()
	tr := NewTracker(TrackerConfig{ThreadTTL: time.Hour, Now: clk.Now})
	if _, _, ok := tr.Thread("fp"); ok {
		t.Fatal("thread before SetThread")
	}
	tr.SetThread("fp", "C123", "1764237600.000100")
	clk.Add(59 * time.Minute)
	if ch, ts, ok := tr.Thread("fp"); !ok || ch != "C123" || ts != "1764237600.000100" {
		t.Fatalf("thread = %s %s %v", ch, ts, ok)
	}
	clk.Add(2 * time.Minute)
	if _, _, ok := tr.Thread("fp"); ok {
		t.Error("thread outlived its TTL")
	}
	tr.SetThread("fp2", "C1", "1")
	tr.Forget("fp2")
	if _, _, ok := tr.Thread("fp2"); ok {
		t.Error("thread after Forget")
	}
	// The sweep drops what expired.
	tr.SetThread("fp3", "C1", "2")
	if _, ok := tr.threads["fp"]; ok {
		t.Error("expired thread not swept")
	}
}

func TestTrackerConcurrentBegin(t *testing.T) {
	clk := newFakeNow()
	tr := NewTracker(TrackerConfig{Limit: 4, Now: clk.Now})
	var admitted, queued atomic.Int32
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fp := fmt.Sprintf("fp%d", i%8) // 8 alerts, each notified 8 times
			if ok, existing := tr.Begin(fp, rbMem, clk.Now()); ok {
				admitted.Add(1)
			} else if existing == "" {
				tr.Queue(rbMem, Alert{Fingerprint: fp})
				queued.Add(1)
			}
		}()
	}
	wg.Wait()
	if admitted.Load() != 4 || tr.Running(rbMem) != 4 {
		t.Errorf("admitted %d, running %d", admitted.Load(), tr.Running(rbMem))
	}
	if n := len(tr.Queued(rbMem)); n != 4 {
		t.Errorf("queued %d distinct alerts (of %d refusals)", n, queued.Load())
	}
}
