package engine_test

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/engine/enginetest"
)

var update = flag.Bool("update", false, "rewrite golden files")

// golden compares got with testdata/NAME, rewriting it under -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("missing golden file (run with -update): %v", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from golden file.\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func TestShippedRunbooksLintClean(t *testing.T) {
	cat, diags := engine.LoadPaths(enginetest.NewCluster().Registry(), "../runbooks")
	if len(diags) > 0 {
		t.Fatalf("shipped runbooks do not lint:\n%v", diags)
	}
	want := []string{"certificate-renewal", "cpu-throttling-remediation", "disk-cleanup-remediation", "example-echo", "high-memory-pod-remediation"}
	if got := strings.Join(cat.Names(), ","); got != strings.Join(want, ",") {
		t.Errorf("runbooks = %s", got)
	}
	if cat.Mappings == nil || len(cat.Mappings.Mappings) != 5 || cat.RBAC == nil || len(cat.RBAC.Roles) != 4 || cat.Secrets == nil {
		t.Errorf("configs not loaded: mappings=%v rbac=%v secrets=%v", cat.Mappings != nil, cat.RBAC != nil, cat.Secrets != nil)
	}
	m := cat.Mappings.Mappings[0]
	if len(m.Conds) != 1 || m.Conds[0].Op != "!=" || m.Conds[0].Value != "production-critical" {
		t.Errorf("mapping condition parsed as %+v", m.Conds)
	}
}

// Each bad file has its expected diagnostics in a golden file: positions,
// messages and hints are what users read.
func TestLintMessagesGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/lint/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no lint cases: %v", err)
	}
	reg := enginetest.NewCluster().Registry()
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			_, diags := engine.LoadPaths(reg, f)
			if len(diags) == 0 {
				t.Fatalf("%s: no diagnostics, want some", f)
			}
			var b strings.Builder
			for _, d := range diags {
				b.WriteString(d.String() + "\n")
			}
			golden(t, strings.TrimSuffix(f, ".yaml")[len("testdata/"):]+".golden", b.String())
		})
	}
}
