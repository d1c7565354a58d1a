package ovsplumb

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/bagpipe-go/bagpipe/internal/ovsjson"
)

// ovsState is what the plumber reads of OVSDB in one ovs-vsctl run: the
// bridges, ports and interfaces.
type ovsState struct {
	bridges map[string]*bridgeRow // by name
	ports   map[string]*portRow   // by name
}

type bridgeRow struct {
	name        string
	failMode    string
	externalIDs map[string]string
	ports       map[string]bool // port names
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
		"--", "--columns=name,ports,fail_mode,external_ids", "list", "Bridge",
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
	tables, err := ovsjson.DecodeTables(out, 3)
	if err != nil {
		return nil, err
	}
	ifaces := map[string]*ifaceRow{}
	for _, r := range tables[2] {
		ifaces[r.String("_uuid")] = &ifaceRow{
			name: r.String("name"), typ: r.String("type"), ofport: r.Int("ofport", -1),
			externalIDs: r.Map("external_ids"), options: r.Map("options"),
		}
	}
	st := &ovsState{bridges: map[string]*bridgeRow{}, ports: map[string]*portRow{}}
	portsByUUID := map[string]*portRow{}
	for _, r := range tables[1] {
		pr := &portRow{
			name: r.String("name"), tag: r.Int("tag", 0),
			otherConfig: r.Map("other_config"), externalIDs: r.Map("external_ids"),
		}
		for _, u := range r.Strings("interfaces") {
			if i := ifaces[u]; i != nil && (pr.iface == nil || i.name == pr.name) {
				pr.iface = i
			}
		}
		portsByUUID[r.String("_uuid")] = pr
		st.ports[pr.name] = pr
	}
	for _, r := range tables[0] {
		b := &bridgeRow{name: r.String("name"), failMode: r.String("fail_mode"), externalIDs: r.Map("external_ids"), ports: map[string]bool{}}
		for _, u := range r.Strings("ports") {
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

func itoa(i int) string { return strconv.Itoa(i) }
