package emulator

import (
	"encoding/json"
	"strconv"
	"strings"
)

// The playground page shows messages as Slack does, but all formatting is
// done here, in Go, where it is tested: the state the page polls carries,
// next to each text, its HTML ("html" in text objects, "html_text" and
// friends in attachments), and the page only inserts it.

// htmlBlocks returns blocks (or a view, or any Block Kit JSON) with an
// "html" rendering added to every mrkdwn and plain_text object and
// markdown block.
func htmlBlocks(raw json.RawMessage, dir directory) json.RawMessage {
	if len(raw) == 0 {
		return raw
	}
	var v any
	if decodeJSON(raw, &v) != nil {
		return raw
	}
	addHTML(v, dir)
	return mustJSON(v)
}

func addHTML(v any, dir directory) {
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			addHTML(e, dir)
		}
	case map[string]any:
		if text, ok := x["text"].(string); ok {
			switch x["type"] {
			case "mrkdwn", "markdown":
				x["html"] = renderMrkdwn(text, dir)
			case "plain_text":
				x["html"] = renderPlain(text, x["emoji"] != false)
			}
		}
		for _, e := range x {
			addHTML(e, dir)
		}
	}
}

// htmlAttachments returns attachments with html_title, html_pretext,
// html_text, html_footer and each field's html_value added, and their
// blocks rendered as htmlBlocks does.
func htmlAttachments(raw json.RawMessage, dir directory) json.RawMessage {
	if len(raw) == 0 {
		return raw
	}
	var atts []map[string]any
	if decodeJSON(raw, &atts) != nil {
		return raw
	}
	for _, a := range atts {
		if t, ok := a["title"].(string); ok {
			a["html_title"] = renderPlain(t, true)
		}
		for _, k := range []string{"pretext", "text", "footer"} {
			if t, ok := a[k].(string); ok && t != "" {
				a["html_"+k] = renderMrkdwn(t, dir)
			}
		}
		fields, _ := a["fields"].([]any)
		for _, f := range fields {
			if fm, ok := f.(map[string]any); ok {
				if t, ok := fm["title"].(string); ok {
					fm["html_title"] = renderPlain(t, true)
				}
				if t, ok := fm["value"].(string); ok {
					fm["html_value"] = renderMrkdwn(t, dir)
				}
			}
		}
		if b, ok := a["blocks"]; ok {
			addHTML(b, dir)
		}
	}
	return mustJSON(atts)
}

// htmlReactions renders a message's reactions as "emoji count" pairs.
func htmlReactions(r map[string][]string) string {
	var parts []string
	for _, name := range sortedKeys(r) {
		parts = append(parts, renderPlain(":"+name+":", true)+" "+strconv.Itoa(len(r[name])))
	}
	return strings.Join(parts, "  ")
}
