// Package ovsjson reads what ovs-vsctl prints with --format=json and writes
// the OVSDB strings its arguments take. bagpipe-bgp's OVS drivers and
// bagpipe-agent's OVS plumbing both drive OVS through ovs-vsctl.
package ovsjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

// Row is one record of ovs-vsctl's JSON output, by column.
type Row map[string]json.RawMessage

// DecodeTables reads n JSON tables ({"headings": [...], "data": [[...]]}),
// as ovs-vsctl prints one per list or find command.
func DecodeTables(out []byte, n int) ([][]Row, error) {
	dec := json.NewDecoder(bytes.NewReader(out))
	tables := make([][]Row, 0, n)
	for range n {
		var t struct {
			Headings []string            `json:"headings"`
			Data     [][]json.RawMessage `json:"data"`
		}
		if err := dec.Decode(&t); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("ovs-vsctl output: %w", err)
		}
		rows := make([]Row, 0, len(t.Data))
		for _, d := range t.Data {
			if len(d) != len(t.Headings) {
				return nil, fmt.Errorf("ovs-vsctl output: %d values for %d columns", len(d), len(t.Headings))
			}
			r := make(Row, len(d))
			for i, h := range t.Headings {
				r[h] = d[i]
			}
			rows = append(rows, r)
		}
		tables = append(tables, rows)
	}
	return tables, nil
}

// Atoms decodes an OVSDB value: an atom, ["set", [atoms]] or ["uuid", u]
// (a UUID reads as its string). Maps are read by Map.
func (r Row) Atoms(col string) []any {
	var v any
	if err := json.Unmarshal(r[col], &v); err != nil {
		return nil
	}
	if a, ok := v.([]any); ok && len(a) == 2 {
		switch a[0] {
		case "set":
			items, _ := a[1].([]any)
			out := make([]any, 0, len(items))
			for _, it := range items {
				out = append(out, unwrapUUID(it))
			}
			return out
		case "uuid":
			return []any{a[1]}
		}
	}
	return []any{v}
}

func unwrapUUID(v any) any {
	if a, ok := v.([]any); ok && len(a) == 2 && a[0] == "uuid" {
		return a[1]
	}
	return v
}

// String reads a string (or UUID) column; "" when empty or of another kind.
func (r Row) String(col string) string {
	if a := r.Atoms(col); len(a) == 1 {
		s, _ := a[0].(string)
		return s
	}
	return ""
}

// Strings reads a set of strings (or UUIDs).
func (r Row) Strings(col string) []string {
	var out []string
	for _, a := range r.Atoms(col) {
		if s, ok := a.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// Int reads an integer column, def when empty.
func (r Row) Int(col string, def int) int {
	if a := r.Atoms(col); len(a) == 1 {
		if f, ok := a[0].(float64); ok {
			return int(f)
		}
	}
	return def
}

// Map reads a map column of strings (["map", [[k, v], ...]]); empty when
// the column is not one.
func (r Row) Map(col string) map[string]string {
	var v []json.RawMessage
	m := map[string]string{}
	if err := json.Unmarshal(r[col], &v); err != nil || len(v) != 2 {
		return m
	}
	var pairs [][2]string
	if err := json.Unmarshal(v[1], &pairs); err != nil {
		return m
	}
	for _, p := range pairs {
		m[p[0]] = p[1]
	}
	return m
}

// Quote renders s as an OVSDB string for an ovs-vsctl argument (no shell
// is involved: the quotes reach ovs-vsctl), so that any name or id is
// taken as one string.
func Quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		if r == '"' || r == '\\' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	b.WriteByte('"')
	return b.String()
}

// QuoteMap renders a map column value, keys sorted.
func QuoteMap(m map[string]string) string {
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, Quote(k)+"="+Quote(m[k]))
	}
	return "{" + strings.Join(parts, ",") + "}"
}
