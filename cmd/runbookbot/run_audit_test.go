package main

import (
	"context"
	"regexp"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/runbookbot/runbookbot/integrations/redis"
	"github.com/runbookbot/runbookbot/test/redistest"
)

// `run --store redis://…` leaves every event of its execution in the audit
// stream by the time it exits, with no serve running to ship them.
func TestRunShipsAuditEventsBeforeExit(t *testing.T) {
	srv := redistest.Start(t)
	t.Setenv("RUNBOOKBOT_AUDIT_REDIS", "")
	code, out, errs := cli(t, "", "run", "--runbooks", "../../runbooks", "--store", srv.URL(), "--as", "alice",
		"example-echo", "service=checkout", "--yes")
	if code != exitOK {
		t.Fatalf("run: exit %d\n%s%s", code, out, errs)
	}
	m := regexp.MustCompile(`execution ([0-9a-f-]{36})`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no execution id in:\n%s", out)
	}
	id := m[1]

	ctx := context.Background()
	store, err := redis.NewStore(ctx, srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	evs, err := store.Events(ctx, id)
	if err != nil || len(evs) == 0 {
		t.Fatalf("stored events: %d, %v", len(evs), err)
	}
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	defer c.Close()
	entries, err := c.XRange(ctx, redis.DefaultAuditStream, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		if e.Values["executionId"] == id {
			got = append(got, e.Values["type"].(string))
		}
	}
	if len(got) != len(evs) {
		t.Fatalf("audit stream has %d of the execution's %d events: %v", len(got), len(evs), got)
	}
	for i, e := range evs {
		if got[i] != string(e.Type) {
			t.Errorf("audit entry %d is %s, want %s", i, got[i], e.Type)
		}
	}
	if last := got[len(got)-1]; last != "execution.finished" {
		t.Errorf("last audit entry %s, want execution.finished", last)
	}
}
