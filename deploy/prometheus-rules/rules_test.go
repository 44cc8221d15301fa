// Package prometheusrules holds the Prometheus alerting rules for runbook
// health; its test runs `promtool check rules` and `promtool test rules`
// so that CI checks the rules against their synthetic series.
package prometheusrules

import (
	"os"
	"os/exec"
	"testing"
)

// RequireEnv makes a missing promtool a failure instead of a skip (CI sets
// it; the Debian prometheus package ships promtool).
const RequireEnv = "RUNBOOKBOT_REQUIRE_PROMETHEUS"

func promtool(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv(RequireEnv) != "" {
			t.Fatalf("promtool not found and %s is set (apt-get install prometheus)", RequireEnv)
		}
		t.Skip("promtool not found: skipping (apt-get install prometheus)")
	}
	return bin
}

func TestRulesAreValid(t *testing.T) {
	out, err := exec.Command(promtool(t), "check", "rules", "runbook-health.rules.yml").CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}

func TestRulesFireOnTheSeedThresholds(t *testing.T) {
	out, err := exec.Command(promtool(t), "test", "rules", "runbook-health_test.yml").CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}
