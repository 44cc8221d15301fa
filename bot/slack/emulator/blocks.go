package emulator

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Block Kit limits enforced by the emulator (slack-go checks none of them).
const (
	MaxMessageBlocks  = 50
	MaxViewBlocks     = 100
	MaxSectionText    = 3000
	MaxSectionFields  = 10
	MaxFieldText      = 2000
	MaxHeaderText     = 150
	MaxButtonText     = 75
	MaxButtonValue    = 2000
	MaxButtonURL      = 3000
	MaxActionID       = 255
	MaxBlockID        = 255
	MaxActionElements = 25
	MaxContextItems   = 10
	MaxMessageText    = 40000
	MaxAttachments    = 100
	MaxMarkdownText   = 12000
	MaxInputLabel     = 2000
	MaxSelectOptions  = 100
)

var knownBlocks = map[string]bool{
	"section": true, "divider": true, "header": true, "context": true, "actions": true,
	"image": true, "input": true, "rich_text": true, "markdown": true, "file": true,
	"video": true, "table": true, "context_actions": true,
}

// blockCheck collects Slack-style error messages such as
// "[ERROR] must be less than 3001 characters [json-pointer:/blocks/0/text/text]".
type blockCheck struct {
	msgs []string
}

func (c *blockCheck) errf(ptr, format string, args ...any) {
	c.msgs = append(c.msgs, fmt.Sprintf("[ERROR] "+format+" [json-pointer:%s]", append(args, ptr)...))
}

func (c *blockCheck) maxLen(ptr string, s string, n int) {
	if utf8.RuneCountInString(s) > n {
		c.errf(ptr, "must be less than %d characters", n+1)
	}
}

// decodeJSON decodes keeping numbers as json.Number so re-encoding is lossless.
func decodeJSON(raw []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	return d.Decode(v)
}

// normalizeBlocks validates a blocks array and fills in missing block_ids.
// It returns the stored form, or an error code ("invalid_blocks_format",
// "invalid_blocks") with response_metadata messages.
func normalizeBlocks(raw json.RawMessage, maxBlocks int) (json.RawMessage, string, []string) {
	var blocks []map[string]any
	if err := decodeJSON(raw, &blocks); err != nil {
		return nil, "invalid_blocks_format", []string{"[ERROR] blocks must be a JSON array of objects"}
	}
	var c blockCheck
	if len(blocks) > maxBlocks {
		c.errf("/blocks", "no more than %d items allowed", maxBlocks)
		return nil, "invalid_blocks", c.msgs
	}
	seen := map[string]bool{}
	for i, b := range blocks {
		ptr := fmt.Sprintf("/blocks/%d", i)
		if b == nil {
			c.errf(ptr, "must be an object")
			continue
		}
		if id, ok := b["block_id"].(string); ok && id != "" {
			c.maxLen(ptr+"/block_id", id, MaxBlockID)
			if seen[id] {
				c.errf(ptr+"/block_id", "duplicate block_id")
			}
			seen[id] = true
		} else {
			b["block_id"] = randHex(4) + strconv.Itoa(i) // Slack generates short random ids
		}
		c.block(ptr, b)
	}
	if len(c.msgs) > 0 {
		return nil, "invalid_blocks", c.msgs
	}
	out, _ := json.Marshal(blocks)
	return out, "", nil
}

func (c *blockCheck) block(ptr string, b map[string]any) {
	typ, _ := b["type"].(string)
	if !knownBlocks[typ] {
		c.errf(ptr+"/type", "unsupported type: %q", typ)
		return
	}
	switch typ {
	case "section":
		_, hasText := b["text"]
		fields, hasFields := b["fields"].([]any)
		if !hasText && !hasFields {
			c.errf(ptr, "missing required field: text")
		}
		if hasText {
			c.text(ptr+"/text", b["text"], MaxSectionText, false)
		}
		if hasFields {
			if len(fields) > MaxSectionFields {
				c.errf(ptr+"/fields", "no more than %d items allowed", MaxSectionFields)
			}
			for j, f := range fields {
				c.text(fmt.Sprintf("%s/fields/%d", ptr, j), f, MaxFieldText, false)
			}
		}
		if acc, ok := b["accessory"]; ok {
			c.element(ptr+"/accessory", acc, map[string]bool{})
		}
	case "header":
		c.text(ptr+"/text", b["text"], MaxHeaderText, true)
	case "context":
		els, _ := b["elements"].([]any)
		if len(els) == 0 {
			c.errf(ptr+"/elements", "must provide at least 1 items")
		}
		if len(els) > MaxContextItems {
			c.errf(ptr+"/elements", "no more than %d items allowed", MaxContextItems)
		}
		for j, e := range els {
			if m, ok := e.(map[string]any); ok && m["type"] == "image" {
				continue
			}
			c.text(fmt.Sprintf("%s/elements/%d", ptr, j), e, MaxSectionText, false)
		}
	case "actions":
		els, _ := b["elements"].([]any)
		if len(els) == 0 {
			c.errf(ptr+"/elements", "must provide at least 1 items")
		}
		if len(els) > MaxActionElements {
			c.errf(ptr+"/elements", "no more than %d items allowed", MaxActionElements)
		}
		ids := map[string]bool{}
		for j, e := range els {
			c.element(fmt.Sprintf("%s/elements/%d", ptr, j), e, ids)
		}
	case "input":
		c.text(ptr+"/label", b["label"], MaxInputLabel, true)
		if _, ok := b["element"]; !ok {
			c.errf(ptr, "missing required field: element")
		} else {
			c.element(ptr+"/element", b["element"], map[string]bool{})
		}
	case "markdown":
		s, _ := b["text"].(string)
		if s == "" {
			c.errf(ptr, "missing required field: text")
		}
		c.maxLen(ptr+"/text", s, MaxMarkdownText)
	}
}

// text validates a composition text object.
func (c *blockCheck) text(ptr string, v any, maxLen int, plainOnly bool) {
	m, ok := v.(map[string]any)
	if !ok {
		c.errf(ptr, "missing required field: text")
		return
	}
	typ, _ := m["type"].(string)
	switch {
	case typ == "plain_text":
	case typ == "mrkdwn" && !plainOnly:
		if _, ok := m["emoji"]; ok {
			c.errf(ptr+"/emoji", "emoji is only allowed for plain_text")
		}
	default:
		c.errf(ptr+"/type", "must be one of the allowed types: %s", map[bool]string{true: "plain_text", false: "plain_text, mrkdwn"}[plainOnly])
		return
	}
	s, ok := m["text"].(string)
	if !ok {
		c.errf(ptr+"/text", "missing required field: text")
		return
	}
	if s == "" {
		c.errf(ptr+"/text", "must be more than 0 characters")
	}
	c.maxLen(ptr+"/text", s, maxLen)
}

// element validates an interactive element (button, selects, inputs …).
func (c *blockCheck) element(ptr string, v any, actionIDs map[string]bool) {
	m, ok := v.(map[string]any)
	if !ok {
		c.errf(ptr, "must be an object")
		return
	}
	typ, _ := m["type"].(string)
	if typ == "" {
		c.errf(ptr, "missing required field: type")
		return
	}
	if id, ok := m["action_id"].(string); ok {
		c.maxLen(ptr+"/action_id", id, MaxActionID)
		if actionIDs[id] {
			c.errf(ptr+"/action_id", "duplicate action_id")
		}
		actionIDs[id] = true
	}
	switch typ {
	case "button":
		c.text(ptr+"/text", m["text"], MaxButtonText, true)
		if s, ok := m["value"].(string); ok {
			c.maxLen(ptr+"/value", s, MaxButtonValue)
		}
		if s, ok := m["url"].(string); ok {
			c.maxLen(ptr+"/url", s, MaxButtonURL)
		}
		if st, ok := m["style"].(string); ok && st != "primary" && st != "danger" {
			c.errf(ptr+"/style", "must be one of: primary, danger")
		}
		if cf, ok := m["confirm"].(map[string]any); ok {
			c.text(ptr+"/confirm/title", cf["title"], 100, true)
			c.text(ptr+"/confirm/text", cf["text"], 300, false)
			c.text(ptr+"/confirm/confirm", cf["confirm"], 30, true)
			c.text(ptr+"/confirm/deny", cf["deny"], 30, true)
		}
	case "static_select", "multi_static_select", "overflow", "radio_buttons", "checkboxes":
		opts, _ := m["options"].([]any)
		if len(opts) > MaxSelectOptions {
			c.errf(ptr+"/options", "no more than %d items allowed", MaxSelectOptions)
		}
		for j, o := range opts {
			om, _ := o.(map[string]any)
			c.text(fmt.Sprintf("%s/options/%d/text", ptr, j), om["text"], 75, typ == "static_select" || typ == "multi_static_select" || typ == "overflow")
			if val, ok := om["value"].(string); ok {
				c.maxLen(fmt.Sprintf("%s/options/%d/value", ptr, j), val, 150)
			}
		}
	case "plain_text_input":
		if p, ok := m["placeholder"]; ok {
			c.text(ptr+"/placeholder", p, 150, true)
		}
	}
}

// normalizeAttachments validates attachments, maps the named colours like
// Slack ("danger" → "a30200") and numbers them ("id" 1…n).
func normalizeAttachments(raw json.RawMessage) (json.RawMessage, string) {
	var atts []map[string]any
	if err := decodeJSON(raw, &atts); err != nil {
		return nil, "invalid_attachments"
	}
	if len(atts) > MaxAttachments {
		return nil, "too_many_attachments"
	}
	colours := map[string]string{"danger": "a30200", "good": "2eb886", "warning": "daa038"}
	for i, a := range atts {
		if a == nil {
			return nil, "invalid_attachments"
		}
		if col, ok := a["color"].(string); ok {
			if hex, ok := colours[col]; ok {
				a["color"] = hex
			} else {
				a["color"] = strings.TrimPrefix(col, "#")
			}
		}
		if _, ok := a["id"]; !ok {
			a["id"] = i + 1
		}
		if blocks, ok := a["blocks"]; ok {
			b, _ := json.Marshal(blocks)
			norm, code, _ := normalizeBlocks(b, MaxMessageBlocks)
			if code != "" {
				return nil, "invalid_attachments"
			}
			a["blocks"] = norm
		}
	}
	out, _ := json.Marshal(atts)
	return out, ""
}

// content is a validated message body.
type content struct {
	text        string
	blocks      json.RawMessage // nil = none
	attachments json.RawMessage // nil = none
}

// isEmptyJSONList reports whether raw is absent, null or [].
func isEmptyJSONList(raw json.RawMessage) bool {
	t := strings.TrimSpace(string(raw))
	return t == "" || t == "null" || t == "[]" || t == `""`
}

// prepareContent validates a message body like chat.postMessage does.
func prepareContent(text string, blocks, atts json.RawMessage) (content, *apiErr) {
	c := content{text: text}
	if text == "" && isEmptyJSONList(blocks) && isEmptyJSONList(atts) {
		return c, &apiErr{code: "no_text"}
	}
	if utf8.RuneCountInString(text) > MaxMessageText {
		return c, &apiErr{code: "msg_too_long"}
	}
	if !isEmptyJSONList(blocks) {
		norm, code, msgs := normalizeBlocks(blocks, MaxMessageBlocks)
		if code != "" {
			return c, &apiErr{code: code, messages: msgs}
		}
		c.blocks = norm
	}
	if !isEmptyJSONList(atts) {
		norm, code := normalizeAttachments(atts)
		if code != "" {
			return c, &apiErr{code: code}
		}
		c.attachments = norm
	}
	return c, nil
}
