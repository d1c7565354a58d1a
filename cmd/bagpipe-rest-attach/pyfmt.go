package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// The original prints what it sends and receives as Python renders it:
// the body as json.dumps writes it (", " and ": " separators, non-ASCII
// escaped), and byte strings as b'...'. Scripts grep these lines, so they
// are reproduced.

// pyJSON encodes v as Python's json.dumps does with its defaults, keeping
// the order of struct fields (and of orderedObject keys).
func pyJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // Python leaves <, > and & alone
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	compact := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))

	var out bytes.Buffer
	inString, escaped := false, false
	for i := 0; i < len(compact); {
		c := compact[i]
		if !inString {
			out.WriteByte(c)
			switch c {
			case '"':
				inString = true
			case ',', ':':
				out.WriteByte(' ')
			}
			i++
			continue
		}
		switch {
		case escaped:
			escaped = false
			out.WriteByte(c)
			i++
		case c == '\\':
			escaped = true
			out.WriteByte(c)
			i++
		case c == '"':
			inString = false
			out.WriteByte(c)
			i++
		case c >= 0x7f:
			// ensure_ascii: DEL and every non-ASCII character as \uXXXX,
			// astral ones as a surrogate pair, lower-case hex
			r, size := utf8.DecodeRune(compact[i:])
			if r >= 0x10000 {
				r -= 0x10000
				fmt.Fprintf(&out, `\u%04x\u%04x`, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
			} else {
				fmt.Fprintf(&out, `\u%04x`, r)
			}
			i += size
		default:
			out.WriteByte(c)
			i++
		}
	}
	return out.Bytes(), nil
}

// pyBytes renders b as Python's repr of a bytes object: b'...', or b"..."
// when b holds a single quote and no double quote.
func pyBytes(b []byte) string {
	quote := byte('\'')
	if bytes.IndexByte(b, '\'') >= 0 && bytes.IndexByte(b, '"') < 0 {
		quote = '"'
	}
	var s strings.Builder
	s.WriteByte('b')
	s.WriteByte(quote)
	for _, c := range b {
		switch {
		case c == quote || c == '\\':
			s.WriteByte('\\')
			s.WriteByte(c)
		case c == '\t':
			s.WriteString(`\t`)
		case c == '\n':
			s.WriteString(`\n`)
		case c == '\r':
			s.WriteString(`\r`)
		case c < 0x20 || c >= 0x7f:
			fmt.Fprintf(&s, `\x%02x`, c)
		default:
			s.WriteByte(c)
		}
	}
	s.WriteByte(quote)
	return s.String()
}

// orderedObject is a JSON object whose keys keep the order they were first
// set in, as a Python dict does: the classifier options are sent in the
// order given on the command line.
type orderedObject struct {
	keys   []string
	values map[string]string
}

func (o *orderedObject) set(k, v string) {
	if o.values == nil {
		o.values = map[string]string{}
	}
	if _, ok := o.values[k]; !ok {
		o.keys = append(o.keys, k)
	}
	o.values[k] = v
}

func (o *orderedObject) empty() bool { return len(o.keys) == 0 }

func (o *orderedObject) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range o.keys {
		if i > 0 {
			b.WriteByte(',')
		}
		writeJSONString(&b, k)
		b.WriteByte(':')
		writeJSONString(&b, o.values[k])
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// writeJSONString writes s as a JSON string without Go's HTML escaping.
func writeJSONString(b *bytes.Buffer, s string) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)       // a string always encodes
	b.Truncate(b.Len() - 1) // Encode's newline
}
