package request

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
)

// The original builds some messages with Python's "%s" of a decoded JSON
// value ("unknown vpn_type: None", "Previous plug for port tap14
// ({'linuxif': 'tap11'} != ...)"). These helpers render a JSON value the way
// Python prints it, keeping the object key order of the request.

// PythonRepr renders a JSON value as Python's repr() of json.loads(raw):
// {'linuxif': 'tap1', 'vlan': 42}, [1, 2], True, None, 'text'. Invalid JSON
// renders as its raw text.
func PythonRepr(raw json.RawMessage) string {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var b strings.Builder
	if err := reprValue(dec, &b); err != nil {
		return string(raw)
	}
	return b.String()
}

// pythonStr is Python's str() of a decoded JSON value: a string as is,
// anything else as repr().
func pythonStr(raw json.RawMessage) string {
	if s, ok := asString(raw); ok {
		return s
	}
	return PythonRepr(raw)
}

// orderedObject keeps keys in first-seen order; a repeated key keeps its
// first position and takes the last value, as a Python dict does.
type orderedObject struct {
	keys []string
	vals map[string]string
}

func reprValue(dec *json.Decoder, b *strings.Builder) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '[':
			b.WriteByte('[')
			for i := 0; dec.More(); i++ {
				if i > 0 {
					b.WriteString(", ")
				}
				if err := reprValue(dec, b); err != nil {
					return err
				}
			}
			_, err = dec.Token()
			b.WriteByte(']')
			return err
		case '{':
			obj := orderedObject{vals: map[string]string{}}
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return err
				}
				key, _ := k.(string)
				var vb strings.Builder
				if err := reprValue(dec, &vb); err != nil {
					return err
				}
				if _, seen := obj.vals[key]; !seen {
					obj.keys = append(obj.keys, key)
				}
				obj.vals[key] = vb.String()
			}
			if _, err := dec.Token(); err != nil {
				return err
			}
			b.WriteByte('{')
			for i, k := range obj.keys {
				if i > 0 {
					b.WriteString(", ")
				}
				b.WriteString(PythonStrRepr(k))
				b.WriteString(": ")
				b.WriteString(obj.vals[k])
			}
			b.WriteByte('}')
			return nil
		}
		return fmt.Errorf("unexpected delimiter %v", t)
	case string:
		b.WriteString(PythonStrRepr(t))
	case bool:
		if t {
			b.WriteString("True")
		} else {
			b.WriteString("False")
		}
	case nil:
		b.WriteString("None")
	case json.Number:
		b.WriteString(pythonNumber(string(t)))
	default:
		return io.ErrUnexpectedEOF
	}
	return nil
}

// pythonNumber renders a JSON number literal as Python prints the int or
// float json.loads makes of it.
func pythonNumber(lit string) string {
	if !strings.ContainsAny(lit, ".eE") {
		if n, err := strconv.ParseInt(lit, 10, 64); err == nil {
			return strconv.FormatInt(n, 10)
		}
		return lit // big ints print in full in Python too
	}
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil {
		return "inf" // Python's float() of an overflowing literal
	}
	// repr(float): fixed notation for exponents -4..15, else scientific.
	exp := 0
	if f != 0 {
		e := strconv.FormatFloat(f, 'e', -1, 64)
		exp, _ = strconv.Atoi(e[strings.IndexByte(e, 'e')+1:])
	}
	if exp < -4 || exp >= 16 {
		return strconv.FormatFloat(f, 'e', -1, 64)
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return s
}

// PythonStrRepr is Python's repr() of a str: single quotes unless the text
// holds a single quote and no double quote, escapes for backslash, the
// quote, control and non-printable characters.
func PythonStrRepr(s string) string {
	q := byte('\'')
	if strings.Contains(s, "'") && !strings.Contains(s, `"`) {
		q = '"'
	}
	var b strings.Builder
	b.WriteByte(q)
	for _, r := range s {
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == rune(q):
			b.WriteByte('\\')
			b.WriteByte(q)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x100 && !unicode.IsPrint(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		case !unicode.IsPrint(r) && r < 0x10000:
			fmt.Fprintf(&b, `\u%04x`, r)
		case !unicode.IsPrint(r):
			fmt.Fprintf(&b, `\U%08x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte(q)
	return b.String()
}
