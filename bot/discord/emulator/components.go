package emulator

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// knownComponentTypes are the types Discord (and discordgo v0.29) know in
// messages; 4 (text input) and 18 (label) are modal-only.
var knownComponentTypes = map[int]bool{1: true, 2: true, 3: true, 5: true, 6: true, 7: true, 8: true,
	9: true, 10: true, 11: true, 12: true, 13: true, 14: true, 17: true}

// componentChecker walks a component tree, validating and assigning ids.
type componentChecker struct {
	f       *formErrors
	nextID  int
	ids     map[string]bool
	count   int
	inModal bool
}

// checkComponents validates message components (legacy action rows, or
// the Components V2 layout when v2) and returns them with ids assigned.
func checkComponents(f *formErrors, raw json.RawMessage, v2 bool) json.RawMessage {
	var comps []map[string]any
	if err := json.Unmarshal(raw, &comps); err != nil {
		f.add("components", "BASE_TYPE_ARRAY", "Must be an array.")
		return nil
	}
	ck := &componentChecker{f: f, ids: map[string]bool{}}
	if !v2 && len(comps) > 5 {
		f.add("components", "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length.")
	}
	for i, c := range comps {
		p := "components." + strconv.Itoa(i)
		t := intOf(c["type"])
		if !v2 && t != 1 {
			f.add(p+".type", "UNION_TYPE_CHOICES", "Value of field \"type\" must be one of (1,).")
			continue
		}
		ck.check(p, c, 0)
	}
	if v2 && ck.count > 40 {
		f.add("components", "COMPONENT_MAX_TOTAL_COMPONENTS_EXCEEDED", "The specified component exceeds the maximum number of components (40)")
	}
	ck.assignIDs(comps)
	return mustJSON(comps)
}

func intOf(v any) int {
	n, _ := v.(float64)
	return int(n)
}

func (ck *componentChecker) customID(p string, c map[string]any) {
	id, _ := c["custom_id"].(string)
	if id == "" {
		ck.f.required(p + ".custom_id")
		return
	}
	ck.f.between(p+".custom_id", id, 1, 100)
	if ck.ids[id] {
		ck.f.add(p+".custom_id", "COMPONENT_CUSTOM_ID_DUPLICATED", "Component custom id cannot be duplicated")
	}
	ck.ids[id] = true
}

func (ck *componentChecker) check(p string, c map[string]any, depth int) {
	ck.count++
	t := intOf(c["type"])
	known := knownComponentTypes[t] || ck.inModal && (t == 4 || t == 18)
	if !known {
		ck.f.add(p+".type", "UNION_TYPE_CHOICES", fmt.Sprintf("Value of field \"type\" must be one of %s.", validTypes(ck.inModal)))
		return
	}
	children, _ := c["components"].([]any)
	switch t {
	case 1: // action row
		if depth > 1 {
			ck.f.add(p+".type", "COMPONENT_LAYOUT_INVALID", "Action rows cannot be nested")
		}
		if len(children) == 0 {
			ck.f.add(p+".components", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 5 in length.")
		}
		width := 0
		for j, x := range children {
			ch, _ := x.(map[string]any)
			switch intOf(ch["type"]) {
			case 2:
				width++
			case 1, 9, 10, 11, 12, 13, 14, 17, 18:
				ck.f.add(p+".components."+strconv.Itoa(j)+".type", "UNION_TYPE_CHOICES", "Value of field \"type\" must be one of (2, 3, 4, 5, 6, 7, 8).")
				continue
			default:
				width += 5
			}
			ck.check(p+".components."+strconv.Itoa(j), ch, depth+1)
		}
		if width > 5 {
			ck.f.add(p+".components", "COMPONENT_LAYOUT_WIDTH_EXCEEDED", "The specified component exceeds the maximum width")
		}
	case 2: // button
		label, _ := c["label"].(string)
		ck.f.maxLen(p+".label", label, 80)
		switch style := intOf(c["style"]); style {
		case 1, 2, 3, 4:
			ck.customID(p, c)
			if _, ok := c["url"]; ok {
				ck.f.add(p+".url", "BUTTON_COMPONENT_INVALID_URL", "A button with a custom_id cannot have a url")
			}
			if label == "" && c["emoji"] == nil {
				ck.f.add(p, "BUTTON_COMPONENT_LABEL_OR_EMOJI_REQUIRED", "A label or an emoji is required")
			}
		case 5:
			u, _ := c["url"].(string)
			if u == "" {
				ck.f.required(p + ".url")
			}
			ck.f.maxLen(p+".url", u, 512)
			if _, ok := c["custom_id"]; ok {
				ck.f.add(p+".custom_id", "BUTTON_COMPONENT_CUSTOM_ID_NOT_ALLOWED", "A link button cannot have a custom_id")
			}
		case 6:
			if c["sku_id"] == nil {
				ck.f.required(p + ".sku_id")
			}
		default:
			ck.f.add(p+".style", "BASE_TYPE_CHOICES", "Value must be one of (1, 2, 3, 4, 5, 6).")
		}
	case 3, 5, 6, 7, 8: // selects
		ck.customID(p, c)
		ph, _ := c["placeholder"].(string)
		ck.f.maxLen(p+".placeholder", ph, 150)
		if mn, ok := c["min_values"].(float64); ok && (mn < 0 || mn > 25) {
			ck.f.add(p+".min_values", "NUMBER_TYPE_MAX", "int value should be less than or equal to 25.")
		}
		if mx, ok := c["max_values"].(float64); ok && (mx < 1 || mx > 25) {
			ck.f.add(p+".max_values", "NUMBER_TYPE_MAX", "int value should be less than or equal to 25.")
		}
		if t == 3 {
			opts, _ := c["options"].([]any)
			if len(opts) == 0 || len(opts) > 25 {
				ck.f.add(p+".options", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 25 in length.")
			}
			for j, x := range opts {
				o, _ := x.(map[string]any)
				op := p + ".options." + strconv.Itoa(j)
				l, _ := o["label"].(string)
				v, _ := o["value"].(string)
				ck.f.between(op+".label", l, 1, 100)
				ck.f.between(op+".value", v, 1, 100)
			}
		}
	case 4: // text input (modals)
		ck.customID(p, c)
		if st := intOf(c["style"]); st != 1 && st != 2 {
			ck.f.add(p+".style", "BASE_TYPE_CHOICES", "Value must be one of (1, 2).")
		}
		if l, ok := c["label"].(string); ok || depth > 0 && !ck.inLabel(p) {
			ck.f.between(p+".label", l, 1, 45)
		}
		if mn, ok := c["min_length"].(float64); ok && (mn < 0 || mn > 4000) {
			ck.f.add(p+".min_length", "NUMBER_TYPE_MAX", "int value should be less than or equal to 4000.")
		}
		if mx, ok := c["max_length"].(float64); ok && (mx < 1 || mx > 4000) {
			ck.f.add(p+".max_length", "NUMBER_TYPE_MAX", "int value should be less than or equal to 4000.")
		}
		v, _ := c["value"].(string)
		ck.f.maxLen(p+".value", v, 4000)
		ph, _ := c["placeholder"].(string)
		ck.f.maxLen(p+".placeholder", ph, 100)
	case 18: // label wrapping one modal component
		l, _ := c["label"].(string)
		ck.f.between(p+".label", l, 1, 45)
		inner, _ := c["component"].(map[string]any)
		if inner == nil {
			ck.f.required(p + ".component")
		} else {
			ck.check(p+".component", inner, depth+1)
		}
	case 9, 17: // section, container
		for j, x := range children {
			ch, _ := x.(map[string]any)
			ck.check(p+".components."+strconv.Itoa(j), ch, depth+1)
		}
		if acc, ok := c["accessory"].(map[string]any); ok {
			ck.check(p+".accessory", acc, depth+1)
		}
	}
}

// inLabel reports whether path p is the component inside a label.
func (ck *componentChecker) inLabel(p string) bool { return strings.HasSuffix(p, ".component") }

func validTypes(modal bool) string {
	if modal {
		return "(1, 4, 10, 18)"
	}
	return "(1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 17)"
}

// assignIDs numbers components without an id depth-first from 1, as
// Discord does.
func (ck *componentChecker) assignIDs(comps []map[string]any) {
	used := map[int]bool{}
	var collect func(c map[string]any)
	collect = func(c map[string]any) {
		if id := intOf(c["id"]); id > 0 {
			used[id] = true
		}
		walkChildren(c, collect)
	}
	var assign func(c map[string]any)
	assign = func(c map[string]any) {
		if intOf(c["id"]) == 0 {
			ck.nextID++
			for used[ck.nextID] {
				ck.nextID++
			}
			c["id"] = ck.nextID
		}
		walkChildren(c, assign)
	}
	for _, c := range comps {
		collect(c)
	}
	for _, c := range comps {
		assign(c)
	}
}

func walkChildren(c map[string]any, fn func(map[string]any)) {
	children, _ := c["components"].([]any)
	for _, x := range children {
		if ch, ok := x.(map[string]any); ok {
			fn(ch)
		}
	}
	for _, k := range []string{"accessory", "component"} {
		if ch, ok := c[k].(map[string]any); ok {
			fn(ch)
		}
	}
}

// checkModal validates a MODAL (type 9) response's data and returns its
// components with ids assigned.
func checkModal(b *messageBody) (json.RawMessage, *apiError) {
	var f formErrors
	if b.CustomID == "" {
		f.required("data.custom_id")
	} else {
		f.between("data.custom_id", b.CustomID, 1, 100)
	}
	if b.Title == "" {
		f.required("data.title")
	} else {
		f.between("data.title", b.Title, 1, 45)
	}
	var comps []map[string]any
	if err := json.Unmarshal(b.Components, &comps); err != nil || len(comps) == 0 || len(comps) > 5 {
		f.add("data.components", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 5 in length.")
	}
	ck := &componentChecker{f: &f, ids: map[string]bool{}, inModal: true}
	for i, c := range comps {
		p := "data.components." + strconv.Itoa(i)
		switch intOf(c["type"]) {
		case 1:
			children, _ := c["components"].([]any)
			if len(children) != 1 {
				f.add(p+".components", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 1 in length.")
			}
			for j, x := range children {
				ch, _ := x.(map[string]any)
				if intOf(ch["type"]) != 4 {
					f.add(p+".components."+strconv.Itoa(j)+".type", "UNION_TYPE_CHOICES", "Value of field \"type\" must be one of (4,).")
					continue
				}
				ck.check(p+".components."+strconv.Itoa(j), ch, 1)
			}
		case 18, 10:
			ck.check(p, c, 0)
		default:
			f.add(p+".type", "UNION_TYPE_CHOICES", "Value of field \"type\" must be one of (1, 10, 18).")
		}
	}
	if e := f.err(); e != nil {
		return nil, e
	}
	ck.assignIDs(comps)
	return mustJSON(comps), nil
}
