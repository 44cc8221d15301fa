package slack

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/runbookbot/runbookbot/bot"
	"github.com/slack-go/slack"
)

// Block Kit limits the renderer keeps to.
const (
	maxBlocks      = 50
	maxSectionText = 3000
	maxFieldText   = 2000
	maxFields      = 10
	maxHeaderText  = 150
	maxButtonLabel = 75
	maxButtonValue = 2000
	maxText        = 3000
)

// emoji are the shortcodes statuses are shown with.
var emoji = map[bot.Status]string{
	bot.StatusOK: ":white_check_mark:", bot.StatusFailed: ":x:", bot.StatusRunning: ":hourglass_flowing_sand:",
	bot.StatusWaiting: ":hourglass:", bot.StatusPending: ":white_circle:", bot.StatusSkipped: ":fast_forward:",
	bot.StatusWarning: ":warning:", bot.StatusRollback: ":leftwards_arrow_with_hook:", bot.StatusAborted: ":no_entry_sign:",
	bot.StatusPartial: ":large_orange_diamond:", bot.StatusRefused: ":no_entry:", bot.StatusInfo: ":information_source:",
	bot.StatusAlert: ":rotating_light:", bot.StatusResolved: ":white_check_mark:", bot.StatusStop: ":octagonal_sign:",
	bot.StatusTimeout: ":alarm_clock:", bot.StatusEscalated: ":rotating_light:", bot.StatusLock: ":lock:",
	bot.StatusSearch: ":mag:", bot.StatusQuestion: ":question:", bot.StatusRunbook: ":gear:",
	bot.StatusVote: ":ballot_box_with_check:", bot.StatusQueued: ":hourglass:",
}

// userID matches Slack user ids; other actors ("alert:X", "system") are
// shown as text.
var userID = regexp.MustCompile(`^[UW][A-Z0-9]{2,}$`)

var escaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// Mrkdwn renders rich text as Slack mrkdwn.
func Mrkdwn(r bot.Rich) string {
	var b strings.Builder
	for _, s := range r {
		switch s.Kind {
		case bot.SpanText:
			b.WriteString(escaper.Replace(s.Text))
		case bot.SpanBold:
			if s.Text != "" {
				b.WriteString("*" + escaper.Replace(s.Text) + "*")
			}
		case bot.SpanItalic:
			if s.Text != "" {
				b.WriteString("_" + escaper.Replace(s.Text) + "_")
			}
		case bot.SpanCode:
			b.WriteString("`" + escaper.Replace(strings.ReplaceAll(s.Text, "`", "'")) + "`")
		case bot.SpanPre:
			b.WriteString("```" + escaper.Replace(strings.ReplaceAll(s.Text, "```", "'''")) + "```")
		case bot.SpanMention:
			b.WriteString(mention(s.User))
		case bot.SpanGroup:
			b.WriteString(groupMention(s))
		case bot.SpanLink:
			text := strings.NewReplacer("|", "¦", ">", "›", "<", "‹").Replace(s.Text)
			b.WriteString("<" + s.URL + "|" + text + ">")
		case bot.SpanStatus:
			b.WriteString(emoji[s.Status])
		case bot.SpanTime:
			// Slack shows it in the reader's time zone, with a date when
			// it is not today.
			fallback := s.Time.UTC().Format("2006-01-02 15:04 UTC")
			fmt.Fprintf(&b, "<!date^%d^{date_short_pretty} {time}|%s>", s.Time.Unix(), fallback)
		case bot.SpanBreak:
			b.WriteString("\n")
		}
	}
	return b.String()
}

// PlainText renders rich text for plain_text objects (headers, buttons),
// where Slack shows emoji shortcodes but no markup.
func PlainText(r bot.Rich) string {
	var b strings.Builder
	for _, s := range r {
		switch s.Kind {
		case bot.SpanStatus:
			b.WriteString(emoji[s.Status])
		case bot.SpanMention:
			b.WriteString("@" + s.User)
		case bot.SpanGroup:
			b.WriteString("@" + s.Text)
		case bot.SpanTime:
			b.WriteString(s.Time.UTC().Format("2006-01-02 15:04 UTC"))
		case bot.SpanBreak:
			b.WriteString(" ")
		default:
			b.WriteString(s.Text)
		}
	}
	return b.String()
}

func mention(u string) string {
	if userID.MatchString(u) {
		return "<@" + u + ">"
	}
	return escaper.Replace(u)
}

// groupMention mentions a group's Slack user groups and users.
func groupMention(s bot.Span) string {
	if s.Group == nil {
		return "@" + escaper.Replace(s.Text)
	}
	var parts []string
	for _, u := range s.Group.Users {
		parts = append(parts, mention(u))
	}
	for _, g := range s.Group.SlackUserGroups {
		parts = append(parts, "<!subteam^"+g+">")
	}
	if len(parts) == 0 {
		return "@" + escaper.Replace(s.Group.Name)
	}
	return strings.Join(parts, " ")
}

func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

func nonEmpty(s string) string {
	if s == "" {
		return " "
	}
	return s
}

// Blocks renders a neutral message as Block Kit.
func Blocks(m bot.Message) []slack.Block {
	var out []slack.Block
	for _, b := range m.Blocks {
		if len(out) == maxBlocks {
			break
		}
		switch b.Kind {
		case bot.KindHeader:
			out = append(out, slack.NewHeaderBlock(slack.NewTextBlockObject(slack.PlainTextType, clip(nonEmpty(PlainText(b.Text)), maxHeaderText), true, false), slack.HeaderBlockOptionBlockID(b.ID)))
		case bot.KindSection:
			var text *slack.TextBlockObject
			if len(b.Text) > 0 {
				text = slack.NewTextBlockObject(slack.MarkdownType, clip(nonEmpty(Mrkdwn(b.Text)), maxSectionText), false, false)
			}
			var fields []*slack.TextBlockObject
			for i, f := range b.Fields {
				if i == maxFields {
					break
				}
				body := Mrkdwn(f.Value)
				if f.Label != "" {
					body = "*" + escaper.Replace(f.Label) + "*\n" + body
				}
				fields = append(fields, slack.NewTextBlockObject(slack.MarkdownType, clip(nonEmpty(body), maxFieldText), false, false))
			}
			if text == nil && len(fields) == 0 {
				text = slack.NewTextBlockObject(slack.MarkdownType, " ", false, false)
			}
			out = append(out, slack.NewSectionBlock(text, fields, nil, slack.SectionBlockOptionBlockID(b.ID)))
		case bot.KindContext:
			out = append(out, slack.NewContextBlock(b.ID, slack.NewTextBlockObject(slack.MarkdownType, clip(nonEmpty(Mrkdwn(b.Text)), maxSectionText), false, false)))
		case bot.KindActions:
			var els []slack.BlockElement
			for _, btn := range b.Buttons {
				e := slack.NewButtonBlockElement(btn.ID, clip(btn.Command, maxButtonValue), slack.NewTextBlockObject(slack.PlainTextType, clip(btn.Label, maxButtonLabel), true, false))
				switch btn.Style {
				case bot.StylePrimary:
					e.Style = slack.StylePrimary
				case bot.StyleDanger:
					e.Style = slack.StyleDanger
				}
				els = append(els, e)
			}
			out = append(out, slack.NewActionBlock(b.ID, els...))
		case bot.KindDivider:
			out = append(out, slack.NewDividerBlock())
		}
	}
	return out
}

// Text is a message's fallback text (notifications, screen readers).
func Text(m bot.Message) string { return clip(Mrkdwn(m.Summary), maxText) }

// modalView renders a neutral modal; metadata travels with it.
func modalView(m bot.Modal, metadata string) slack.ModalViewRequest {
	v := slack.ModalViewRequest{
		Type:            slack.VTModal,
		CallbackID:      m.ID,
		PrivateMetadata: metadata,
		Title:           slack.NewTextBlockObject(slack.PlainTextType, clip(m.Title, 24), false, false),
		Submit:          slack.NewTextBlockObject(slack.PlainTextType, clip(m.Submit, 24), false, false),
		Close:           slack.NewTextBlockObject(slack.PlainTextType, "Cancel", false, false),
	}
	var blocks []slack.Block
	if len(m.Text) > 0 {
		blocks = append(blocks, slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, Mrkdwn(m.Text), false, false), nil, nil))
	}
	for _, in := range m.Inputs {
		el := slack.NewPlainTextInputBlockElement(nil, in.ID)
		el.Multiline = in.Multiline
		if in.Placeholder != "" {
			el.Placeholder = slack.NewTextBlockObject(slack.PlainTextType, in.Placeholder, false, false)
		}
		ib := slack.NewInputBlock(in.ID, slack.NewTextBlockObject(slack.PlainTextType, in.Label, false, false), nil, el)
		ib.Optional = in.Optional
		blocks = append(blocks, ib)
	}
	v.Blocks = slack.Blocks{BlockSet: blocks}
	return v
}
