package main

import (
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/runbookbot/runbookbot/engine"
)

// Shell completion: cobra's scripts (runbookbot completion bash|zsh|fish)
// call the hidden `runbookbot __complete ARGS... WORD`, which cobra answers
// with subcommand and flag names and, through a subcommand's completer,
// with runbook names, their parameters as name= and flag values.

// completer completes the word toComplete for a subcommand whose flags
// are fs, after args: the command line typed so far, flags included.
type completer func(fs *flag.FlagSet, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective)

const noFiles = cobra.ShellCompDirectiveNoFileComp

// typed is a command line as typed so far, read leniently.
type typed struct {
	values  map[string]string // the last value given to each flag
	params  []string          // every --param value
	pos     []string          // positional arguments
	pending *flag.Flag        // the flag whose value is being typed
}

func readTyped(fs *flag.FlagSet, args []string) typed {
	t := typed{values: map[string]string{}}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			t.pos = append(t.pos, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			t.pos = append(t.pos, a)
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f := fs.Lookup(name)
		if f == nil {
			continue
		}
		if !hasVal && !isBoolFlag(f) {
			if i+1 == len(args) {
				t.pending = f
				break
			}
			i++
			val = args[i]
		}
		t.values[f.Name] = val
		if f.Name == "param" {
			t.params = append(t.params, val)
		}
	}
	return t
}

func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// runbooksDir is where the runbooks are: --runbooks, else
// RUNBOOKBOT_RUNBOOKS, else ./runbooks.
func (t typed) runbooksDir() string {
	if d := t.values["runbooks"]; d != "" {
		return d
	}
	return envOr("RUNBOOKBOT_RUNBOOKS", "runbooks")
}

// target is dry-run's and run's runbook: the first positional argument
// that is not a key=value parameter.
func (t typed) target() string {
	rest, _ := splitParams(t.pos, paramFlag{})
	if len(rest) == 0 {
		return ""
	}
	return rest[0]
}

// given are the parameter names already on the command line.
func (t typed) given() map[string]bool {
	p := paramFlag{}
	for _, s := range t.params {
		_ = p.Set(s)
	}
	_, _ = splitParams(t.pos, p)
	seen := map[string]bool{}
	for k := range p {
		seen[k] = true
	}
	return seen
}

// flagValue completes the value of flag f.
func flagValue(f *flag.Flag, t typed, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	switch f.Name {
	case "runbooks", "data-dir":
		return nil, cobra.ShellCompDirectiveFilterDirs
	case "api-tokens":
		return nil, cobra.ShellCompDirectiveDefault
	case "log-format":
		return withPrefix(toComplete, "text", "json"), noFiles
	case "outcome":
		return withPrefix(toComplete, "success", "failure", "partial", "rollback", "aborted"), noFiles
	case "trigger":
		return withPrefix(toComplete, "manual", "alert", "schedule", "api"), noFiles
	case "alert-platform":
		return withPrefix(toComplete, "slack", "discord"), noFiles
	case "slack-mode":
		return withPrefix(toComplete, "socket", "http"), noFiles
	case "runbook":
		return runbookNames(t.runbooksDir(), toComplete, nil)
	case "param":
		return params(t, toComplete)
	}
	return nil, noFiles
}

func withPrefix(prefix string, words ...string) []cobra.Completion {
	var out []cobra.Completion
	for _, w := range words {
		if strings.HasPrefix(w, prefix) {
			out = append(out, w)
		}
	}
	return out
}

// flagsOnly completes flag values of a subcommand without arguments.
func flagsOnly(fs *flag.FlagSet, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if t := readTyped(fs, args); t.pending != nil {
		return flagValue(t.pending, t, toComplete)
	}
	return nil, noFiles
}

// files completes flag values, and file names for arguments.
func files(fs *flag.FlagSet, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if t := readTyped(fs, args); t.pending != nil {
		return flagValue(t.pending, t, toComplete)
	}
	return nil, cobra.ShellCompDirectiveDefault
}

// nothingMore completes nothing: the subcommand takes no arguments.
func nothingMore(*flag.FlagSet, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
	return nil, noFiles
}

// runbookAndParams completes dry-run's and run's runbook NAME (or a
// FILE), then its parameters as name=, then a parameter's allowed values.
func runbookAndParams(fs *flag.FlagSet, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	t := readTyped(fs, args)
	switch {
	case t.pending != nil:
		return flagValue(t.pending, t, toComplete)
	case strings.HasPrefix(toComplete, "-"):
		return nil, noFiles // cobra completes flag names
	case t.target() == "":
		return runbookNames(t.runbooksDir(), toComplete, nil)
	}
	return params(t, toComplete)
}

func historyCompleter(fs *flag.FlagSet, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	t := readTyped(fs, args)
	switch {
	case t.pending != nil:
		return flagValue(t.pending, t, toComplete)
	case len(t.pos) == 0 && !strings.HasPrefix(toComplete, "-"):
		return runbookNames(t.runbooksDir(), toComplete, nil)
	}
	return nil, noFiles
}

func schedulesCompleter(fs *flag.FlagSet, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	t := readTyped(fs, args)
	switch {
	case t.pending != nil:
		return flagValue(t.pending, t, toComplete)
	case strings.HasPrefix(toComplete, "-"):
		return nil, noFiles
	case len(t.pos) == 0:
		return []cobra.Completion{
			cobra.CompletionWithDesc("pause", "hold a scheduled runbook"),
			cobra.CompletionWithDesc("resume", "release a paused one"),
		}, noFiles
	case len(t.pos) == 1 && (t.pos[0] == "pause" || t.pos[0] == "resume"):
		names, _ := runbookNames(t.runbooksDir(), toComplete, func(s runbookSummary) bool { return s.Trigger.Type == "schedule" })
		return names, noFiles
	}
	return nil, noFiles
}

// runbookNames completes the names of the runbooks in dir that keep
// passes (nil: all). A word that looks like a path, or matches no name,
// is left to the shell's file completion.
func runbookNames(dir, toComplete string, keep func(runbookSummary) bool) ([]cobra.Completion, cobra.ShellCompDirective) {
	if strings.ContainsAny(toComplete, `/\`) || strings.HasPrefix(toComplete, ".") || strings.HasPrefix(toComplete, "~") {
		return nil, cobra.ShellCompDirectiveDefault
	}
	var out []cobra.Completion
	for _, s := range readRunbooks(dir) {
		if strings.HasPrefix(s.Metadata.Name, toComplete) && (keep == nil || keep(s)) {
			out = append(out, cobra.CompletionWithDesc(s.Metadata.Name, s.Metadata.Description))
		}
	}
	if len(out) == 0 {
		return nil, cobra.ShellCompDirectiveDefault
	}
	return out, noFiles
}

// params completes the target runbook's parameters not given yet as
// name=, or, once the word has its =, the values an enum or boolean
// parameter takes.
func params(t typed, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	rb, ok := findRunbook(t.runbooksDir(), t.target())
	if !ok {
		return nil, noFiles
	}
	if name, prefix, ok := strings.Cut(toComplete, "="); ok {
		p := rb.parameter(name)
		if p == nil {
			return nil, noFiles
		}
		var values []string
		for _, v := range p.Enum {
			values = append(values, engine.Stringify(v))
		}
		if p.Type == "boolean" && len(values) == 0 {
			values = []string{"true", "false"}
		}
		var out []cobra.Completion
		for _, v := range withPrefix(prefix, values...) {
			out = append(out, name+"="+v)
		}
		return out, noFiles
	}
	given := t.given()
	var out []cobra.Completion
	for _, p := range rb.Parameters {
		if !given[p.Name] && strings.HasPrefix(p.Name, toComplete) {
			out = append(out, cobra.CompletionWithDesc(p.Name+"=", paramSummary(p)))
		}
	}
	return out, noFiles | cobra.ShellCompDirectiveNoSpace
}

// paramSummary is a parameter's completion description:
// "string, required: Name of the service".
func paramSummary(p engine.Parameter) string {
	s := p.Type
	switch {
	case p.Required:
		s += ", required"
	case p.Default != nil:
		s += ", default " + engine.Stringify(p.Default)
	}
	if p.Description != "" {
		s += ": " + p.Description
	}
	return s
}

// runbookSummary is what completion needs of a runbook file, read
// leniently: a runbook that does not load in this configuration (no
// cluster configured, say) still completes, and run says what is wrong.
type runbookSummary struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name        string `yaml:"name"`
		Description string `yaml:"description"`
	} `yaml:"metadata"`
	Trigger struct {
		Type string `yaml:"type"`
	} `yaml:"trigger"`
	Parameters []engine.Parameter `yaml:"parameters"`
}

func (s runbookSummary) parameter(name string) *engine.Parameter {
	for i := range s.Parameters {
		if s.Parameters[i].Name == name {
			return &s.Parameters[i]
		}
	}
	return nil
}

// readRunbook reads the runbook in file, if it holds one.
func readRunbook(file string) (runbookSummary, bool) {
	var s runbookSummary
	st, err := os.Stat(file)
	if err != nil || st.IsDir() || st.Size() > int64(engine.MaxFileSize) {
		return s, false
	}
	data, err := os.ReadFile(file)
	if err != nil || yaml.Unmarshal(data, &s) != nil {
		return s, false
	}
	return s, s.Metadata.Name != "" && (s.Kind == "" || s.Kind == "Runbook")
}

// readRunbooks reads every runbook under dir, sorted by name, the first
// of each name.
func readRunbooks(dir string) []runbookSummary {
	var out []runbookSummary
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			if s, ok := readRunbook(path); ok {
				out = append(out, s)
			}
		}
		return nil
	})
	slices.SortStableFunc(out, func(a, b runbookSummary) int { return strings.Compare(a.Metadata.Name, b.Metadata.Name) })
	return slices.CompactFunc(out, func(a, b runbookSummary) bool { return a.Metadata.Name == b.Metadata.Name })
}

// findRunbook finds target as run does: a file, else a name in dir.
func findRunbook(dir, target string) (runbookSummary, bool) {
	if s, ok := readRunbook(target); ok {
		return s, true
	}
	for _, s := range readRunbooks(dir) {
		if s.Metadata.Name == target {
			return s, true
		}
	}
	return runbookSummary{}, false
}
