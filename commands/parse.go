// Package commands is the chat-neutral half of the bot: the /runbook
// grammar, authorization from the RBAC config (including four-eyes through
// the engine), and alert-to-runbook mapping. Platforms turn their events
// into these types; bot renders the replies.
package commands

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
)

// Verb is what a command asks for.
type Verb string

// The verbs of /runbook.
const (
	VerbRun      Verb = "run"
	VerbDryRun   Verb = "dry-run"
	VerbList     Verb = "list"
	VerbDescribe Verb = "describe"
	VerbStatus   Verb = "status"
	VerbCancel   Verb = "cancel"
	VerbHistory  Verb = "history"
	VerbHelp     Verb = "help"
	VerbApprove  Verb = "approve"
	VerbReject   Verb = "reject"
	VerbBypass   Verb = "bypass"
	// VerbSchedules lists the scheduled runbooks, or pauses or resumes
	// one (Command.Action).
	VerbSchedules Verb = "schedules"
)

// Actions of `schedules`: "" lists.
const (
	ActionPause  = "pause"
	ActionResume = "resume"
)

// Command is a parsed /runbook command line.
type Command struct {
	Verb   Verb
	Target string            // runbook name, execution id or approval id
	Params map[string]string // k=v pairs
	Flags  map[string]string // --flag value
	Text   string            // free text (reject comment, bypass justification)
	// Choice is the value of a custom approve or reject button
	// (--choice=VALUE), "" for the plain verb.
	Choice string
	// Action is what `schedules` does to Target: ActionPause,
	// ActionResume, or "" to list every schedule.
	Action string
}

// UsageError is a command line that does not parse; Usage is shown back.
type UsageError struct {
	Problem string
	Usage   string
}

func (e *UsageError) Error() string { return e.Problem }

// Usage is the help text for /runbook.
const Usage = "*Usage:* `/runbook <command>`\n" +
	"• `run NAME key=value ...` start a runbook (quote values with spaces: `message=\"two words\"`)\n" +
	"• `dry-run NAME key=value ...` show what it would do\n" +
	"• `list` the runbooks · `describe NAME` its parameters and steps\n" +
	"• `status [ID]` · `cancel ID`\n" +
	"• `approve ID` · `reject ID reason ...` · `bypass ID justification ...`\n" +
	"• `history [RUNBOOK] [--outcome success|failure|partial|rollback|aborted] [--since 24h] [--limit 10]`\n" +
	"• `schedules` the scheduled runbooks and their next run · `schedules pause|resume NAME`\n" +
	"• `help`"

var verbUsage = map[Verb]string{
	VerbRun:       "`/runbook run NAME key=value ...`",
	VerbDryRun:    "`/runbook dry-run NAME key=value ...`",
	VerbDescribe:  "`/runbook describe NAME`",
	VerbStatus:    "`/runbook status [EXECUTION_ID]`",
	VerbCancel:    "`/runbook cancel EXECUTION_ID`",
	VerbHistory:   "`/runbook history [RUNBOOK] [--outcome O] [--since 24h] [--limit N]`",
	VerbApprove:   "`/runbook approve APPROVAL_ID`",
	VerbReject:    "`/runbook reject APPROVAL_ID reason ...`",
	VerbBypass:    "`/runbook bypass APPROVAL_ID justification ...`",
	VerbSchedules: "`/runbook schedules` · `/runbook schedules pause|resume NAME`",
}

// choiceFlag carries a custom button's value on an approve or reject line.
const choiceFlag = "--choice="

var historyFlags = map[string]bool{"outcome": true, "since": true, "limit": true, "trigger": true, "requester": true}

// Parse parses the text after /runbook.
func Parse(text string) (Command, error) {
	words, err := split(text)
	if err != nil {
		return Command{}, &UsageError{Problem: err.Error(), Usage: Usage}
	}
	if len(words) == 0 {
		return Command{Verb: VerbHelp}, nil
	}
	c := Command{Verb: Verb(strings.ToLower(words[0])), Params: map[string]string{}, Flags: map[string]string{}}
	if c.Verb == "dryrun" || c.Verb == "plan" {
		c.Verb = VerbDryRun
	}
	args := words[1:]
	switch c.Verb {
	case VerbHelp, VerbList:
		if len(args) > 0 && c.Verb == VerbList {
			return c, &UsageError{Problem: "`list` takes no arguments", Usage: "`/runbook list`"}
		}
		return c, nil
	case VerbRun, VerbDryRun:
		if len(args) == 0 || strings.Contains(args[0], "=") {
			return c, &UsageError{Problem: "which runbook? Name it before the parameters.", Usage: verbUsage[c.Verb]}
		}
		c.Target = args[0]
		for _, a := range args[1:] {
			k, v, ok := strings.Cut(a, "=")
			if !ok || k == "" {
				return c, &UsageError{Problem: fmt.Sprintf("`%s` is not key=value", a), Usage: verbUsage[c.Verb]}
			}
			if _, dup := c.Params[k]; dup {
				return c, &UsageError{Problem: fmt.Sprintf("parameter `%s` given twice", k), Usage: verbUsage[c.Verb]}
			}
			c.Params[k] = v
		}
	case VerbStatus:
		// No argument: the active executions.
		if len(args) > 1 {
			return c, &UsageError{Problem: "`status` takes at most one argument", Usage: verbUsage[c.Verb]}
		}
		if len(args) == 1 {
			c.Target = args[0]
		}
	case VerbApprove, VerbReject:
		kept := args[:0:0]
		for _, a := range args {
			if v, ok := strings.CutPrefix(a, choiceFlag); ok && c.Choice == "" && len(kept) > 0 {
				if v == "" {
					return c, &UsageError{Problem: "`--choice=` needs a value", Usage: verbUsage[c.Verb]}
				}
				c.Choice = v
				continue
			}
			kept = append(kept, a)
		}
		if len(kept) == 0 {
			return c, &UsageError{Problem: "which approval?", Usage: verbUsage[c.Verb]}
		}
		if c.Verb == VerbApprove && len(kept) != 1 {
			return c, &UsageError{Problem: "`approve` takes exactly one approval id", Usage: verbUsage[c.Verb]}
		}
		c.Target, c.Text = kept[0], strings.Join(kept[1:], " ")
	case VerbBypass:
		if len(args) == 0 {
			return c, &UsageError{Problem: "which approval?", Usage: verbUsage[c.Verb]}
		}
		c.Target, c.Text = args[0], strings.Join(args[1:], " ")
	case VerbDescribe, VerbCancel:
		if len(args) != 1 {
			return c, &UsageError{Problem: fmt.Sprintf("`%s` takes exactly one argument", c.Verb), Usage: verbUsage[c.Verb]}
		}
		c.Target = args[0]
	case VerbSchedules:
		switch {
		case len(args) == 0:
		case len(args) == 2 && (strings.EqualFold(args[0], ActionPause) || strings.EqualFold(args[0], ActionResume)):
			c.Action, c.Target = strings.ToLower(args[0]), args[1]
		case len(args) == 1 && (strings.EqualFold(args[0], ActionPause) || strings.EqualFold(args[0], ActionResume)):
			return c, &UsageError{Problem: fmt.Sprintf("which schedule? `%s` takes a runbook name", strings.ToLower(args[0])), Usage: verbUsage[c.Verb]}
		default:
			return c, &UsageError{Problem: fmt.Sprintf("`schedules %s`: use `pause NAME` or `resume NAME`, or nothing to list them", strings.Join(args, " ")), Usage: verbUsage[c.Verb]}
		}
	case VerbHistory:
		for i := 0; i < len(args); i++ {
			a := args[i]
			if strings.HasPrefix(a, "--") {
				name, val, hasVal := strings.Cut(strings.TrimPrefix(a, "--"), "=")
				if !historyFlags[name] {
					return c, &UsageError{Problem: fmt.Sprintf("unknown option `--%s`", name), Usage: verbUsage[c.Verb]}
				}
				if !hasVal {
					if i+1 >= len(args) {
						return c, &UsageError{Problem: fmt.Sprintf("`--%s` needs a value", name), Usage: verbUsage[c.Verb]}
					}
					i++
					val = args[i]
				}
				c.Flags[name] = val
				continue
			}
			if c.Target != "" {
				return c, &UsageError{Problem: fmt.Sprintf("unexpected `%s`", a), Usage: verbUsage[c.Verb]}
			}
			c.Target = a
		}
		if l, ok := c.Flags["limit"]; ok {
			if n, err := strconv.Atoi(l); err != nil || n <= 0 || n > 100 {
				return c, &UsageError{Problem: "`--limit` must be a number from 1 to 100", Usage: verbUsage[c.Verb]}
			}
		}
	default:
		return c, &UsageError{Problem: fmt.Sprintf("unknown command `%s`", words[0]), Usage: Usage}
	}
	return c, nil
}

// split breaks a command line into words, honouring double and single
// quotes (also inside key="two words") and Slack's smart quotes.
func split(s string) ([]string, error) {
	s = strings.NewReplacer("\u201c", `"`, "\u201d", `"`, "\u2018", "'", "\u2019", "'").Replace(s)
	var out []string
	var cur strings.Builder
	inWord := false
	var quote rune
	for _, r := range s {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '"' || r == '\'':
			quote, inWord = r, true
		case unicode.IsSpace(r):
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unclosed %c quote", quote)
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out, nil
}
