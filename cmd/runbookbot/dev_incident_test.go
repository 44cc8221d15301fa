package main

import (
	"bufio"
	"context"
	"github.com/runbookbot/runbookbot/engine/enginetest"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// `runbookbot dev` serves a PagerDuty emulator and writes every
// execution's incident timeline to it: a run started over the playground's
// API (on the playground's own address, with the printed demo token) shows
// up on the incidents page, resolved, with its steps.
func TestDevShowsIncidentTimelines(t *testing.T) {
	t.Setenv("RUNBOOKBOT_INCIDENT_CONFIG", "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	outR, outW := io.Pipe()
	var errs enginetest.LogBuffer
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"dev", "--addr", "127.0.0.1:0", "--discord-addr", "off", "--runbooks", "../../runbooks",
			"--data-dir", filepath.Join(t.TempDir(), "data")}, strings.NewReader(""), outW, &errs)
		outW.Close()
	}()
	var base, apiURL, token, page string
	sc := bufio.NewScanner(outR)
	for sc.Scan() {
		l := sc.Text()
		if u, ok := strings.CutPrefix(l, "runbookbot playground: "); ok {
			base = u
		}
		if rest, ok := strings.CutPrefix(strings.TrimSpace(l), "API: "); ok {
			apiURL, token, _ = strings.Cut(rest, " · demo token (acts as bob): ")
		}
		if u, ok := strings.CutPrefix(strings.TrimSpace(l), "incidents (PagerDuty emulator): "); ok {
			page = u
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, outR) }() // keep dev's stdout flowing
	if page == "" || apiURL == "" || token == "" {
		cancel()
		t.Fatalf("dev printed no incidents page or API (page %q, API %q); exit %d, stderr:\n%s", page, apiURL, <-code, errs.String())
	}
	// The API shares the playground's address with the Slack emulator,
	// whose Web API is at /api/.
	if apiURL != base+"api/v1" {
		t.Errorf("dev's API is at %s, want %sapi/v1 (the playground's address)", apiURL, base)
	}
	req, _ := http.NewRequest(http.MethodPost, apiURL+"/executions", strings.NewReader(`{"runbook":"example-echo","parameters":{"service":"checkout"}}`))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("starting example-echo over the API: %s %s", resp.Status, b)
	}
	var body string
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, got := get(t, page)
		body = got
		if st == http.StatusOK && strings.Contains(body, "Runbook completed successfully") && strings.Contains(body, ">resolved<") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the incidents page never showed the resolved timeline:\n%s\nstderr:\n%s", body, errs.String())
		}
		time.Sleep(100 * time.Millisecond) // the execution sleeps 2s on the wall clock
	}
	for _, want := range []string{"Auto-remediation: example-echo", "Runbook started: example-echo", "Step: inspect — success", "Step: settle — success", "Step: restart — success"} {
		if !strings.Contains(body, want) {
			t.Errorf("the incidents page lacks %q", want)
		}
	}
	cancel()
	if c := <-code; c != exitOK {
		t.Fatalf("dev exit %d:\n%s", c, errs.String())
	}
}
