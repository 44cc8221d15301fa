package slack

import (
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
)

func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
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
			out = append(out, slack.NewHeaderBlock(slack.NewTextBlockObject(slack.PlainTextType, clip(nonEmpty(b.Text), maxHeaderText), true, false), slack.HeaderBlockOptionBlockID(b.ID)))
		case bot.KindSection:
			var text *slack.TextBlockObject
			if b.Text != "" {
				text = slack.NewTextBlockObject(slack.MarkdownType, clip(b.Text, maxSectionText), false, false)
			}
			var fields []*slack.TextBlockObject
			for i, f := range b.Fields {
				if i == maxFields {
					break
				}
				fields = append(fields, slack.NewTextBlockObject(slack.MarkdownType, clip(nonEmpty(f), maxFieldText), false, false))
			}
			if text == nil && len(fields) == 0 {
				text = slack.NewTextBlockObject(slack.MarkdownType, " ", false, false)
			}
			out = append(out, slack.NewSectionBlock(text, fields, nil, slack.SectionBlockOptionBlockID(b.ID)))
		case bot.KindContext:
			out = append(out, slack.NewContextBlock(b.ID, slack.NewTextBlockObject(slack.MarkdownType, clip(nonEmpty(b.Text), maxSectionText), false, false)))
		case bot.KindActions:
			var els []slack.BlockElement
			for _, btn := range b.Buttons {
				e := slack.NewButtonBlockElement(btn.ActionID, btn.Value, slack.NewTextBlockObject(slack.PlainTextType, clip(btn.Label, maxButtonLabel), true, false))
				switch btn.Style {
				case "primary":
					e.Style = slack.StylePrimary
				case "danger":
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

func nonEmpty(s string) string {
	if s == "" {
		return " "
	}
	return s
}

// modalView renders a neutral modal.
func modalView(m bot.Modal) slack.ModalViewRequest {
	v := slack.ModalViewRequest{
		Type:            slack.VTModal,
		CallbackID:      m.CallbackID,
		PrivateMetadata: m.Metadata,
		Title:           slack.NewTextBlockObject(slack.PlainTextType, clip(m.Title, 24), false, false),
		Submit:          slack.NewTextBlockObject(slack.PlainTextType, clip(m.Submit, 24), false, false),
		Close:           slack.NewTextBlockObject(slack.PlainTextType, "Cancel", false, false),
	}
	var blocks []slack.Block
	if m.Text != "" {
		blocks = append(blocks, slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, m.Text, false, false), nil, nil))
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
