package test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/integrations/redis"
	"github.com/runbookbot/runbookbot/test/redistest"
)

const replicaEnv = "RUNBOOKBOT_REPLICA_CHILD"

// replica wires an engine to a shared Redis store with leases and
// forwarded decisions, as serve does with --store redis://.
func replica(ctx context.Context, url, owner string) (*engine.Engine, *redis.Store, error) {
	reg, cat := loadCrashCatalog(nil)
	store, err := redis.NewStore(ctx, url)
	if err != nil {
		return nil, nil, err
	}
	fwd := redis.NewForwarder(store, owner, nil)
	eng := engine.New(engine.Config{Store: store, Registry: reg, Catalog: cat, Leases: store, Owner: owner,
		LeaseTTL: time.Second, Forwarder: fwd})
	go fwd.Serve(ctx, eng)
	return eng, store, nil
}

func replicaChild(url string) {
	ctx := context.Background()
	eng, _, err := replica(ctx, url, "replica-a")
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	ready := make(chan string, 1)
	eng.Subscribe(func(e engine.Event) {
		if e.Type == engine.EventApprovalRequested {
			ready <- e.Approval.ID
		}
	})
	if _, err := eng.Start(ctx, engine.StartRequest{Runbook: "crashy", Params: map[string]any{"mode": "approval"}, Trigger: engine.TriggerInfo{TriggeredBy: "alice"}}); err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	fmt.Println("READY", <-ready)
	select {}
}

// Two replicas share one Redis. The one driving an execution that waits on
// an approval is killed with SIGKILL; the other takes it over when the
// lease expires, the approval completes it, and no step runs twice.
func TestReplicaTakeover(t *testing.T) {
	srv := redistest.Start(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), replicaEnv+"="+srv.URL())
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line <- sc.Text()
		}
	}()
	var approvalID string
	select {
	case l := <-line:
		if !strings.HasPrefix(l, "READY ") {
			t.Fatalf("replica A said %q", l)
		}
		approvalID = strings.TrimPrefix(l, "READY ")
	case <-time.After(30 * time.Second):
		t.Fatal("replica A never reached the approval")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	eng, store, err := replica(ctx, srv.URL(), "replica-b")
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	defer store.Close()
	go eng.Watch(ctx, 100*time.Millisecond)

	// While A lives, a decision clicked on B is forwarded to A and A's
	// answer (four-eyes) comes back.
	if _, err := eng.Decide(ctx, engine.DecisionRequest{ApprovalID: approvalID, User: "alice", Verb: engine.DecisionApprove}); !errors.Is(err, engine.ErrSelfApproval) {
		t.Fatalf("forwarded self-approval err = %v, want ErrSelfApproval", err)
	}
	if len(eng.Active()) != 0 {
		t.Fatal("replica B took over an execution whose replica is alive")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	execID := engine.ExecutionOf(approvalID)
	deadline := time.Now().Add(15 * time.Second)
	for len(eng.Active()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("replica B never took the execution over")
		}
		time.Sleep(20 * time.Millisecond) // the takeover is a lease expiring in Redis
	}
	if _, err := eng.Decide(ctx, engine.DecisionRequest{ApprovalID: approvalID, User: "bob", Verb: engine.DecisionApprove}); err != nil {
		t.Fatalf("approve on B: %v", err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if outcome, err := eng.Wait(wctx, execID); err != nil || outcome != engine.OutcomeSuccess {
		t.Fatalf("outcome %s, %v", outcome, err)
	}
	evs, _ := store.Events(ctx, execID)
	starts := map[string]int{}
	requests := 0
	for _, e := range evs {
		if e.Type == engine.EventStepStarted {
			starts[e.Step.Name]++
		}
		if e.Type == engine.EventApprovalRequested {
			requests++
		}
	}
	for name, n := range starts {
		if n != 1 {
			t.Errorf("step %s ran %d times", name, n)
		}
	}
	if requests != 1 || starts["before"] != 1 || starts["gate"] != 1 {
		t.Errorf("approval requested %d times, starts %v", requests, starts)
	}
}
