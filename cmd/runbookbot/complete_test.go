package main

import (
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// complete asks `runbookbot __complete ARGS...` (what the shell scripts
// call) and returns the words offered and the directive.
func complete(t *testing.T, args ...string) ([]string, cobra.ShellCompDirective) {
	t.Helper()
	code, out, errs := cli(t, "", append([]string{cobra.ShellCompRequestCmd}, args...)...)
	if code != exitOK {
		t.Fatalf("__complete %q: exit %d\n%s", args, code, errs)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	last := lines[len(lines)-1]
	d, err := strconv.Atoi(strings.TrimPrefix(last, ":"))
	if !strings.HasPrefix(last, ":") || err != nil {
		t.Fatalf("__complete %q: no directive line:\n%s", args, out)
	}
	var words []string
	for _, l := range lines[:len(lines)-1] {
		w, _, _ := strings.Cut(l, "\t")
		words = append(words, w)
	}
	return words, cobra.ShellCompDirective(d)
}

func completionRunbooks(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, dir, "restart.yaml", `apiVersion: runbooks/v1
kind: Runbook
metadata: {name: restart-api, version: "1", description: Restart the API}
trigger: {type: manual}
parameters:
  - {name: service, type: string, required: true, description: which service}
  - {name: environment, type: string, default: staging, enum: [staging, production]}
  - {name: dryRun, type: boolean, default: false}
steps:
  - {name: s, type: log, action: print, params: {message: hi}}
`)
	writeFile(t, dir, "rotate.yml", `apiVersion: runbooks/v1
kind: Runbook
metadata: {name: rotate-certs, version: "1"}
trigger: {type: schedule, schedule: "0 3 * * *"}
steps:
  - {name: s, type: nosuchtype, action: x}
`)
	writeFile(t, dir, "mappings.yaml", "mappings:\n  - {alertName: X, runbook: restart-api}\n")
	writeFile(t, dir, "broken.yaml", "metadata: [not: closed\n")
	writeFile(t, dir, "notes.txt", "kind: Runbook\nmetadata: {name: not-yaml-extension}\n")
	return dir
}

func TestCompletion(t *testing.T) {
	dir := completionRunbooks(t)
	restart := filepath.Join(dir, "restart.yaml")
	const params = cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
	for _, tc := range []struct {
		name      string
		args      []string // the last is the word being completed
		want      []string
		directive cobra.ShellCompDirective
	}{
		{"subcommands", []string{""}, []string{"completion", "dev", "drift", "dry-run", "help", "history", "lint", "run", "schedules", "schema", "serve", "version"}, cobra.ShellCompDirectiveNoFileComp},
		{"runbook names, a broken one included", []string{"run", "--runbooks", dir, ""}, []string{"restart-api", "rotate-certs"}, cobra.ShellCompDirectiveNoFileComp},
		{"runbook names by prefix", []string{"dry-run", "--runbooks=" + dir, "res"}, []string{"restart-api"}, cobra.ShellCompDirectiveNoFileComp},
		{"no name matches: files", []string{"run", "--runbooks", dir, "zzz"}, nil, cobra.ShellCompDirectiveDefault},
		{"a path: files", []string{"run", "--runbooks", dir, "./r"}, nil, cobra.ShellCompDirectiveDefault},
		{"parameters", []string{"run", "--runbooks", dir, "restart-api", ""}, []string{"service=", "environment=", "dryRun="}, params},
		{"parameters by prefix", []string{"dry-run", "--runbooks", dir, "restart-api", "s"}, []string{"service="}, params},
		{"parameters not given yet", []string{"run", "--runbooks", dir, "service=api", "restart-api", "--param", "dryRun=true", ""}, []string{"environment="}, params},
		{"parameters after --param", []string{"run", "--runbooks", dir, "restart-api", "--param", "e"}, []string{"environment="}, params},
		{"parameters of a runbook file", []string{"dry-run", restart, ""}, []string{"service=", "environment=", "dryRun="}, params},
		{"enum values", []string{"run", "--runbooks", dir, "restart-api", "environment="}, []string{"environment=staging", "environment=production"}, cobra.ShellCompDirectiveNoFileComp},
		{"boolean values", []string{"run", "--runbooks", dir, "restart-api", "dryRun=t"}, []string{"dryRun=true"}, cobra.ShellCompDirectiveNoFileComp},
		{"unknown runbook: nothing", []string{"run", "--runbooks", dir, "nope", ""}, nil, cobra.ShellCompDirectiveNoFileComp},
		{"flag names", []string{"run", "--y"}, []string{"--yes"}, cobra.ShellCompDirectiveNoFileComp},
		{"serve flag names", []string{"serve", "--lis"}, []string{"--listen"}, cobra.ShellCompDirectiveNoFileComp},
		{"runbooks directory", []string{"run", "--runbooks", ""}, nil, cobra.ShellCompDirectiveFilterDirs},
		{"log format", []string{"serve", "--log-format", ""}, []string{"text", "json"}, cobra.ShellCompDirectiveNoFileComp},
		{"history runbook", []string{"history", "--runbooks", dir, "ro"}, []string{"rotate-certs"}, cobra.ShellCompDirectiveNoFileComp},
		{"history --runbook", []string{"history", "--runbooks", dir, "--runbook", ""}, []string{"restart-api", "rotate-certs"}, cobra.ShellCompDirectiveNoFileComp},
		{"history outcome", []string{"history", "--outcome", "r"}, []string{"rollback"}, cobra.ShellCompDirectiveNoFileComp},
		{"schedules verbs", []string{"schedules", ""}, []string{"pause", "resume"}, cobra.ShellCompDirectiveNoFileComp},
		{"scheduled runbooks only", []string{"schedules", "--runbooks", dir, "pause", ""}, []string{"rotate-certs"}, cobra.ShellCompDirectiveNoFileComp},
		{"lint: files", []string{"lint", ""}, nil, cobra.ShellCompDirectiveDefault},
		{"schema takes nothing", []string{"schema", ""}, nil, cobra.ShellCompDirectiveNoFileComp},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, directive := complete(t, tc.args...)
			if !slices.Equal(got, tc.want) || directive != tc.directive {
				t.Errorf("__complete %q = %q, directive %d; want %q, directive %d", tc.args, got, directive, tc.want, tc.directive)
			}
		})
	}
}

// Without --runbooks, names come from RUNBOOKBOT_RUNBOOKS, else ./runbooks.
func TestCompletionRunbooksFromEnvironment(t *testing.T) {
	t.Setenv("RUNBOOKBOT_RUNBOOKS", completionRunbooks(t))
	if got, _ := complete(t, "run", ""); !slices.Equal(got, []string{"restart-api", "rotate-certs"}) {
		t.Errorf("with RUNBOOKBOT_RUNBOOKS: %q", got)
	}
	t.Setenv("RUNBOOKBOT_RUNBOOKS", "")
	t.Chdir("../..") // ./runbooks: the shipped ones
	if got, _ := complete(t, "dry-run", "example-"); !slices.Equal(got, []string{"example-echo"}) {
		t.Errorf("from ./runbooks: %q", got)
	}
	if got, _ := complete(t, "dry-run", "example-echo", "s"); !slices.Equal(got, []string{"service="}) {
		t.Errorf("example-echo's parameters: %q", got)
	}
}

// The scripts each shell sources call back into __complete.
func TestCompletionScripts(t *testing.T) {
	for shell, marker := range map[string]string{
		"bash": "complete -o default -F __start_runbookbot runbookbot",
		"zsh":  "#compdef runbookbot",
		"fish": "complete -c runbookbot ",
	} {
		t.Run(shell, func(t *testing.T) {
			code, out, errs := cli(t, "", "completion", shell)
			if code != exitOK || errs != "" || !strings.Contains(out, marker) || !strings.Contains(out, " __complete ") {
				t.Errorf("completion %s: exit %d, stderr %q, script:\n%.400s", shell, code, errs, out)
			}
		})
	}
}
