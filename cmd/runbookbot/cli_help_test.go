package main

import (
	"flag"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// lineWith returns the first line of out containing s, or "".
func lineWith(out, s string) string {
	for l := range strings.SplitSeq(out, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}

var envNote = regexp.MustCompile(`\[\$[^]]+\]`)

// Every subcommand answers --help on stdout with exit 0: its usage line,
// every flag it parses, each beside the environment variable behind its
// default, and the variables no flag stands for.
func TestSubcommandHelpListsFlagsAndEnvironment(t *testing.T) {
	for _, sc := range subcommands() {
		name := strings.Fields(sc.use)[0]
		t.Run(name, func(t *testing.T) {
			code, out, errs := cli(t, "", name, "--help")
			if code != exitOK || errs != "" {
				t.Fatalf("%s --help: exit %d, stderr %q", name, code, errs)
			}
			if !strings.Contains(out, "Usage:\n  runbookbot "+sc.use) {
				t.Errorf("%s --help has no usage line %q:\n%s", name, "runbookbot "+sc.use, out)
			}
			_, flags, _ := strings.Cut(out, "\nFlags:\n")
			sc.flagSet().VisitAll(func(f *flag.Flag) {
				l := lineWith(flags, "--"+f.Name+" ")
				if l == "" {
					t.Errorf("%s --help does not list --%s:\n%s", name, f.Name, out)
					return
				}
				if env := envNote.FindString(f.Usage); env != "" && !strings.Contains(l, env) {
					t.Errorf("%s --help: the --%s line lacks %s: %q", name, f.Name, env, l)
				}
			})
			for _, e := range sc.environment {
				if v := strings.Fields(e)[0]; lineWith(out, "  "+v+" ") == "" {
					t.Errorf("%s --help lacks %s in its environment:\n%s", name, v, out)
				}
			}
			for _, alt := range [][]string{{name, "-h"}, {"help", name}} {
				if code, altOut, _ := cli(t, "", alt...); code != exitOK || altOut != out {
					t.Errorf("runbookbot %s: exit %d, and not the same as %s --help:\n%s", strings.Join(alt, " "), code, name, altOut)
				}
			}
		})
	}
}

// What a user looks for in each help, by name.
func TestHelpNamesFlagsWithTheirVariables(t *testing.T) {
	for _, tc := range []struct {
		name      string
		args      []string
		flag      string // the line holding this...
		wantOnIt  []string
		wantBelow string // ...and a line of the environment section
	}{
		{"serve listen", []string{"serve", "--help"}, "--listen ADDR", []string{"[$RUNBOOKBOT_LISTEN]"}, "  SLACK_BOT_TOKEN "},
		{"serve store", []string{"serve", "--help"}, "--store URL", []string{"[$RUNBOOKBOT_STORE, $REDIS_URL]"}, "  DISCORD_BOT_TOKEN "},
		{"serve log format", []string{"serve", "--help"}, "--log-format FORMAT", []string{"[$RUNBOOKBOT_LOG_FORMAT]", "(default text)"}, "  RUNBOOKBOT_INCIDENT_CONFIG "},
		{"dev address", []string{"dev", "--help"}, "--addr ADDR", []string{"(default 127.0.0.1:3000)"}, "  RUNBOOKBOT_NOTIFY_CONFIG "},
		{"run requester", []string{"run", "--help"}, "--as USER", []string{"[$USER]"}, "  RUNBOOKBOT_SECRET_<NAME> "},
		{"dry-run runbooks", []string{"dry-run", "--help"}, "--runbooks DIR", []string{"[$RUNBOOKBOT_RUNBOOKS]"}, "  KUBECONFIG "},
		{"lint default path", []string{"lint", "--help"}, "--json", nil, "  RUNBOOKBOT_RUNBOOKS "},
		{"history limit", []string{"history", "--help"}, "--limit int", []string{"(default 20)"}, ""},
		{"drift verbose", []string{"drift", "--help"}, "-v, --v", nil, "  KUBECONFIG "},
		{"schedules as", []string{"schedules", "--help"}, "--as USER", []string{"[$USER]"}, "  RUNBOOKBOT_RUNS_CHANNEL "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, out, _ := cli(t, "", tc.args...)
			_, flags, _ := strings.Cut(out, "\nFlags:\n")
			l := lineWith(flags, tc.flag)
			if l == "" {
				t.Fatalf("no line with %q in:\n%s", tc.flag, out)
			}
			for _, w := range tc.wantOnIt {
				if !strings.Contains(l, w) {
					t.Errorf("%q lacks %q", l, w)
				}
			}
			if tc.wantBelow != "" {
				_, env, ok := strings.Cut(out, "\nEnvironment:\n")
				if !ok || !strings.Contains(env, tc.wantBelow) {
					t.Errorf("no %q under Environment:\n%s", tc.wantBelow, out)
				}
			}
		})
	}
}

// The root help lists every subcommand; serve has no --rbac (the old
// usage advertised one), dev has.
func TestRootHelp(t *testing.T) {
	code, out, _ := cli(t, "", "--help")
	if code != exitOK {
		t.Fatalf("--help: exit %d", code)
	}
	for _, sc := range subcommands() {
		if l := lineWith(out, "  "+strings.Fields(sc.use)[0]+" "); !strings.Contains(l, sc.short) {
			t.Errorf("--help does not list %q with %q:\n%s", sc.use, sc.short, out)
		}
	}
	for _, want := range []string{"completion", "Exit codes: 0 success, 1 failure, 2 usage"} {
		if !strings.Contains(out, want) {
			t.Errorf("--help lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "--rbac") {
		t.Errorf("--help mentions --rbac:\n%s", out)
	}
	if _, serve, _ := cli(t, "", "serve", "--help"); strings.Contains(serve, "--rbac ") {
		t.Errorf("serve --help has a --rbac flag:\n%s", serve)
	}
	if _, dev, _ := cli(t, "", "dev", "--help"); !strings.Contains(dev, "--rbac ") {
		t.Errorf("dev --help lacks its --rbac:\n%s", dev)
	}
	if code, _, errs := cli(t, ""); code != exitUsage || !strings.Contains(errs, "Available Commands:") {
		t.Errorf("no arguments: exit %d, stderr:\n%s", code, errs)
	}
	_, version, _ := cli(t, "", "version")
	if code, out, _ := cli(t, "", "--version"); code != exitOK || out != version || !strings.HasPrefix(out, "runbookbot ") {
		t.Errorf("--version: exit %d %q, version says %q", code, out, version)
	}
}

// A bad command line prints the error on its own line, a blank line, then
// the usage of the subcommand it was for; it exits 2 and runs nothing.
func TestBadCommandLineShowsThatUsage(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		usage   string // the usage line printed
		wantErr string // the first line
	}{
		{"unknown flag", []string{"lint", "--bogus"}, "runbookbot lint [PATH...]", "runbookbot lint: unknown flag: --bogus"},
		{"unknown flag among arguments", []string{"serve", "--runbooks", "x", "--rbac", "rbac.yaml"}, "runbookbot serve", "runbookbot serve: unknown flag: --rbac"},
		{"flag without its value", []string{"run", "example-echo", "--runbooks"}, "runbookbot run NAME|FILE", "runbookbot run: flag needs an argument: --runbooks"},
		{"bad flag value", []string{"history", "--limit", "many"}, "runbookbot history [RUNBOOK]", `runbookbot history: invalid value "many" for flag --limit: parse error`},
		{"bad log format", []string{"dev", "--log-format", "yaml"}, "runbookbot dev", `runbookbot dev: invalid value "yaml" for flag --log-format: want text or json, got "yaml"`},
		{"no runbook", []string{"dry-run", "service=x"}, "runbookbot dry-run NAME|FILE", "runbookbot dry-run: which runbook? give its NAME or FILE"},
		{"two runbooks", []string{"run", "a", "b"}, "runbookbot run NAME|FILE", "runbookbot run: one runbook at a time, got a b (parameters are key=value)"},
		{"bad parameter flag", []string{"run", "a", "--param", "novalue"}, "runbookbot run NAME|FILE", `runbookbot run: invalid value "novalue" for flag --param: want key=value, got "novalue"`},
		{"two history runbooks", []string{"history", "a", "b"}, "runbookbot history [RUNBOOK]", "runbookbot history: history takes at most one RUNBOOK, got a b"},
		{"unknown schedules verb", []string{"schedules", "stop", "x"}, "runbookbot schedules", `runbookbot schedules: unknown schedules verb "stop": want pause or resume`},
		{"pause without a name", []string{"schedules", "pause"}, "runbookbot schedules", "runbookbot schedules: pause takes one runbook NAME"},
		{"argument to schema", []string{"schema", "out.json"}, "runbookbot schema", `runbookbot schema: unexpected argument "out.json"`},
		{"argument to drift", []string{"drift", "prod"}, "runbookbot drift", `runbookbot drift: unexpected argument "prod"`},
		{"unknown command", []string{"frobnicate"}, "runbookbot [command]", `runbookbot: unknown command "frobnicate" for "runbookbot"`},
		{"unknown flag before the command", []string{"--bogus"}, "runbookbot [command]", "runbookbot: unknown flag: --bogus"},
		{"a flag lint lacks, before the command", []string{"--runbooks", "x", "lint", "--bogus"}, "runbookbot lint [PATH...]", "runbookbot lint: unknown flag: --runbooks"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := cli(t, "", tc.args...)
			if code != exitUsage || out != "" {
				t.Errorf("exit %d (want %d), stdout %q", code, exitUsage, out)
			}
			lines := strings.Split(errs, "\n")
			if len(lines) < 4 || lines[0] != tc.wantErr || lines[1] != "" || lines[2] != "Usage:" || !strings.HasPrefix(lines[3], "  "+tc.usage) {
				t.Fatalf("stderr, want %q, a blank line, then the usage %q:\n%s", tc.wantErr, tc.usage, errs)
			}
			if root := tc.usage == "runbookbot [command]"; root != strings.Contains(errs, "Available Commands:") {
				t.Errorf("the usage printed is not only %q's:\n%s", tc.usage, errs)
			}
		})
	}
	if _, _, errs := cli(t, "", "serv"); !strings.Contains(errs, "Did you mean this?\n") || !strings.Contains(errs, "\tserve\n") {
		t.Errorf("a misspelt command suggests nothing:\n%s", errs)
	}
}

// Defaults read from the environment are shown, but not a password in a
// store URL.
func TestHelpHidesStorePassword(t *testing.T) {
	t.Setenv("RUNBOOKBOT_STORE", "")
	t.Setenv("REDIS_URL", "redis://:hunter2@redis.internal:6379/0")
	_, out, _ := cli(t, "", "history", "--help")
	if strings.Contains(out, "hunter2") || !strings.Contains(lineWith(out, "--store URL"), "redis://:xxxxx@redis.internal:6379/0") {
		t.Errorf("history --help:\n%s", out)
	}
}

// Every environment variable the binary reads by name is documented in
// some --help: beside its flag or under a subcommand's Environment.
func TestEveryEnvironmentVariableIsDocumented(t *testing.T) {
	fset := token.NewFileSet()
	sources, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var files []*ast.File
	for _, src := range sources {
		if strings.HasSuffix(src, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, src, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	readers := map[string]bool{"Getenv": true, "LookupEnv": true, "envOr": true, "envBool": true, "envDuration": true}
	vars := map[string]string{}
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			var fn string
			switch f := call.Fun.(type) {
			case *ast.Ident:
				fn = f.Name
			case *ast.SelectorExpr:
				fn = f.Sel.Name
			}
			if lit, ok := call.Args[0].(*ast.BasicLit); ok && readers[fn] && lit.Kind == token.STRING {
				name, _ := strconv.Unquote(lit.Value)
				vars[name] = fset.Position(call.Pos()).String()
			}
			return true
		})
	}
	if len(vars) < 20 {
		t.Fatalf("found only %d variables read: %v", len(vars), vars)
	}
	_, help, _ := cli(t, "", "--help")
	for _, sc := range subcommands() {
		_, out, _ := cli(t, "", strings.Fields(sc.use)[0], "--help")
		help += out
	}
	for name, where := range vars {
		if !regexp.MustCompile(`\b` + name + `\b`).MatchString(help) {
			t.Errorf("%s (read at %s) is in no --help", name, where)
		}
	}
}
