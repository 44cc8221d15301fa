package commands

import (
	"errors"
	"reflect"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Command
	}{
		{"run with params", `run high-memory-pod-remediation namespace=staging podName=api-1`,
			Command{Verb: VerbRun, Target: "high-memory-pod-remediation", Params: map[string]string{"namespace": "staging", "podName": "api-1"}, Flags: map[string]string{}}},
		{"quoted value", `run notify message="two words" note='it''s'`,
			Command{Verb: VerbRun, Target: "notify", Params: map[string]string{"message": "two words", "note": "its"}, Flags: map[string]string{}}},
		{"smart quotes from Slack", "run notify message=\u201ctwo words\u201d",
			Command{Verb: VerbRun, Target: "notify", Params: map[string]string{"message": "two words"}, Flags: map[string]string{}}},
		{"dry-run alias", `plan x a=1`, Command{Verb: VerbDryRun, Target: "x", Params: map[string]string{"a": "1"}, Flags: map[string]string{}}},
		{"history flags", `history restart --outcome=rollback --since 24h --limit 5`,
			Command{Verb: VerbHistory, Target: "restart", Params: map[string]string{}, Flags: map[string]string{"outcome": "rollback", "since": "24h", "limit": "5"}}},
		{"reject with reason", `reject abc.123 check the logs first`,
			Command{Verb: VerbReject, Target: "abc.123", Text: "check the logs first", Params: map[string]string{}, Flags: map[string]string{}}},
		{"empty is help", ``, Command{Verb: VerbHelp}},
		{"status alone lists the active", `status`, Command{Verb: VerbStatus, Params: map[string]string{}, Flags: map[string]string{}}},
		{"status by prefix", `status 3f2a`, Command{Verb: VerbStatus, Target: "3f2a", Params: map[string]string{}, Flags: map[string]string{}}},
		{"bypass with justification", `bypass abc.1 prod is down, no approver awake`,
			Command{Verb: VerbBypass, Target: "abc.1", Text: "prod is down, no approver awake", Params: map[string]string{}, Flags: map[string]string{}}},
		{"custom approve button", `approve abc.1 --choice=approve-canary`,
			Command{Verb: VerbApprove, Target: "abc.1", Choice: "approve-canary", Params: map[string]string{}, Flags: map[string]string{}}},
		{"custom reject button with its form's comment", `reject abc.1 --choice=wrong-service not this one`,
			Command{Verb: VerbReject, Target: "abc.1", Choice: "wrong-service", Text: "not this one", Params: map[string]string{}, Flags: map[string]string{}}},
		{"a second --choice is comment text", `reject abc.1 --choice=a --choice=b`,
			Command{Verb: VerbReject, Target: "abc.1", Choice: "a", Text: "--choice=b", Params: map[string]string{}, Flags: map[string]string{}}},
		{"schedules lists", `schedules`, Command{Verb: VerbSchedules, Params: map[string]string{}, Flags: map[string]string{}}},
		{"pause a schedule", `schedules pause nightly-report`,
			Command{Verb: VerbSchedules, Action: ActionPause, Target: "nightly-report", Params: map[string]string{}, Flags: map[string]string{}}},
		{"resume a schedule, any case", `Schedules RESUME nightly-report`,
			Command{Verb: VerbSchedules, Action: ActionResume, Target: "nightly-report", Params: map[string]string{}, Flags: map[string]string{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.in)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Parse(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseErrorsCarryUsage(t *testing.T) {
	for _, in := range []string{`run`, `run a=1`, `run x novalue`, `run x a=1 a=2`, `status a b`, `bypass`, `approve`, `approve a b`,
		`approve a --choice=`, `reject`, `history --colour red`,
		`history --limit 0`, `history --since`, `frobnicate`, `run x message="unclosed`, `list extra`,
		`schedules pause`, `schedules resume`, `schedules stop x`, `schedules pause a b`, `schedules x`} {
		_, err := Parse(in)
		var ue *UsageError
		if !errors.As(err, &ue) || ue.Usage == "" || ue.Problem == "" {
			t.Errorf("Parse(%q) err = %v, want a usage error", in, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{`run a b=c`, `history x --outcome success`, `reject id why`, `run x m="a b"`, "\u201c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Parse(s)
		if err == nil && c.Verb == "" {
			t.Fatalf("Parse(%q) gave no verb", s)
		}
	})
}
