package neutronapi

import (
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
)

func bgpvpnFields() map[string]fieldSpec {
	return withProject(map[string]fieldSpec{
		"name":                 {post: true, put: true},
		"type":                 {post: true},
		"route_targets":        {post: true, put: true},
		"import_targets":       {post: true, put: true},
		"export_targets":       {post: true, put: true},
		"route_distinguishers": {post: true, put: true},
		"vni":                  {post: true},
		"local_pref":           {post: true, put: true},
		"id":                   {},
		"networks":             {},
		"routers":              {},
		"ports":                {},
	})
}

// bgpvpnAdminWrite are the attributes only an admin may write (§2.1).
func bgpvpnAdminWrite() []string {
	return []string{"route_targets", "import_targets", "export_targets", "route_distinguishers", "vni"}
}

func (a *API) bgpvpnRoutes(add func(method, path string, h handlerFunc)) {
	add("GET", "/v2.0/bgpvpn/bgpvpns", a.listBGPVPNs)
	add("POST", "/v2.0/bgpvpn/bgpvpns", a.createBGPVPN)
	add("GET", "/v2.0/bgpvpn/bgpvpns/{id}", a.showBGPVPN)
	add("PUT", "/v2.0/bgpvpn/bgpvpns/{id}", a.updateBGPVPN)
	add("DELETE", "/v2.0/bgpvpn/bgpvpns/{id}", a.deleteBGPVPN)
}

// validRTRD says whether s is a route target or distinguisher in one of
// RFC 4364's three forms, as neutron-lib's RTRD_REGEX accepts them:
// <0..65535>:<0..4294967295>, <IPv4>:<0..65535>, <0..4294967295>:<0..65535>.
// bagpipe-bgp (internal/bgp.ParseRT) encodes all three (control-plane D21).
func validRTRD(s string) bool {
	admin, num, ok := strings.Cut(s, ":")
	if !ok || strings.Contains(num, ":") {
		return false
	}
	n, ok := decimal(num)
	if !ok {
		return false
	}
	if strings.Contains(admin, ".") {
		ip, err := netip.ParseAddr(admin)
		return err == nil && ip.Is4() && n <= 0xffff
	}
	as, ok := decimal(admin)
	if !ok {
		return false
	}
	if as <= 0xffff {
		return n <= 0xffffffff
	}
	return as <= 0xffffffff && n <= 0xffff
}

// decimal reads an unsigned decimal without sign or leading zeros.
func decimal(s string) (uint64, bool) {
	if s == "" || (len(s) > 1 && s[0] == '0') || len(s) > 10 {
		return 0, false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

// readRTs reads one of the route target lists.
func readRTs(at *attrs, k string) ([]string, bool) {
	list, ok := at.strings(k, maxStringLen, true, true)
	if !ok || at.err != nil {
		return list, ok
	}
	for _, rt := range list {
		if !validRTRD(rt) {
			at.fail(invalidInput(k, "'%s' is not a valid route target (ASN:NN, IPv4:NN or 4-byte-ASN:NN)", rt))
			return nil, true
		}
	}
	return list, true
}

func (a *API) listBGPVPNs(w http.ResponseWriter, r *http.Request) (result, error) {
	lq, err := parseListQuery(r.URL.Query(), a.attrNames["bgpvpns"])
	if err != nil {
		return result{}, err
	}
	p := principalOf(r)
	v := a.view(a.Snapshot(), p)
	var items []map[string]any
	for _, b := range v.s.BGPVPNs {
		if owns(p, b.ProjectID) {
			items = append(items, v.bgpvpn(b))
		}
	}
	return a.listResult(r, "bgpvpns", items, lq)
}

func visibleBGPVPN(s *model.Snapshot, p Principal, id string) (*model.BGPVPN, error) {
	b := s.BGPVPNs[id]
	if b == nil || !owns(p, b.ProjectID) {
		return nil, bgpvpnNotFound(id)
	}
	return b, nil
}

func (a *API) showBGPVPN(w http.ResponseWriter, r *http.Request) (result, error) {
	p := principalOf(r)
	s := a.Snapshot()
	b, err := visibleBGPVPN(s, p, r.PathValue("id"))
	if err != nil {
		return result{}, err
	}
	return showResult(r, "bgpvpn", a.view(s, p).bgpvpn(b))
}

// rdRefused is the bagpipe driver's answer to route distinguishers.
func rdRefused() error {
	return newError(http.StatusBadRequest, "BGPVPNRDNotSupported",
		"BGPVPN bagpipe driver does not support to manually set route distinguisher")
}

func (a *API) createBGPVPN(w http.ResponseWriter, r *http.Request) (result, error) {
	items, _, aerr := readBody(w, r, a.cfg.MaxBodyBytes, "bgpvpn", "")
	if aerr != nil {
		return result{}, aerr
	}
	p := principalOf(r)
	at := newAttrs(items[0])
	at.check(bgpvpnFields(), false)
	if at.err != nil {
		return result{}, at.err
	}
	if !p.IsAdmin() {
		return result{}, policyDenied("create_bgpvpn")
	}
	now := a.now()
	b := &model.BGPVPN{
		Resource: model.Resource{ID: newID(), ProjectID: ownerProject(p, at), CreatedAt: now, UpdatedAt: now},
		Type:     model.BGPVPNL3, RouteTargets: []string{}, ImportTargets: []string{}, ExportTargets: []string{},
		RouteDistinguishers: []string{},
	}
	if v, ok := at.str("name", maxStringLen); ok {
		b.Name = v
	}
	if v, ok := at.str("type", 8); ok {
		if v != model.BGPVPNL2 && v != model.BGPVPNL3 {
			at.fail(invalidInput("type", "'%s' is not in ['l2', 'l3']", v))
		}
		b.Type = v
	}
	readRTLists(at, b)
	if v, present, null := at.integer("vni", 1, maxVNI, true); present && !null {
		n := int(v)
		b.VNI = &n
	}
	if v, present, null := at.integer("local_pref", 0, 0xffffffff, true); present && !null {
		n := uint32(v)
		b.LocalPref = &n
	}
	if at.err != nil {
		return result{}, at.err
	}
	if len(b.RouteDistinguishers) > 0 {
		return result{}, rdRefused()
	}
	var snap *model.Snapshot
	err := a.write(r.Context(), func(tx *txn) error {
		tx.putBGPVPN(b)
		snap = tx.s
		return nil
	})
	if err != nil {
		return result{}, err
	}
	return created(map[string]any{"bgpvpn": a.view(snap, p).bgpvpn(b)})
}

// readRTLists reads the four RT/RD lists present in the body into b.
func readRTLists(at *attrs, b *model.BGPVPN) {
	if v, ok := readRTs(at, "route_targets"); ok {
		b.RouteTargets = v
	}
	if v, ok := readRTs(at, "import_targets"); ok {
		b.ImportTargets = v
	}
	if v, ok := readRTs(at, "export_targets"); ok {
		b.ExportTargets = v
	}
	if v, ok := readRTs(at, "route_distinguishers"); ok {
		b.RouteDistinguishers = v
	}
}

func (a *API) updateBGPVPN(w http.ResponseWriter, r *http.Request) (result, error) {
	items, _, aerr := readBody(w, r, a.cfg.MaxBodyBytes, "bgpvpn", "")
	if aerr != nil {
		return result{}, aerr
	}
	p := principalOf(r)
	id := r.PathValue("id")
	var b *model.BGPVPN
	var snap *model.Snapshot
	err := a.write(r.Context(), func(tx *txn) error {
		old, err := visibleBGPVPN(tx.s, p, id)
		if err != nil {
			return err
		}
		if err := checkRevision(r, old.Revision); err != nil {
			return err
		}
		at := newAttrs(items[0])
		at.check(bgpvpnFields(), true)
		if at.err != nil {
			return at.err
		}
		if !p.IsAdmin() {
			for _, k := range bgpvpnAdminWrite() {
				if at.has(k) {
					return policyDenied("update_bgpvpn:" + k)
				}
			}
		}
		c := *old
		if v, ok := at.str("name", maxStringLen); ok {
			c.Name = v
		}
		readRTLists(at, &c)
		if v, present, null := at.integer("local_pref", 0, 0xffffffff, true); present {
			c.LocalPref = nil
			if !null {
				n := uint32(v)
				c.LocalPref = &n
			}
		}
		if at.err != nil {
			return at.err
		}
		if len(c.RouteDistinguishers) > 0 {
			return rdRefused()
		}
		c.Resource = touched(c.Resource, tx.now)
		b = &c
		tx.putBGPVPN(b)
		snap = tx.s
		return nil
	})
	if err != nil {
		return result{}, err
	}
	return ok(map[string]any{"bgpvpn": a.view(snap, p).bgpvpn(b)})
}

// deleteBGPVPN deletes a BGPVPN with its associations, and removes the
// routes of other port associations that leak from it.
func (a *API) deleteBGPVPN(w http.ResponseWriter, r *http.Request) (result, error) {
	p := principalOf(r)
	id := r.PathValue("id")
	err := a.write(r.Context(), func(tx *txn) error {
		b, err := visibleBGPVPN(tx.s, p, id)
		if err != nil {
			return err
		}
		if !p.IsAdmin() {
			return policyDenied("delete_bgpvpn")
		}
		if err := checkRevision(r, b.Revision); err != nil {
			return err
		}
		for _, na := range tx.s.NetworkAssociations {
			if na.BGPVPNID == id {
				tx.deleteNetAssoc(na.ID)
			}
		}
		for _, ra := range tx.s.RouterAssociations {
			if ra.BGPVPNID == id {
				tx.deleteRouterAssoc(ra.ID)
			}
		}
		for _, pa := range tx.s.PortAssociations {
			if pa.BGPVPNID == id {
				tx.deletePortAssoc(pa.ID)
			}
		}
		for _, pa := range tx.s.PortAssociations {
			leaks := func(rt model.PortRoute) bool { return rt.Type == model.RouteBGPVPN && rt.BGPVPNID == id }
			if slices.ContainsFunc(pa.Routes, leaks) {
				c := *pa
				c.Routes = slices.DeleteFunc(slices.Clone(pa.Routes), leaks)
				tx.putPortAssoc(&c)
			}
		}
		tx.deleteBGPVPN(id)
		return nil
	})
	if err != nil {
		return result{}, err
	}
	return noContent()
}
