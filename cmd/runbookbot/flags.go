package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// paramFlag collects repeated --param k=v.
type paramFlag map[string]any

func (p paramFlag) String() string { return "" }

func (p paramFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value, got %q", s)
	}
	p[k] = v
	return nil
}

// common are the flags every subcommand that loads runbooks or a store has.
type common struct {
	runbooks string
	dataDir  string
	store    string
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.runbooks, "runbooks", envOr("RUNBOOKBOT_RUNBOOKS", "runbooks"), "`DIR` of runbooks, mappings, RBAC and secrets config"+env("RUNBOOKBOT_RUNBOOKS"))
	fs.StringVar(&c.dataDir, "data-dir", os.Getenv("RUNBOOKBOT_DATA_DIR"), "embedded store `DIR` (default $XDG_DATA_HOME/runbookbot or ~/.local/share/runbookbot)"+env("RUNBOOKBOT_DATA_DIR"))
	fs.StringVar(&c.store, "store", envOr("RUNBOOKBOT_STORE", os.Getenv("REDIS_URL")), "store `URL` (redis://...); empty for the embedded store"+env("RUNBOOKBOT_STORE", "REDIS_URL"))
}

// env names, for a flag's usage, the environment variables its default
// comes from (the first one set wins). --help shows them beside the flag.
func env(names ...string) string {
	return " [$" + strings.Join(names, ", $") + "]"
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// parse parses flags and positional arguments in any order; on a bad
// command line it says why on stderr and returns false. (The CLI checks
// the command line before a command runs: see checkArgs.)
func parse(fs *flag.FlagSet, args []string, stderr io.Writer) ([]string, bool) {
	pos, err := parseArgs(fs, args)
	if err != nil {
		fmt.Fprintf(stderr, "runbookbot %s: %v\n", fs.Name(), err)
		return nil, false
	}
	return pos, true
}

// parseArgs parses flags and positional arguments in any order, printing
// nothing. -h and --help give flag.ErrHelp.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// splitParams takes k=v positional arguments as parameters, like chat.
func splitParams(pos []string, params paramFlag) ([]string, error) {
	var rest []string
	for _, a := range pos {
		if k, _, ok := strings.Cut(a, "="); ok && k != "" && !strings.ContainsAny(k, "/.") {
			if err := params.Set(a); err != nil {
				return nil, err
			}
			continue
		}
		rest = append(rest, a)
	}
	return rest, nil
}

// runbookArgs are the arguments dry-run and run share: common flags,
// --param k=v (or bare k=v) and one runbook NAME|FILE.
type runbookArgs struct {
	common
	params paramFlag
	target string
}

// register adds the shared flags to fs.
func (a *runbookArgs) register(fs *flag.FlagSet) {
	a.common.register(fs)
	a.params = paramFlag{}
	fs.Var(a.params, "param", "runbook parameter as `key=value` (repeatable; a bare key=value argument is one too)")
}

// parse reads args after register; on a bad command line it prints usage
// and returns false.
func (a *runbookArgs) parse(fs *flag.FlagSet, args []string, stderr io.Writer, usage string) bool {
	pos, ok := parse(fs, args, stderr)
	if !ok {
		return false
	}
	pos, err := splitParams(pos, a.params)
	if err != nil || len(pos) != 1 {
		fmt.Fprintln(stderr, "usage: "+usage)
		return false
	}
	a.target = pos[0]
	return true
}
