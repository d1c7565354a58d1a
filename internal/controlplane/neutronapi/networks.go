package neutronapi

import (
	"net/http"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
)

func networkFields() map[string]fieldSpec {
	return resourceFields(map[string]fieldSpec{
		"admin_state_up":            {post: true, put: true},
		"shared":                    {post: true, put: true},
		"router:external":           {post: true, put: true},
		"mtu":                       {post: true, put: true},
		"port_security_enabled":     {post: true, put: true},
		"provider:network_type":     {post: true, put: true},
		"provider:physical_network": {post: true, put: true},
		"provider:segmentation_id":  {post: true, put: true},
		"segments":                  {post: true, put: true},
		"availability_zone_hints":   {post: true},
		"status":                    {},
		"subnets":                   {},
		"availability_zones":        {},
		"ipv4_address_scope":        {},
		"ipv6_address_scope":        {},
	})
}

func (a *API) networkRoutes(add func(method, path string, h handlerFunc)) {
	add("GET", "/v2.0/networks", a.listNetworks)
	add("POST", "/v2.0/networks", a.createNetworks)
	add("GET", "/v2.0/networks/{id}", a.showNetwork)
	add("PUT", "/v2.0/networks/{id}", a.updateNetwork)
	add("DELETE", "/v2.0/networks/{id}", a.deleteNetwork)
}

func (a *API) listNetworks(w http.ResponseWriter, r *http.Request) (result, error) {
	lq, err := parseListQuery(r.URL.Query(), a.attrNames["networks"])
	if err != nil {
		return result{}, err
	}
	p := principalOf(r)
	v := a.view(a.Snapshot(), p)
	var items []map[string]any
	for _, n := range v.s.Networks {
		if canSeeNetwork(p, n) {
			items = append(items, v.network(n))
		}
	}
	return a.listResult(r, "networks", items, lq)
}

// visibleNetwork is the network id as the caller may see it, else 404.
func visibleNetwork(s *model.Snapshot, p Principal, id string) (*model.Network, error) {
	n := s.Networks[id]
	if n == nil || !canSeeNetwork(p, n) {
		return nil, networkNotFound(id)
	}
	return n, nil
}

func (a *API) showNetwork(w http.ResponseWriter, r *http.Request) (result, error) {
	p := principalOf(r)
	s := a.Snapshot()
	n, err := visibleNetwork(s, p, r.PathValue("id"))
	if err != nil {
		return result{}, err
	}
	return showResult(r, "network", a.view(s, p).network(n))
}

func (a *API) createNetworks(w http.ResponseWriter, r *http.Request) (result, error) {
	return createMany(a, w, r, "network", "networks", a.createNetwork, (*view).network)
}

// segmentReq is the provider segment a request asks for.
type segmentReq struct {
	given            bool // any provider attribute or segments
	typ, physnet     string
	seg              int
	hasType, hasSeg  bool
	hasPhys          bool
	firstProviderKey string
}

// readSegment reads provider attributes, flat or as a one-item segments
// list (Neutron's multi-provider extension).
func readSegment(at *attrs) segmentReq {
	var r segmentReq
	flat := false
	for _, k := range []string{"provider:network_type", "provider:physical_network", "provider:segmentation_id"} {
		if at.has(k) {
			flat = true
			if r.firstProviderKey == "" {
				r.firstProviderKey = k
			}
		}
	}
	src := at
	if segs, ok := at.objects("segments", false); ok {
		if at.err != nil {
			return r
		}
		if flat {
			at.fail(invalidOperation("give the provider attributes flat or as segments, not both"))
			return r
		}
		if len(segs) != 1 {
			at.fail(invalidOperation("only one segment per network is supported, got %d", len(segs)))
			return r
		}
		src = newAttrs(segs[0])
		src.check(map[string]fieldSpec{
			"provider:network_type":     {post: true, put: true},
			"provider:physical_network": {post: true, put: true},
			"provider:segmentation_id":  {post: true, put: true},
		}, false)
		r.given, r.firstProviderKey = true, "segments"
	}
	if !flat && src == at {
		return r
	}
	r.given = true
	r.typ, r.hasType = src.str("provider:network_type", maxStringLen)
	var null bool
	r.physnet, r.hasPhys, null = src.nullableStr("provider:physical_network", 64)
	r.hasPhys = r.hasPhys && !null && r.physnet != ""
	seg, has, null := src.integer("provider:segmentation_id", 0, 1<<32, true)
	// 0 counts as not given, as in Neutron's type drivers: gophercloud's
	// provider.Segment always sends the field.
	r.seg, r.hasSeg = int(seg), has && !null && seg != 0
	if src != at && src.err != nil {
		at.fail(src.err)
	}
	return r
}

// segmentInUse finds another network with the same segment.
func segmentInUse(s *model.Snapshot, self, typ, physnet string, seg int) bool {
	for _, n := range s.Networks {
		if n.ID != self && n.NetworkType == typ && n.PhysicalNetwork == physnet && n.SegmentationID == seg {
			return true
		}
	}
	return false
}

// resolveSegment validates a requested segment, or allocates a VNI when
// none was asked (tenant networks are vxlan).
func (a *API) resolveSegment(s *model.Snapshot, r segmentReq) (typ, physnet string, seg int, err error) {
	if !r.given || (!r.hasType && !r.hasPhys && !r.hasSeg) {
		vni, err := a.allocateVNI(s)
		return model.NetworkVXLAN, "", vni, err
	}
	if !r.hasType {
		return "", "", 0, invalidOperation("network_type required")
	}
	switch r.typ {
	case model.NetworkVXLAN:
		if r.hasPhys {
			return "", "", 0, invalidOperation("provider:physical_network specified for vxlan network")
		}
		if !r.hasSeg {
			vni, err := a.allocateVNI(s)
			return model.NetworkVXLAN, "", vni, err
		}
		if r.seg < 1 || r.seg > maxVNI {
			return "", "", 0, invalidOperation("provider:segmentation_id out of range (1 through %d)", maxVNI)
		}
		if r.seg > 0xffff && hasFourByteAS(a.cfg.ASNumbers) {
			return "", "", 0, invalidOperation("VNI %d does not fit route target <AS>:<VNI> with an AS number above 65535 (16 bits)", r.seg)
		}
		if segmentInUse(s, "", r.typ, "", r.seg) {
			return "", "", 0, conflict("TunnelIdInUse", "VNI %d is already used by another vxlan network", r.seg)
		}
		return r.typ, "", r.seg, nil
	case model.NetworkVLAN:
		if !r.hasPhys {
			return "", "", 0, invalidOperation("provider:physical_network required")
		}
		if !r.hasSeg || r.seg < 1 || r.seg > 4094 {
			return "", "", 0, invalidOperation("provider:segmentation_id out of range (1 through 4094)")
		}
		if segmentInUse(s, "", r.typ, r.physnet, r.seg) {
			return "", "", 0, conflict("VlanIdInUse", "VLAN %d of physical network %s is already used by another network", r.seg, r.physnet)
		}
		return r.typ, r.physnet, r.seg, nil
	case model.NetworkFlat:
		if !r.hasPhys {
			return "", "", 0, invalidOperation("provider:physical_network required")
		}
		if r.hasSeg {
			return "", "", 0, invalidOperation("provider:segmentation_id specified for flat network")
		}
		if segmentInUse(s, "", r.typ, r.physnet, 0) {
			return "", "", 0, conflict("FlatNetworkInUse", "physical network %s already has a flat network", r.physnet)
		}
		return r.typ, r.physnet, 0, nil
	case model.NetworkLocal:
		if r.hasPhys || r.hasSeg {
			return "", "", 0, invalidOperation("provider:physical_network and provider:segmentation_id not allowed for local network")
		}
		return r.typ, "", 0, nil
	}
	return "", "", 0, invalidOperation("network_type value '%s' not supported", r.typ)
}

// allocateVNI is the lowest VNI of the configured ranges no vxlan network
// uses.
func (a *API) allocateVNI(s *model.Snapshot) (int, error) {
	used := map[int]bool{}
	for _, n := range s.Networks {
		if n.NetworkType == model.NetworkVXLAN {
			used[n.SegmentationID] = true
		}
	}
	for _, r := range a.cfg.VNIRanges {
		// At most len(used)+1 steps: the loop ends at the first hole.
		for v := r.Min; v <= r.Max; v++ {
			if !used[v] {
				return v, nil
			}
		}
	}
	return 0, newError(http.StatusServiceUnavailable, "NoNetworkAvailable",
		"no free VNI left in the configured ranges")
}

func (a *API) maxMTU(typ string) int {
	if typ == model.NetworkVXLAN {
		return a.cfg.PhysicalMTU - vxlanOverhead
	}
	return a.cfg.PhysicalMTU
}

func (a *API) createNetwork(tx *txn, p Principal, b body) (*model.Network, error) {
	at := newAttrs(b)
	at.check(networkFields(), false)
	if at.err != nil {
		return nil, at.err
	}
	n := &model.Network{Resource: newResource(at, p, tx.now), AdminStateUp: true, PortSecurityEnabled: true}
	if v, ok := at.boolean("admin_state_up"); ok {
		n.AdminStateUp = v
	}
	n.Shared, _ = at.boolean("shared")
	n.External, _ = at.boolean("router:external")
	if v, ok := at.boolean("port_security_enabled"); ok {
		n.PortSecurityEnabled = v
	}
	mtu, hasMTU, _ := at.integer("mtu", 68, 65535, false)
	at.strings("availability_zone_hints", maxStringLen, false, false) // accepted; one zone here
	seg := readSegment(at)
	if at.err != nil {
		return nil, at.err
	}
	// Neutron's policy refuses these to non-admins only when they differ
	// from the default.
	if !p.IsAdmin() {
		switch {
		case n.Shared:
			return nil, policyDenied("create_network:shared")
		case n.External:
			return nil, policyDenied("create_network:router:external")
		case seg.given:
			return nil, policyDenied("create_network:" + seg.firstProviderKey)
		}
	}
	var err error
	n.NetworkType, n.PhysicalNetwork, n.SegmentationID, err = a.resolveSegment(tx.s, seg)
	if err != nil {
		return nil, err
	}
	n.MTU = a.maxMTU(n.NetworkType)
	if hasMTU {
		if int(mtu) > n.MTU {
			return nil, invalidOperation("MTU %d is above the maximum %d of this network type", mtu, n.MTU)
		}
		n.MTU = int(mtu)
	}
	tx.putNetwork(n)
	return n, nil
}

func (a *API) updateNetwork(w http.ResponseWriter, r *http.Request) (result, error) {
	items, _, aerr := readBody(w, r, a.cfg.MaxBodyBytes, "network", "")
	if aerr != nil {
		return result{}, aerr
	}
	p := principalOf(r)
	id := r.PathValue("id")
	var n *model.Network
	var snap *model.Snapshot
	err := a.write(r.Context(), func(tx *txn) error {
		old, err := visibleNetwork(tx.s, p, id)
		if err != nil {
			return err
		}
		if !owns(p, old.ProjectID) {
			return policyDenied("update_network")
		}
		if err := checkRevision(r, old.Revision); err != nil {
			return err
		}
		at := newAttrs(items[0])
		at.check(networkFields(), true)
		if at.err != nil {
			return at.err
		}
		c := *old
		readResource(at, &c.Resource)
		if v, ok := at.boolean("admin_state_up"); ok {
			c.AdminStateUp = v
		}
		shared, hasShared := at.boolean("shared")
		ext, hasExt := at.boolean("router:external")
		if v, ok := at.boolean("port_security_enabled"); ok {
			c.PortSecurityEnabled = v
		}
		mtu, hasMTU, _ := at.integer("mtu", 68, 65535, false)
		seg := readSegment(at)
		if at.err != nil {
			return at.err
		}
		if !p.IsAdmin() {
			switch {
			case hasShared:
				return policyDenied("update_network:shared")
			case hasExt:
				return policyDenied("update_network:router:external")
			case seg.given:
				return policyDenied("update_network:" + seg.firstProviderKey)
			}
		}
		if hasShared {
			c.Shared = shared
		}
		if hasExt {
			if ext && !old.External && len(netAssocBGPVPNs(tx.s, id)) > 0 {
				return invalidOperation("network %s is associated to a BGPVPN and cannot become external", id)
			}
			c.External = ext
		}
		if seg.given {
			// Like ML2: the segment cannot change; restating it is fine.
			if (seg.hasType && seg.typ != old.NetworkType) || (seg.hasPhys && seg.physnet != old.PhysicalNetwork) ||
				(seg.hasSeg && seg.seg != old.SegmentationID) {
				return invalidOperation("the provider attributes of a network cannot change")
			}
		}
		if hasMTU {
			if int(mtu) > a.maxMTU(c.NetworkType) {
				return invalidOperation("MTU %d is above the maximum %d of this network type", mtu, a.maxMTU(c.NetworkType))
			}
			c.MTU = int(mtu)
		}
		c.Resource = touched(c.Resource, tx.now)
		n = &c
		tx.putNetwork(n)
		snap = tx.s
		return nil
	})
	if err != nil {
		return result{}, err
	}
	return ok(map[string]any{"network": a.view(snap, p).network(n)})
}

// deleteNetwork deletes a network with its subnets, DHCP ports and BGPVPN
// associations; any other port keeps it in use (409), as in Neutron.
func (a *API) deleteNetwork(w http.ResponseWriter, r *http.Request) (result, error) {
	p := principalOf(r)
	id := r.PathValue("id")
	err := a.write(r.Context(), func(tx *txn) error {
		n, err := visibleNetwork(tx.s, p, id)
		if err != nil {
			return err
		}
		if !owns(p, n.ProjectID) {
			return policyDenied("delete_network")
		}
		if err := checkRevision(r, n.Revision); err != nil {
			return err
		}
		ports := portsOn(tx.s, id)
		for _, pt := range ports {
			if pt.DeviceOwner != model.OwnerDHCP {
				return conflict("NetworkInUse", "network %s is in use: ports other than DHCP ports remain on it", id)
			}
		}
		for _, pt := range ports {
			deletePortCascade(tx, pt.ID)
		}
		for _, na := range tx.s.NetworkAssociations {
			if na.NetworkID == id {
				tx.deleteNetAssoc(na.ID)
			}
		}
		for _, sn := range subnetsOf(tx.s, id) {
			tx.deleteSubnet(sn.ID)
		}
		tx.deleteNetwork(id)
		return nil
	})
	if err != nil {
		return result{}, err
	}
	return noContent()
}

// bumpNetwork records a change of a network's derived attributes (its
// subnets list), as Neutron bumps the revision.
func bumpNetwork(tx *txn, id string) {
	if n := tx.s.Networks[id]; n != nil {
		c := *n
		c.Resource = touched(c.Resource, tx.now)
		tx.putNetwork(&c)
	}
}
