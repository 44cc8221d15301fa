package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// The command tree. spf13/cobra gives every subcommand its --help, the
// usage printed on a bad command line, and shell completion. Each
// subcommand still parses its own arguments with the Go flag set its
// xxxFlags function builds; cobra is shown the same flag set
// (AddGoFlagSet) for help and completion, and checkArgs checks a command
// line before the subcommand runs, so a mistake gets that subcommand's
// usage and exit code 2 instead of a half-started command.

// subcommand is one runbookbot subcommand.
type subcommand struct {
	use     string // name and positional arguments, as in the usage line
	aliases []string
	short   string
	long    string
	// environment lists the variables the subcommand reads that no flag
	// stands for (flags name their own beside them).
	environment []string
	// flags builds a fresh flag set; nil: no flags.
	flags func() *flag.FlagSet
	// args checks the positional arguments (after flags are taken out);
	// nil: none are allowed.
	args     func(pos []string) error
	complete completer
	run      func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int
}

// Variables read by every subcommand that loads runbooks with their
// integrations.
var integrationsEnv = []string{
	"KUBECONFIG                   kubeconfig for Kubernetes steps and drift (else the in-cluster config)",
	"RUNBOOKBOT_ALLOW_NAMESPACES  namespaces Kubernetes steps may act in, comma-separated",
	"RUNBOOKBOT_DENY_NAMESPACES   namespaces Kubernetes steps may not act in, comma-separated",
	"PROMETHEUS_URL               Prometheus for metrics.* values, with the default queries",
	"RUNBOOKBOT_METRICS_CONFIG    query file for metrics.* values (e.g. deploy/prometheus-queries.yaml)",
}

// Variables read by the runtime of a running bot (serve and dev).
var botEnv = []string{
	"RUNBOOKBOT_SECRET_<NAME>     value of secrets.<name> when runbooks/secrets.yaml does not provide it",
	"RUNBOOKBOT_NOTIFY_CONFIG     notification channels config (PagerDuty, Opsgenie, webhooks, email)",
	"RUNBOOKBOT_INCIDENT_CONFIG   incident timeline config: every execution's steps written to its incident",
	"RUNBOOKBOT_DRIFT_INTERVAL    how often drift is checked while running (default 10m; 0 turns it off)",
	"RUNBOOKBOT_DRIFT_CHANNEL     where drift findings are posted (default: no post, metrics only)",
}

func subcommands() []subcommand {
	return []subcommand{
		{
			use:   "dev",
			short: "Run the bot against built-in Slack and Discord playgrounds (nothing to set up)",
			long: `dev starts the bot with a local Slack emulator (and a Discord one), the
embedded store, the HTTP API and a local PagerDuty, seeded with demo users
and channels, and prints where to open them.`,
			environment: append(append([]string{}, botEnv...), integrationsEnv...),
			flags:       func() *flag.FlagSet { fs, _ := devFlags(new(botOptions)); return fs },
			complete:    flagsOnly,
			run: func(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
				return cmdDev(ctx, args, stdout, stderr)
			},
		},
		{
			use:   "serve",
			short: "Run the bot on Slack (Socket Mode or HTTP) and/or Discord",
			long: `serve connects to Slack with Socket Mode (SLACK_BOT_TOKEN and
SLACK_APP_TOKEN) and/or to Discord (DISCORD_BOT_TOKEN), runs what chat,
alerts, schedules and the API start, and with --listen serves /metrics,
/healthz, /readyz, /api/v1 and the Alertmanager receiver (POST /alertmanager).
Who may do what comes from runbooks/rbac.yaml; --no-rbac turns it off.
With --slack-mode http (SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET, no app
token) Slack posts events, /runbook and clicks to POST /slack/events on
--listen instead (deploy/slack-app-manifest-http.yaml).`,
			environment: append([]string{
				"SLACK_BOT_TOKEN              Slack bot token (xoxb-...); with SLACK_APP_TOKEN, Slack is on",
				"SLACK_APP_TOKEN              Slack app-level token for Socket Mode (xapp-...)",
				"SLACK_SIGNING_SECRET         Slack app's signing secret; with --slack-mode http, every request to /slack/events must carry its signature",
				"DISCORD_BOT_TOKEN            Discord bot token; set, Discord is on",
			}, append(append([]string{}, botEnv...), integrationsEnv...)...),
			flags:    func() *flag.FlagSet { fs, _ := serveFlags(new(botOptions)); return fs },
			complete: flagsOnly,
			run: func(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
				return cmdServe(ctx, args, stdout, stderr)
			},
		},
		{
			use:   "lint [PATH...]",
			short: "Check runbooks, mappings, RBAC and secrets config; exit 1 on any problem",
			long: `lint loads every .yaml/.yml file under the given files and directories
(default: $RUNBOOKBOT_RUNBOOKS, else ./runbooks) as the bot would, and prints
each problem as file:line:col.`,
			environment: append([]string{"RUNBOOKBOT_RUNBOOKS          what to check when no PATH is given (default runbooks)"}, integrationsEnv...),
			flags:       func() *flag.FlagSet { fs, _ := lintFlags(); return fs },
			args:        func([]string) error { return nil },
			complete:    files,
			run: func(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
				return cmdLint(ctx, args, stdout, stderr)
			},
		},
		{
			use:         "dry-run NAME|FILE [key=value...]",
			aliases:     []string{"dryrun", "plan"},
			short:       "Show what a runbook would do with these parameters, touching nothing",
			environment: integrationsEnv,
			flags:       func() *flag.FlagSet { fs, _ := dryRunFlags(new(runbookArgs)); return fs },
			args:        oneRunbook,
			complete:    runbookAndParams,
			run: func(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
				return cmdDryRun(ctx, args, stdout, stderr)
			},
		},
		{
			use:   "run NAME|FILE [key=value...]",
			short: "Run a runbook from the terminal, asking at each approval gate",
			long: `run executes a runbook here, printing each step; approval gates ask on
the terminal (end of input answers no) unless --yes. The execution is kept
in the store, as the bot's are.`,
			environment: append([]string{
				"RUNBOOKBOT_SECRET_<NAME>     value of secrets.<name> when runbooks/secrets.yaml does not provide it",
				"RUNBOOKBOT_AUDIT_REDIS       also mirror the execution's audit events to this Redis",
			}, integrationsEnv...),
			flags:    func() *flag.FlagSet { fs, _, _ := runFlags(new(runbookArgs)); return fs },
			args:     oneRunbook,
			complete: runbookAndParams,
			run:      cmdRun,
		},
		{
			use:   "history [RUNBOOK]",
			short: "List past executions, newest first",
			flags: func() *flag.FlagSet {
				fs, _, _, _ := historyFlags(new(common), new(engine.HistoryQuery))
				return fs
			},
			args:     atMost(1, "history takes at most one RUNBOOK"),
			complete: historyCompleter,
			run: func(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
				return cmdHistory(ctx, args, stdout, stderr)
			},
		},
		{
			use:   "drift",
			short: "Check once that the targets runbooks name still exist; exit 1 when some do not",
			environment: []string{
				"KUBECONFIG                   kubeconfig whose contexts are checked (else the in-cluster config)",
			},
			flags:    func() *flag.FlagSet { fs, _, _ := driftFlags(new(common)); return fs },
			complete: flagsOnly,
			run: func(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
				return cmdDrift(ctx, args, stdout, stderr)
			},
		},
		{
			use:   "schedules [pause|resume NAME]",
			short: "List scheduled runbooks with their next run, or pause and resume one",
			long: `schedules lists the runbooks with a schedule trigger and when each runs
next. "pause NAME" and "resume NAME" hold and release one for every replica
sharing the store.`,
			environment: []string{"RUNBOOKBOT_RUNS_CHANNEL      where scheduled runs post their thread (default #ops)"},
			flags:       func() *flag.FlagSet { fs, _, _ := schedulesFlags(new(common)); return fs },
			args:        schedulesArgs,
			complete:    schedulesCompleter,
			run: func(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
				return cmdSchedules(ctx, args, stdout, stderr)
			},
		},
		{
			use:   "schema",
			short: "Print the JSON Schema of the runbook format, for editors",
			long: `schema prints the JSON Schema (draft 2020-12) of the runbook format, the
same as deploy/schema/runbook.schema.json; see deploy/schema/README.md for
VS Code and Neovim.`,
			complete: nothingMore,
			run: func(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
				return cmdSchema(args, stdout, stderr)
			},
		},
		{
			use:      "version",
			short:    "Print the version and the VCS revision it was built from",
			complete: nothingMore,
			run: func(_ context.Context, _ []string, _ io.Reader, stdout, _ io.Writer) int {
				return cmdVersion(stdout)
			},
		},
	}
}

const rootLong = `runbookbot runs operational runbooks from chat (serve, dev) and from the
terminal (lint, dry-run, run, history, drift, schedules).

Every flag that has an environment variable names it beside it, in
[$BRACKETS]; the flag wins over the variable.

Exit codes: 0 success, 1 failure, 2 usage (bad command line, unknown runbook,
bad parameter), 3 partial, 4 rolled back, 5 aborted.`

// usageTemplate is cobra's, with the subcommand's environment after its
// flags.
const usageTemplate = `Usage:{{if .Runnable}}
  {{.UseLine}}{{end}}{{if .HasAvailableSubCommands}}
  {{.CommandPath}} [command]{{end}}{{if gt (len .Aliases) 0}}

Aliases:
  {{.NameAndAliases}}{{end}}{{if .HasExample}}

Examples:
{{.Example}}{{end}}{{if .HasAvailableSubCommands}}

Available Commands:{{range .Commands}}{{if (or .IsAvailableCommand (eq .Name "help"))}}
  {{rpad .Name .NamePadding }} {{.Short}}{{end}}{{end}}{{end}}{{if .HasAvailableLocalFlags}}

Flags:
{{.LocalFlags.FlagUsages | trimTrailingWhitespaces}}{{end}}{{with index .Annotations "environment"}}

Environment:
{{.}}{{end}}{{if .HasAvailableSubCommands}}

Use "{{.CommandPath}} [command] --help" for more information about a command.{{end}}
`

// usageError is a bad command line: the CLI prints it, then the
// subcommand's usage, and exits 2.
type usageError struct{ error }

// newCLI builds the command tree; the exit code of the subcommand that
// ran is left in *code.
func newCLI(stdin io.Reader, stdout, stderr io.Writer, code *int) *cobra.Command {
	root := &cobra.Command{
		Use:           "runbookbot",
		Short:         "Run operational runbooks from chat and from the terminal",
		Long:          rootLong,
		Version:       readVersion().String(),
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetUsageTemplate(usageTemplate)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	for _, sc := range subcommands() {
		root.AddCommand(sc.command(stdin, stdout, stderr, code))
	}
	return root
}

// command is sc as a cobra command. Cobra parses no flags of its own
// here: the subcommand does (DisableFlagParsing), after checkArgs.
func (sc subcommand) command(stdin io.Reader, stdout, stderr io.Writer, code *int) *cobra.Command {
	c := &cobra.Command{
		Use:                sc.use,
		Aliases:            sc.aliases,
		Short:              sc.short,
		Long:               sc.long,
		DisableFlagParsing: true,
		RunE: func(c *cobra.Command, args []string) error {
			if err := sc.checkArgs(args); err != nil {
				if errors.Is(err, flag.ErrHelp) {
					return c.Help()
				}
				return usageError{err}
			}
			*code = sc.run(c.Context(), args, stdin, stdout, stderr)
			return nil
		},
	}
	if sc.long == "" {
		c.Long = sc.short + "."
	}
	if len(sc.environment) > 0 {
		c.Annotations = map[string]string{"environment": "  " + strings.Join(sc.environment, "\n  ")}
	}
	sc.flagSet().VisitAll(func(f *flag.Flag) { c.Flags().AddFlag(shownFlag(f)) })
	if sc.complete != nil {
		c.ValidArgsFunction = func(_ *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
			return sc.complete(sc.flagSet(), args, toComplete)
		}
	}
	return c
}

// flagSet is a fresh flag set of sc (an empty one when it has no flags).
// Defaults are read from the environment as it is now.
func (sc subcommand) flagSet() *flag.FlagSet {
	if sc.flags == nil {
		return flag.NewFlagSet(strings.Fields(sc.use)[0], flag.ContinueOnError)
	}
	return sc.flags()
}

// checkArgs parses args as the subcommand will and checks its positional
// arguments. -h and --help give flag.ErrHelp.
func (sc subcommand) checkArgs(args []string) error {
	pos, err := parseArgs(sc.flagSet(), args)
	if err != nil {
		return flagError(err)
	}
	if sc.args == nil {
		if len(pos) > 0 {
			return fmt.Errorf("unexpected argument %q", pos[0])
		}
		return nil
	}
	return sc.args(pos)
}

// flagError words the flag package's errors as the rest of the CLI does:
// flags with two dashes, "unknown flag".
func flagError(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return err
	}
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		return fmt.Errorf("unknown flag: --%s", strings.TrimLeft(name, "-"))
	}
	for _, before := range []string{"for flag -", "for -", "argument: -"} {
		i := strings.Index(msg, before)
		if i < 0 {
			continue
		}
		name, _, _ := strings.Cut(msg[i+len(before):], ":")
		if len(name) > 1 && !strings.HasPrefix(name, "-") {
			return errors.New(msg[:i+len(before)] + msg[i+len(before)-1:])
		}
		return err
	}
	return err
}

// oneRunbook checks dry-run's and run's arguments: one NAME|FILE and
// key=value parameters.
func oneRunbook(pos []string) error {
	rest, err := splitParams(pos, paramFlag{})
	switch {
	case err != nil:
		return err
	case len(rest) == 0:
		return errors.New("which runbook? give its NAME or FILE")
	case len(rest) > 1:
		return fmt.Errorf("one runbook at a time, got %s (parameters are key=value)", strings.Join(rest, " "))
	}
	return nil
}

func atMost(n int, msg string) func([]string) error {
	return func(pos []string) error {
		if len(pos) > n {
			return fmt.Errorf("%s, got %s", msg, strings.Join(pos, " "))
		}
		return nil
	}
}

func schedulesArgs(pos []string) error {
	switch {
	case len(pos) == 0:
		return nil
	case pos[0] != "pause" && pos[0] != "resume":
		return fmt.Errorf("unknown schedules verb %q: want pause or resume", pos[0])
	case len(pos) != 2:
		return fmt.Errorf("%s takes one runbook NAME", pos[0])
	}
	return nil
}

// shownFlag is Go flag f as cobra shows it in help and completion: its
// placeholder (the `NAME` quoted in its usage) as its type, its usage
// without the quotes, and a URL default without its password.
func shownFlag(f *flag.Flag) *pflag.Flag {
	pf := pflag.PFlagFromGoFlag(f)
	placeholder, usage := flag.UnquoteUsage(f)
	if isBoolFlag(f) {
		placeholder = "bool" // pflag shows no placeholder for "bool"
	}
	pf.Value = shownValue{pf.Value, placeholder}
	pf.Usage = usage
	pf.DefValue = redact(pf.DefValue)
	return pf
}

// shownValue is a flag value whose Type is the placeholder --help shows.
type shownValue struct {
	pflag.Value
	placeholder string
}

func (v shownValue) Type() string { return v.placeholder }

// redact hides the password of a URL default (REDIS_URL may carry one)
// from --help.
func redact(def string) string {
	if u, err := url.Parse(def); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			return u.Redacted()
		}
	}
	return def
}

// printUsageError prints err on its own line, then cmd's usage.
func printUsageError(w io.Writer, cmd *cobra.Command, err error) {
	fmt.Fprintf(w, "%s: %s\n\n%s", cmd.CommandPath(), strings.TrimRight(err.Error(), "\n"), cmd.UsageString())
}
