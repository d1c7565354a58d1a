package ovsplumb

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// ovsState is what the plumber reads of OVSDB in one ovs-vsctl run: the
// bridges, ports and interfaces.
type ovsState struct {
	bridges map[string]*bridgeRow // by name
	ports   map[string]*portRow   // by name
}

type bridgeRow struct {
	name     string
	failMode string
	ports    map[string]bool // port names
}

type portRow struct {
	name        string
	bridge      string // "" if in no bridge
	tag         int    // 0: none
	otherConfig map[string]string
	externalIDs map[string]string
	// iface is the port's interface of the same name (or its only one);
	// nil if it has none.
	iface *ifaceRow
}

type ifaceRow struct {
	name        string
	typ         string
	ofport      int // -1 until ovs-vswitchd numbers it, or when it failed
	externalIDs map[string]string
	options     map[string]string
}

// readState reads the bridges, ports and interfaces.
func (p *Plumber) readState(ctx context.Context) (*ovsState, error) {
	out, err := p.run.vsctlRead(ctx,
		"--", "--columns=name,ports,fail_mode", "list", "Bridge",
		"--", "--columns=_uuid,name,tag,other_config,external_ids,interfaces", "list", "Port",
		"--", "--columns=_uuid,name,type,ofport,external_ids,options", "list", "Interface")
	if err != nil {
		return nil, fmt.Errorf("read OVSDB: %w", err)
	}
	st, err := parseState(out)
	if err != nil {
		return nil, fmt.Errorf("read OVSDB: %w", err)
	}
	return st, nil
}

// parseState decodes readState's three tables.
func parseState(out []byte) (*ovsState, error) {
	tables, err := decodeTables(out, 3)
	if err != nil {
		return nil, err
	}
	ifaces := map[string]*ifaceRow{}
	for _, r := range tables[2] {
		ifaces[r.str("_uuid")] = &ifaceRow{
			name: r.str("name"), typ: r.str("type"), ofport: r.integer("ofport", -1),
			externalIDs: r.strMap("external_ids"), options: r.strMap("options"),
		}
	}
	st := &ovsState{bridges: map[string]*bridgeRow{}, ports: map[string]*portRow{}}
	portsByUUID := map[string]*portRow{}
	for _, r := range tables[1] {
		pr := &portRow{
			name: r.str("name"), tag: r.integer("tag", 0),
			otherConfig: r.strMap("other_config"), externalIDs: r.strMap("external_ids"),
		}
		for _, u := range r.strs("interfaces") {
			if i := ifaces[u]; i != nil && (pr.iface == nil || i.name == pr.name) {
				pr.iface = i
			}
		}
		portsByUUID[r.str("_uuid")] = pr
		st.ports[pr.name] = pr
	}
	for _, r := range tables[0] {
		b := &bridgeRow{name: r.str("name"), failMode: r.str("fail_mode"), ports: map[string]bool{}}
		for _, u := range r.strs("ports") {
			if pr := portsByUUID[u]; pr != nil {
				pr.bridge = b.name
				b.ports[pr.name] = true
			}
		}
		st.bridges[b.name] = b
	}
	return st, nil
}

// bridgePorts lists the ports of bridge, by name.
func (s *ovsState) bridgePorts(bridge string) []*portRow {
	b := s.bridges[bridge]
	if b == nil {
		return nil
	}
	out := make([]*portRow, 0, len(b.ports))
	for _, n := range slices.Sorted(maps.Keys(b.ports)) {
		out = append(out, s.ports[n])
	}
	return out
}

// row is one record of ovs-vsctl's JSON output, by column.
type row map[string]json.RawMessage

// decodeTables reads n tables ({"headings": [...], "data": [[...]]}), as
// ovs-vsctl --format=json prints one per list command.
func decodeTables(out []byte, n int) ([][]row, error) {
	dec := json.NewDecoder(bytes.NewReader(out))
	tables := make([][]row, 0, n)
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
		rows := make([]row, 0, len(t.Data))
		for _, d := range t.Data {
			if len(d) != len(t.Headings) {
				return nil, fmt.Errorf("ovs-vsctl output: %d values for %d columns", len(d), len(t.Headings))
			}
			r := make(row, len(d))
			for i, h := range t.Headings {
				r[h] = d[i]
			}
			rows = append(rows, r)
		}
		tables = append(tables, rows)
	}
	return tables, nil
}

// atoms decodes an OVSDB value: an atom, ["uuid", u] or ["set", [atoms]].
func (r row) atoms(col string) []any {
	var v any
	if err := json.Unmarshal(r[col], &v); err != nil {
		return nil
	}
	a, ok := v.([]any)
	if !ok || len(a) != 2 {
		return []any{v}
	}
	switch a[0] {
	case "uuid":
		return []any{a[1]}
	case "set":
		items, _ := a[1].([]any)
		out := make([]any, 0, len(items))
		for _, it := range items {
			if u, ok := it.([]any); ok && len(u) == 2 && u[0] == "uuid" {
				it = u[1]
			}
			out = append(out, it)
		}
		return out
	}
	return nil
}

func (r row) str(col string) string {
	if a := r.atoms(col); len(a) == 1 {
		s, _ := a[0].(string)
		return s
	}
	return ""
}

func (r row) strs(col string) []string {
	var out []string
	for _, a := range r.atoms(col) {
		if s, ok := a.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// integer reads an integer column; def when empty.
func (r row) integer(col string, def int) int {
	if a := r.atoms(col); len(a) == 1 {
		if f, ok := a[0].(float64); ok {
			return int(f)
		}
	}
	return def
}

// strMap reads a map column of strings.
func (r row) strMap(col string) map[string]string {
	m := map[string]string{}
	var v []json.RawMessage
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

// quote renders s as an OVSDB string for an ovs-vsctl argument (no shell
// is involved: the quotes reach ovs-vsctl), so that any id is taken as
// one string.
func quote(s string) string {
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

func itoa(i int) string { return strconv.Itoa(i) }
