package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// notExported are series the dashboard charts before the bot exports them.
// When one appears in the code, this test says to drop it from here.
var notExported = map[string]bool{}

// The Grafana dashboard charts only series the bot exports (so a renamed
// metric breaks this test, not the dashboard), and every series the bot
// exports is on it.
func TestGrafanaDashboardMatchesExportedMetrics(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/grafana/runbookbot.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	name := regexp.MustCompile(`\brunbook(?:bot)?_[a-z_]+\b`)
	charted := map[string]bool{}
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, m := range name.FindAllString(tg.Expr, -1) {
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					m = strings.TrimSuffix(m, suffix)
				}
				charted[m] = true
			}
		}
	}

	// What the code registers: quoted names in the metrics package and the
	// wiring.
	exported := map[string]bool{}
	quoted := regexp.MustCompile(`"(runbook(?:bot)?_[a-z_]+)"`)
	for _, glob := range []string{"../../integrations/metrics/*.go", "*.go"} {
		files, _ := filepath.Glob(glob)
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range quoted.FindAllStringSubmatch(string(b), -1) {
				exported[m[1]] = true
			}
		}
	}
	if len(exported) < 10 {
		t.Fatalf("found only %d exported metric names: %v", len(exported), exported)
	}
	var missing, unshown []string
	for m := range charted {
		if !exported[m] && !notExported[m] {
			missing = append(missing, m)
		}
	}
	for m := range notExported {
		if exported[m] {
			t.Errorf("%s is exported now: remove it from notExported", m)
		}
	}
	for m := range exported {
		if !charted[m] {
			unshown = append(unshown, m)
		}
	}
	sort.Strings(missing)
	sort.Strings(unshown)
	if len(missing) > 0 {
		t.Errorf("the dashboard charts series nothing exports: %v", missing)
	}
	if len(unshown) > 0 {
		t.Errorf("exported series missing from the dashboard: %v", unshown)
	}
}
