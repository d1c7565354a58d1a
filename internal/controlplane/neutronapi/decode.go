package neutronapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// maxStringLen is Neutron's length limit for names, descriptions and most
// identifiers.
const maxStringLen = 255

// fieldSpec says in which requests an attribute may appear. An attribute
// of the resource absent from the spec table is unknown (400
// "Unrecognized attribute"); one present but not allowed is read-only
// (400 too, with Neutron's wording).
type fieldSpec struct{ post, put bool }

// body is one resource's attributes, decoded with numbers kept as
// json.Number (so 4294967296 and 1.5 are told apart from integers).
type body map[string]any

// readBody reads a request body holding one resource under key
// ({"network": {...}}) or, when plural is not "", several under plural
// ({"networks": [{...}, ...]}, a bulk create).
func readBody(w http.ResponseWriter, r *http.Request, limit int64, key, plural string) ([]body, bool, *apiError) {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, false, newError(http.StatusRequestEntityTooLarge, "HTTPRequestEntityTooLarge",
				"Request body larger than %d bytes", limit)
		}
		return nil, false, badRequest("Failed to read the request body: %v", err)
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, false, badRequest("request body required")
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil || top == nil {
		return nil, false, badRequest("Malformed request body: want a JSON object with the key '%s'", key)
	}
	if len(top) != 1 {
		keys := sortedKeys(top)
		return nil, false, badRequest("Malformed request body: want exactly one key '%s', got %s", key, quoteList(keys))
	}
	if v, ok := top[key]; ok {
		b, aerr := decodeResource(key, v)
		if aerr != nil {
			return nil, false, aerr
		}
		return []body{b}, false, nil
	}
	if v, ok := top[plural]; ok && plural != "" {
		var list []json.RawMessage
		if err := json.Unmarshal(v, &list); err != nil || len(list) == 0 {
			return nil, false, badRequest("Malformed request body: '%s' must be a non-empty list of objects", plural)
		}
		out := make([]body, 0, len(list))
		for _, item := range list {
			b, aerr := decodeResource(key, item)
			if aerr != nil {
				return nil, false, aerr
			}
			out = append(out, b)
		}
		return out, true, nil
	}
	return nil, false, badRequest("request body has no '%s'", key)
}

func decodeResource(key string, v json.RawMessage) (body, *apiError) {
	b, ok := decodeValue(v).(map[string]any)
	if !ok {
		return nil, badRequest("Malformed request body: '%s' must be a JSON object", key)
	}
	return b, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func quoteList(keys []string) string {
	q := make([]string, len(keys))
	for i, k := range keys {
		q[i] = "'" + k + "'"
	}
	return strings.Join(q, ", ")
}

// attrs decodes a resource's attributes. Each getter records the first
// failure in err and returns a zero value, so a handler reads all its
// attributes and checks err once.
type attrs struct {
	m   body
	err *apiError
}

func newAttrs(b body) *attrs { return &attrs{m: b} }

func (a *attrs) fail(e *apiError) {
	if a.err == nil {
		a.err = e
	}
}

// check refuses unknown attributes and attributes that the method may not
// set, with Neutron's messages.
func (a *attrs) check(specs map[string]fieldSpec, put bool) {
	var unknown []string
	for _, k := range sortedKeys(a.m) {
		spec, ok := specs[k]
		switch {
		case !ok:
			unknown = append(unknown, k)
		case put && !spec.put:
			a.fail(badRequest("attribute %s cannot be updated", k))
		case !put && !spec.post:
			a.fail(badRequest("attribute %s cannot be set on create", k))
		}
	}
	if len(unknown) > 0 {
		// Unknown attributes win: they are the likelier client bug.
		a.err = badRequest("unknown attribute(s): %s", strings.Join(unknown, ", "))
	}
}

func (a *attrs) has(k string) bool {
	_, ok := a.m[k]
	return ok
}

// value is attribute k.
func (a *attrs) value(k string) (any, bool) {
	v, ok := a.m[k]
	return v, ok
}

// decodeValue decodes JSON that is known to be valid (a part of a body
// parsed once already), keeping numbers as json.Number.
func decodeValue(raw json.RawMessage) any {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil
	}
	return v
}

// str reads a string of at most max characters; null is refused.
func (a *attrs) str(k string, max int) (string, bool) {
	v, ok := a.value(k)
	if !ok {
		return "", false
	}
	s, isStr := v.(string)
	if !isStr {
		a.fail(invalidInput(k, "'%s' is not a valid string", short(v)))
		return "", true
	}
	if max > 0 && len(s) > max {
		a.fail(invalidInput(k, "'%s' exceeds maximum length of %d", short(s), max))
		return "", true
	}
	return s, true
}

// nullableStr reads a string or null ("" then, with null set).
func (a *attrs) nullableStr(k string, max int) (s string, present, null bool) {
	v, ok := a.value(k)
	if !ok {
		return "", false, false
	}
	if v == nil {
		return "", true, true
	}
	s, _ = a.str(k, max)
	return s, true, false
}

// boolean reads a boolean the way Neutron converts one: true/false,
// "true"/"false" in any case, 1/0.
func (a *attrs) boolean(k string) (bool, bool) {
	v, ok := a.value(k)
	if !ok {
		return false, false
	}
	b, good := toBool(v)
	if !good {
		a.fail(invalidInput(k, "'%s' cannot be converted to boolean", short(v)))
	}
	return b, true
}

func toBool(v any) (bool, bool) {
	switch t := v.(type) {
	case bool:
		return t, true
	case string:
		switch strings.ToLower(t) {
		case "true", "1":
			return true, true
		case "false", "0":
			return false, true
		}
	case json.Number:
		switch t.String() {
		case "1":
			return true, true
		case "0":
			return false, true
		}
	}
	return false, false
}

// integer reads an integer in [min, max] (a number or a numeric string);
// null is reported, and accepted only if nullable.
func (a *attrs) integer(k string, min, max int64, nullable bool) (v int64, present, null bool) {
	raw, ok := a.value(k)
	if !ok {
		return 0, false, false
	}
	if raw == nil {
		if !nullable {
			a.fail(invalidInput(k, "'None' is not an integer"))
		}
		return 0, true, true
	}
	n, good := toInt(raw)
	if !good {
		a.fail(invalidInput(k, "'%s' is not an integer", short(raw)))
		return 0, true, false
	}
	if n < min || n > max {
		a.fail(invalidInput(k, "'%d' is not in the range %d to %d", n, min, max))
		return 0, true, false
	}
	return n, true, false
}

func toInt(v any) (int64, bool) {
	var s string
	switch t := v.(type) {
	case json.Number:
		s = t.String()
	case string:
		s = strings.TrimSpace(t)
	default:
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// strings reads a list of strings (each at most max long); null is an
// empty list when nullable. A scalar string is accepted as a one-item
// list when scalarOK (BGPVPN route targets, as upstream converts them).
func (a *attrs) strings(k string, max int, nullable, scalarOK bool) ([]string, bool) {
	v, ok := a.value(k)
	if !ok {
		return nil, false
	}
	switch t := v.(type) {
	case nil:
		if !nullable {
			a.fail(invalidInput(k, "'None' is not a list"))
		}
		return []string{}, true
	case string:
		if scalarOK {
			return []string{t}, true
		}
	case []any:
		out := make([]string, 0, len(t))
		for _, item := range t {
			s, isStr := item.(string)
			if !isStr {
				a.fail(invalidInput(k, "'%s' is not a valid string", short(item)))
				return nil, true
			}
			if max > 0 && len(s) > max {
				a.fail(invalidInput(k, "'%s' exceeds maximum length of %d", short(s), max))
				return nil, true
			}
			out = append(out, s)
		}
		return out, true
	}
	a.fail(invalidInput(k, "'%s' is not a list", short(v)))
	return nil, true
}

// list reads a list of objects.
func (a *attrs) objects(k string, nullable bool) ([]map[string]any, bool) {
	v, ok := a.value(k)
	if !ok {
		return nil, false
	}
	if v == nil && nullable {
		return []map[string]any{}, true
	}
	list, isList := v.([]any)
	if !isList {
		a.fail(invalidInput(k, "'%s' is not a list", short(v)))
		return nil, true
	}
	out := make([]map[string]any, 0, len(list))
	for _, item := range list {
		m, isMap := item.(map[string]any)
		if !isMap {
			a.fail(invalidInput(k, "'%s' is not a dictionary", short(item)))
			return nil, true
		}
		out = append(out, m)
	}
	return out, true
}

// object reads a JSON object, or null (nil map, null set).
func (a *attrs) object(k string) (m map[string]any, present, null bool) {
	v, ok := a.value(k)
	if !ok {
		return nil, false, false
	}
	if v == nil {
		return nil, true, true
	}
	m, isMap := v.(map[string]any)
	if !isMap {
		a.fail(invalidInput(k, "'%s' is not a dictionary", short(v)))
		return nil, true, false
	}
	return m, true, false
}

// onlyKeys refuses keys of an embedded object outside allowed.
func onlyKeys(attr string, m map[string]any, allowed ...string) *apiError {
	for _, k := range sortedKeys(m) {
		ok := false
		for _, a := range allowed {
			ok = ok || k == a
		}
		if !ok {
			return invalidInput(attr, "unexpected key '%s' (allowed: %s)", k, strings.Join(allowed, ", "))
		}
	}
	return nil
}

// short renders a bad value for a message, bounded in length.
func short(v any) string {
	var s string
	switch t := v.(type) {
	case nil:
		s = "None"
	case string:
		s = t
	default:
		b, err := json.Marshal(t)
		if err != nil {
			s = "?"
		} else {
			s = string(b)
		}
	}
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return s
}
