package emulator

import (
	"encoding/json"
	"fmt"
	"strings"
)

// parseViewLocked validates a view object from views.open/push/update or a
// response_action ack and returns it with block_ids filled in.
func (s *Server) parseViewLocked(raw json.RawMessage) (map[string]any, *apiErr) {
	bad := func(msgs ...string) *apiErr { return &apiErr{code: "invalid_arguments", messages: msgs} }
	var v map[string]any
	if len(raw) == 0 || decodeJSON(raw, &v) != nil || v == nil {
		return nil, bad("[ERROR] missing required field: view")
	}
	if t, _ := v["type"].(string); t != "modal" {
		return nil, bad("[ERROR] must be one of: modal [json-pointer:/view/type]")
	}
	blocks, ok := v["blocks"]
	if !ok || blocks == nil {
		return nil, bad("[ERROR] missing required field: blocks [json-pointer:/view/blocks]")
	}
	if len(mustJSON(v)) > 250_000 {
		return nil, &apiErr{code: "view_too_large"}
	}
	var c blockCheck
	c.text("/view/title", v["title"], 24, true)
	for _, k := range []string{"submit", "close"} {
		if x, ok := v[k]; ok && x != nil {
			c.text("/view/"+k, x, 24, true)
		}
	}
	pm, _ := v["private_metadata"].(string)
	c.maxLen("/view/private_metadata", pm, 3000)
	cb, _ := v["callback_id"].(string)
	c.maxLen("/view/callback_id", cb, 255)
	ext, _ := v["external_id"].(string)
	c.maxLen("/view/external_id", ext, 255)
	norm, code, msgs := normalizeBlocks(mustJSON(blocks), MaxViewBlocks)
	if code != "" {
		for _, m := range msgs {
			c.msgs = append(c.msgs, strings.Replace(m, "[json-pointer:/blocks", "[json-pointer:/view/blocks", 1))
		}
	}
	if len(c.msgs) > 0 {
		return nil, bad(c.msgs...)
	}
	var nb []any
	_ = decodeJSON(norm, &nb)
	v["blocks"] = nb
	return v, nil
}

// fillViewLocked adds the fields Slack sets on a stored view.
func (s *Server) fillViewLocked(v map[string]any, id, root, prev string) {
	v["id"] = id
	v["team_id"] = s.opts.TeamID
	v["root_view_id"] = root
	if prev != "" {
		v["previous_view_id"] = prev
	} else {
		v["previous_view_id"] = nil
	}
	v["app_id"] = s.opts.AppID
	v["bot_id"] = s.opts.BotID
	v["app_installed_team_id"] = s.opts.TeamID
	v["hash"] = fmt.Sprintf("%d.%s", s.now().Unix(), randHex(8))
	v["state"] = map[string]any{"values": map[string]any{}}
	for _, k := range []string{"private_metadata", "callback_id", "external_id"} {
		if _, ok := v[k]; !ok {
			v[k] = ""
		}
	}
	for _, k := range []string{"clear_on_close", "notify_on_close"} {
		if _, ok := v[k]; !ok {
			v[k] = false
		}
	}
	for _, k := range []string{"close", "submit"} {
		if _, ok := v[k]; !ok {
			v[k] = nil
		}
	}
}

func (vs *viewState) sync() {
	str := func(k string) string { x, _ := vs.obj[k].(string); return x }
	vs.CallbackID = str("callback_id")
	vs.PrivateMetadata = str("private_metadata")
	vs.ExternalID = str("external_id")
	vs.Hash = str("hash")
	vs.RootViewID = str("root_view_id")
	if t, ok := vs.obj["title"].(map[string]any); ok {
		vs.Title, _ = t["text"].(string)
	}
	vs.JSON = mustJSON(vs.obj)
}

// addViewLocked stores a new view shown to user. Caller holds s.mu.
func (s *Server) addViewLocked(obj map[string]any, user, root, prev string) *viewState {
	id := s.newID("V")
	if root == "" {
		root = id
	}
	s.fillViewLocked(obj, id, root, prev)
	vs := &viewState{View: View{ID: id, User: user, Open: true}, obj: obj}
	vs.sync()
	s.views[id] = vs
	s.viewOrder = append(s.viewOrder, id)
	s.notifyLocked()
	return vs
}

// useTriggerLocked consumes a trigger_id like Slack: once, within TriggerTTL.
func (s *Server) useTriggerLocked(id string) (*trigger, *apiErr) {
	if id == "" {
		return nil, &apiErr{code: "invalid_arguments", messages: []string{"[ERROR] missing required field: trigger_id"}}
	}
	t := s.triggers[id]
	switch {
	case t == nil:
		return nil, &apiErr{code: "invalid_trigger_id"}
	case t.used:
		return nil, &apiErr{code: "exchanged_trigger_id"}
	case t.expires != 0 && s.now().UnixMicro() > t.expires:
		return nil, &apiErr{code: "expired_trigger_id"}
	}
	t.used = true
	return t, nil
}

func (s *Server) triggerParam(q *apiReq) string {
	if t := q.p.str("trigger_id"); t != "" {
		return t
	}
	return q.p.str("interactivity_pointer")
}

func (s *Server) checkExternalIDLocked(obj map[string]any, except string) *apiErr {
	ext, _ := obj["external_id"].(string)
	if ext == "" {
		return nil
	}
	for _, id := range s.viewOrder {
		if v := s.views[id]; v.ExternalID == ext && v.Open && id != except {
			return &apiErr{code: "duplicate_external_id"}
		}
	}
	return nil
}

func (s *Server) apiViewsOpen(q *apiReq) (map[string]any, *apiErr) {
	obj, e := s.parseViewLocked(q.p.json("view"))
	if e != nil {
		return nil, e
	}
	if e := s.checkExternalIDLocked(obj, ""); e != nil {
		return nil, e
	}
	t, e := s.useTriggerLocked(s.triggerParam(q))
	if e != nil {
		return nil, e
	}
	vs := s.addViewLocked(obj, t.user, "", "")
	return map[string]any{"view": vs.obj}, nil
}

func (s *Server) apiViewsPush(q *apiReq) (map[string]any, *apiErr) {
	obj, e := s.parseViewLocked(q.p.json("view"))
	if e != nil {
		return nil, e
	}
	t, e := s.useTriggerLocked(s.triggerParam(q))
	if e != nil {
		return nil, e
	}
	top, depth := s.topViewLocked(t.user)
	if depth >= 3 {
		return nil, &apiErr{code: "push_limit_reached"}
	}
	root, prev := "", ""
	if top != nil {
		root, prev = top.RootViewID, top.ID
	}
	vs := s.addViewLocked(obj, t.user, root, prev)
	return map[string]any{"view": vs.obj}, nil
}

// topViewLocked returns the user's most recent open view and the number of
// open views in its stack.
func (s *Server) topViewLocked(user string) (*viewState, int) {
	var top *viewState
	for _, id := range s.viewOrder {
		if v := s.views[id]; v.User == user && v.Open {
			top = v
		}
	}
	if top == nil {
		return nil, 0
	}
	n := 0
	for _, v := range s.views {
		if v.Open && v.RootViewID == top.RootViewID {
			n++
		}
	}
	return top, n
}

func (s *Server) apiViewsUpdate(q *apiReq) (map[string]any, *apiErr) {
	var vs *viewState
	if id := q.p.str("view_id"); id != "" {
		vs = s.views[id]
	} else if ext := q.p.str("external_id"); ext != "" {
		for _, id := range s.viewOrder {
			if v := s.views[id]; v.ExternalID == ext {
				vs = v
			}
		}
	} else {
		return nil, &apiErr{code: "invalid_arguments", messages: []string{"[ERROR] missing required field: view_id"}}
	}
	if vs == nil || !vs.Open {
		return nil, &apiErr{code: "not_found"}
	}
	if h := q.p.str("hash"); h != "" && h != vs.Hash {
		return nil, &apiErr{code: "hash_conflict"}
	}
	obj, e := s.parseViewLocked(q.p.json("view"))
	if e != nil {
		return nil, e
	}
	if e := s.checkExternalIDLocked(obj, vs.ID); e != nil {
		return nil, e
	}
	s.replaceViewLocked(vs, obj)
	return map[string]any{"view": vs.obj}, nil
}

func (s *Server) replaceViewLocked(vs *viewState, obj map[string]any) {
	prev, _ := vs.obj["previous_view_id"].(string)
	s.fillViewLocked(obj, vs.ID, vs.RootViewID, prev)
	vs.obj = obj
	vs.Errors = nil
	vs.sync()
	s.notifyLocked()
}

// SubmitView submits an open modal as userID, who must be the user the
// modal was opened for (the user behind the trigger_id). values maps block_id →
// action_id → value and becomes view.state.values in Slack's shape
// (plain_text_input → "value"; static_select/radio_buttons →
// "selected_option"; users_select → "selected_user"; …). Input blocks not
// mentioned are sent with a null value. The app's ack decides what happens
// next: response_action "errors" keeps the view open with View.Errors set,
// "update" replaces it, "push" opens another, "clear" closes the stack and
// an empty ack closes the view.
func (s *Server) SubmitView(userID, viewID string, values map[string]map[string]string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	vs := s.views[viewID]
	if vs == nil {
		return fmt.Errorf("slackemu: no view %q", viewID)
	}
	if !vs.Open {
		return fmt.Errorf("slackemu: view %q is not open", viewID)
	}
	u := s.users[userID]
	if u == nil {
		return fmt.Errorf("slackemu: no user %q", userID)
	}
	if vs.User != userID {
		return fmt.Errorf("slackemu: view %q is shown to %s, not %s", viewID, vs.User, userID)
	}
	state := map[string]any{}
	blocks, _ := vs.obj["blocks"].([]any)
	for _, b := range blocks {
		bm, _ := b.(map[string]any)
		el, _ := bm["element"].(map[string]any)
		bid, _ := bm["block_id"].(string)
		if bm["type"] != "input" || el == nil {
			continue
		}
		aid, _ := el["action_id"].(string)
		typ, _ := el["type"].(string)
		if _, given := values[bid][aid]; !given {
			state[bid] = map[string]any{aid: map[string]any{"type": typ, "value": nil}}
		}
	}
	for bid, acts := range values {
		m := map[string]any{}
		for aid, val := range acts {
			m[aid] = stateValue(findElement(blocks, bid, aid), val)
		}
		state[bid] = m
	}
	vs.obj["state"] = map[string]any{"values": state}
	vs.Errors = nil
	vs.sync()
	payload := map[string]any{
		"type":                  "view_submission",
		"team":                  map[string]any{"id": s.opts.TeamID, "domain": s.opts.TeamDomain},
		"user":                  s.payloadUserLocked(u),
		"api_app_id":            s.opts.AppID,
		"token":                 verificationToken,
		"trigger_id":            s.newTriggerID(userID),
		"view":                  vs.obj,
		"response_urls":         []any{},
		"is_enterprise_install": false,
		"enterprise":            nil,
	}
	s.enqueueLocked("interactive", payload, true, func(ack json.RawMessage) { s.viewAck(viewID, userID, ack) })
	s.notifyLocked()
	return nil
}

// findElement returns the element with action_id aid in input block bid.
func findElement(blocks []any, bid, aid string) map[string]any {
	for _, b := range blocks {
		bm, _ := b.(map[string]any)
		if id, _ := bm["block_id"].(string); id != bid {
			continue
		}
		if el, ok := bm["element"].(map[string]any); ok && el["action_id"] == aid {
			return el
		}
		if els, ok := bm["elements"].([]any); ok {
			for _, e := range els {
				if em, ok := e.(map[string]any); ok && em["action_id"] == aid {
					return em
				}
			}
		}
	}
	return nil
}

// stateValue renders one state.values entry for element el (nil = text input).
func stateValue(el map[string]any, val string) map[string]any {
	typ, _ := el["type"].(string)
	if typ == "" {
		typ = "plain_text_input"
	}
	switch typ {
	case "static_select", "radio_buttons", "external_select":
		text := val
		opts, _ := el["options"].([]any)
		for _, o := range opts {
			if om, _ := o.(map[string]any); om["value"] == val {
				if t, ok := om["text"].(map[string]any); ok {
					text, _ = t["text"].(string)
				}
			}
		}
		return map[string]any{"type": typ, "selected_option": map[string]any{
			"text": map[string]any{"type": "plain_text", "text": text, "emoji": true}, "value": val}}
	case "users_select":
		return map[string]any{"type": typ, "selected_user": val}
	case "conversations_select":
		return map[string]any{"type": typ, "selected_conversation": val}
	case "channels_select":
		return map[string]any{"type": typ, "selected_channel": val}
	case "datepicker":
		return map[string]any{"type": typ, "selected_date": val}
	case "timepicker":
		return map[string]any{"type": typ, "selected_time": val}
	}
	return map[string]any{"type": typ, "value": val}
}

// viewAck applies a view_submission ack's response_action.
func (s *Server) viewAck(viewID, userID string, ack json.RawMessage) {
	var resp struct {
		ResponseAction string            `json:"response_action"`
		Errors         map[string]string `json:"errors"`
		View           json.RawMessage   `json:"view"`
	}
	if len(ack) > 0 {
		_ = json.Unmarshal(ack, &resp)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	vs := s.views[viewID]
	if vs == nil {
		return
	}
	switch resp.ResponseAction {
	case "errors":
		vs.Errors = resp.Errors
		vs.sync()
	case "update", "push":
		obj, e := s.parseViewLocked(resp.View)
		if e != nil {
			vs.Errors = map[string]string{"": "emulator: invalid view in ack: " + e.code + " " + strings.Join(e.messages, "; ")}
			break
		}
		if resp.ResponseAction == "update" {
			s.replaceViewLocked(vs, obj)
		} else {
			s.addViewLocked(obj, userID, vs.RootViewID, vs.ID)
		}
	case "clear":
		for _, v := range s.views {
			if v.RootViewID == vs.RootViewID {
				v.Open = false
			}
		}
	default:
		vs.Open = false
	}
	s.notifyLocked()
}

// CloseView closes an open modal as if userID pressed Cancel, sending a
// view_closed interaction when the view asked for notify_on_close.
func (s *Server) CloseView(userID, viewID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	vs := s.views[viewID]
	if vs == nil || !vs.Open {
		return fmt.Errorf("slackemu: view %q is not open", viewID)
	}
	u := s.users[userID]
	if u == nil || vs.User != userID {
		return fmt.Errorf("slackemu: view %q is not shown to %q", viewID, userID)
	}
	vs.Open = false
	if notify, _ := vs.obj["notify_on_close"].(bool); notify {
		s.enqueueLocked("interactive", map[string]any{
			"type":       "view_closed",
			"team":       map[string]any{"id": s.opts.TeamID, "domain": s.opts.TeamDomain},
			"user":       s.payloadUserLocked(u),
			"api_app_id": s.opts.AppID, "token": verificationToken,
			"view": vs.obj, "is_cleared": false, "is_enterprise_install": false,
		}, false, nil)
	}
	s.notifyLocked()
	return nil
}
