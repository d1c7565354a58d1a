package ovsplumb

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// Local VLANs (Neutron's range; 4095 is its dead VLAN for ports of no
// network).
const (
	minVLAN  = 1
	maxVLAN  = 4094
	deadVLAN = 4095
)

// Neutron's Port.other_config keys for a port's network.
const (
	keyNetUUID         = "net_uuid"
	keyNetworkType     = "network_type"
	keyPhysicalNetwork = "physical_network"
	keySegmentationID  = "segmentation_id"
	keyTag             = "tag"
)

// bridgeVLANKey prefixes the integration bridge's external_ids keys of
// own mode's VLAN map: external_ids:bagpipe-vlan-<network id>=<vlan>. The
// map is kept there, beside the ports' tags, because bagpipe-bgp may still
// use a network's VLAN when none of its ports is left on br-int (a VM
// unplugged while the agent was down): restored from the ports alone, the
// VLAN would look free and could be given to another network.
const bridgeVLANKey = "bagpipe-vlan-"

// errNoVLAN means every VLAN is taken.
var errNoVLAN = errors.New("no free local VLAN (all of 1-4094 are taken)")

// vlanTable is own mode's map of networks to local VLANs. A released
// VLAN goes to a quarantine and is allocated again only when no other is
// free, the longest released first: bagpipe-bgp or a VM may still send on
// it for a moment.
type vlanTable struct {
	byNet  map[string]int
	byVLAN map[int]string
	// quarantine holds the released VLANs, oldest first.
	quarantine []int
}

func newVLANTable() *vlanTable {
	return &vlanTable{byNet: map[string]int{}, byVLAN: map[int]string{}}
}

// restoreBridge rebuilds the map from br-int's external_ids (the
// bridgeVLANKey keys), before restore reads the ports: the bridge keys win
// over the ports. Keys are taken in order; one with a bad VLAN, or a VLAN
// an earlier key took, is skipped and reported (Prepare then removes it).
func (t *vlanTable) restoreBridge(ids map[string]string) []string {
	var skipped []string
	for _, k := range slices.Sorted(maps.Keys(ids)) {
		net, ok := strings.CutPrefix(k, bridgeVLANKey)
		if !ok {
			continue
		}
		v, err := strconv.Atoi(ids[k])
		switch {
		case net == "":
			skipped = append(skipped, fmt.Sprintf("bridge key %s: no network", k))
			continue
		case err != nil || v < minVLAN || v > maxVLAN:
			skipped = append(skipped, fmt.Sprintf("bridge key %s: %q is not a local VLAN", k, ids[k]))
			continue
		}
		if other, ok := t.byVLAN[v]; ok {
			skipped = append(skipped, fmt.Sprintf("bridge key %s: VLAN %d is network %s's", k, v, other))
			continue
		}
		t.byNet[net], t.byVLAN[v] = v, net
	}
	return skipped
}

// bridgeKeys is the map as br-int's external_ids keys.
func (t *vlanTable) bridgeKeys() map[string]string {
	out := make(map[string]string, len(t.byNet))
	for net, v := range t.byNet {
		out[bridgeVLANKey+net] = strconv.Itoa(v)
	}
	return out
}

// hold puts v in quarantine, unless a network has it or it is there
// already: a VLAN found in use (in br-tun's flows) by no known network.
func (t *vlanTable) hold(v int) bool {
	if _, used := t.byVLAN[v]; used || v < minVLAN || v > maxVLAN || slices.Contains(t.quarantine, v) {
		return false
	}
	t.quarantine = append(t.quarantine, v)
	return true
}

// restore rebuilds the map from br-int's ports, as a Neutron agent
// restores its own: a port's network is other_config:net_uuid, its VLAN
// Port.tag (other_config:tag, when present, must agree). Ports are taken
// in name order; a port that contradicts an earlier one (another VLAN for
// its network, or its VLAN taken by another network) is skipped and
// reported, and Prepare retags it.
func (t *vlanTable) restore(ports []*portRow) []string {
	var skipped []string
	for _, p := range ports {
		net := p.otherConfig[keyNetUUID]
		if net == "" {
			continue
		}
		v, err := portVLAN(p)
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("port %s: %v", p.name, err))
			continue
		}
		if old, ok := t.byNet[net]; ok && old != v {
			skipped = append(skipped, fmt.Sprintf("port %s: VLAN %d, network %s has %d", p.name, v, net, old))
			continue
		}
		if other, ok := t.byVLAN[v]; ok && other != net {
			skipped = append(skipped, fmt.Sprintf("port %s: VLAN %d of network %s is network %s's", p.name, v, net, other))
			continue
		}
		t.byNet[net], t.byVLAN[v] = v, net
	}
	return skipped
}

// portVLAN is the VLAN of a tagged port of a network.
func portVLAN(p *portRow) (int, error) {
	if p.tag < minVLAN || p.tag > maxVLAN {
		if p.tag == 0 {
			return 0, errors.New("not tagged")
		}
		return 0, fmt.Errorf("tag %d is not a local VLAN", p.tag)
	}
	if s, ok := p.otherConfig[keyTag]; ok && s != strconv.Itoa(p.tag) {
		return 0, fmt.Errorf("tag %d, other_config:tag %q", p.tag, s)
	}
	return p.tag, nil
}

func (t *vlanTable) get(net string) (int, bool) {
	v, ok := t.byNet[net]
	return v, ok
}

// alloc gives net a VLAN, its own if it has one: the lowest free one out
// of quarantine, else the one longest in quarantine.
func (t *vlanTable) alloc(net string) (int, error) {
	if v, ok := t.byNet[net]; ok {
		return v, nil
	}
	held := make(map[int]bool, len(t.quarantine))
	for _, q := range t.quarantine {
		held[q] = true
	}
	v := 0
	for c := minVLAN; c <= maxVLAN; c++ {
		if _, used := t.byVLAN[c]; !used && !held[c] {
			v = c
			break
		}
	}
	if v == 0 {
		if len(t.quarantine) == 0 {
			return 0, errNoVLAN
		}
		v = t.quarantine[0]
		t.quarantine = t.quarantine[1:]
	}
	t.byNet[net], t.byVLAN[v] = v, net
	return v, nil
}

// release takes net's VLAN back, into quarantine.
func (t *vlanTable) release(net string) {
	v, ok := t.byNet[net]
	if !ok {
		return
	}
	delete(t.byNet, net)
	delete(t.byVLAN, v)
	t.quarantine = append(t.quarantine, v)
}

// networks lists the networks with a VLAN.
func (t *vlanTable) networks() []string {
	out := make([]string, 0, len(t.byNet))
	for n := range t.byNet {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// neutronVLANs reads the Neutron agent's VLANs from br-int's ports
// (neutron mode). A network whose ports disagree, or whose port carries
// an invalid tag, has an error instead; ports of the dead VLAN, or not
// tagged yet, are not counted.
func neutronVLANs(ports []*portRow) (map[string]int, map[string]error) {
	vlans, errs := map[string]int{}, map[string]error{}
	for _, p := range ports {
		net := p.otherConfig[keyNetUUID]
		if net == "" || p.tag == 0 || p.tag == deadVLAN {
			continue
		}
		v, err := portVLAN(p)
		switch {
		case err != nil:
			errs[net] = fmt.Errorf("br-int port %s of network %s: %w", p.name, net, err)
		case vlans[net] != 0 && vlans[net] != v:
			errs[net] = fmt.Errorf("the br-int ports of network %s have VLANs %d and %d", net, vlans[net], v)
		default:
			vlans[net] = v
		}
	}
	for net := range errs {
		delete(vlans, net)
	}
	return vlans, errs
}
