package main

import (
	"errors"
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
	fs.StringVar(&c.runbooks, "runbooks", envOr("RUNBOOKBOT_RUNBOOKS", "runbooks"), "runbooks directory")
	fs.StringVar(&c.dataDir, "data-dir", os.Getenv("RUNBOOKBOT_DATA_DIR"), "embedded store directory")
	fs.StringVar(&c.store, "store", envOr("RUNBOOKBOT_STORE", os.Getenv("REDIS_URL")), "store URL (redis://...); empty for the embedded store")
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// parse parses flags and positional arguments in any order.
func parse(fs *flag.FlagSet, args []string, stderr io.Writer) ([]string, bool) {
	fs.SetOutput(stderr)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, false
			}
			return nil, false
		}
		if fs.NArg() == 0 {
			return pos, true
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
	fs.Var(a.params, "param", "parameter as key=value (repeatable)")
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
