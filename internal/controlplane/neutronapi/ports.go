package neutronapi

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/store"
)

func portFields() map[string]fieldSpec {
	return resourceFields(map[string]fieldSpec{
		"network_id":            {post: true},
		"admin_state_up":        {post: true, put: true},
		"mac_address":           {post: true, put: true},
		"fixed_ips":             {post: true, put: true},
		"device_id":             {post: true, put: true},
		"device_owner":          {post: true, put: true},
		"security_groups":       {post: true, put: true},
		"allowed_address_pairs": {post: true, put: true},
		"port_security_enabled": {post: true, put: true},
		"binding:host_id":       {post: true, put: true},
		"binding:vnic_type":     {post: true, put: true},
		"binding:profile":       {post: true, put: true},
		"status":                {},
		"binding:vif_type":      {},
		"binding:vif_details":   {},
	})
}

// vnicTypes are Neutron's binding:vnic_type values.
func validVNIC(s string) bool {
	switch s {
	case "normal", "direct", "macvtap", "baremetal", "direct-physical", "virtio-forwarder",
		"smart-nic", "vdpa", "remote-managed", "accelerator-direct", "accelerator-direct-physical":
		return true
	}
	return false
}

func (a *API) portRoutes(add func(method, path string, h handlerFunc)) {
	add("GET", "/v2.0/ports", a.listPorts)
	add("POST", "/v2.0/ports", a.createPorts)
	add("GET", "/v2.0/ports/{id}", a.showPort)
	add("PUT", "/v2.0/ports/{id}", a.updatePort)
	add("DELETE", "/v2.0/ports/{id}", a.deletePort)
}

func (a *API) listPorts(w http.ResponseWriter, r *http.Request) (result, error) {
	lq, err := parseListQuery(r.URL.Query(), a.attrNames["ports"])
	if err != nil {
		return result{}, err
	}
	// fixed_ips=ip_address=X / fixed_ips=subnet_id=Y: Neutron's own
	// syntax for filtering on an attribute that is a list of objects.
	var wantIPs, wantSubnets []string
	for _, f := range lq.take("fixed_ips") {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "ip_address":
			wantIPs = append(wantIPs, v)
		case "subnet_id":
			wantSubnets = append(wantSubnets, v)
		default:
			return result{}, badRequest("fixed_ips filter '%s': want ip_address=<ip> or subnet_id=<id>", f)
		}
	}
	p := principalOf(r)
	v := a.view(a.Snapshot(), p)
	var items []map[string]any
	for _, pt := range v.s.Ports {
		if !canSeePort(v.s, p, pt) {
			continue
		}
		if len(wantIPs) > 0 && !slices.ContainsFunc(pt.FixedIPs, func(f model.FixedIP) bool { return slices.Contains(wantIPs, f.IP.String()) }) {
			continue
		}
		if len(wantSubnets) > 0 && !slices.ContainsFunc(pt.FixedIPs, func(f model.FixedIP) bool { return slices.Contains(wantSubnets, f.SubnetID) }) {
			continue
		}
		items = append(items, v.port(pt))
	}
	return a.listResult(r, "ports", items, lq)
}

func visiblePort(s *model.Snapshot, p Principal, id string) (*model.Port, error) {
	pt := s.Ports[id]
	if pt == nil || !canSeePort(s, p, pt) {
		return nil, portNotFound(id)
	}
	return pt, nil
}

func (a *API) showPort(w http.ResponseWriter, r *http.Request) (result, error) {
	p := principalOf(r)
	s := a.Snapshot()
	pt, err := visiblePort(s, p, r.PathValue("id"))
	if err != nil {
		return result{}, err
	}
	return showResult(r, "port", a.view(s, p).port(pt))
}

func (a *API) createPorts(w http.ResponseWriter, r *http.Request) (result, error) {
	return createMany(a, w, r, "port", "ports", a.createPort, (*view).port)
}

// portOptions are the attributes a port create or update sets besides
// the standard ones.
type portOptions struct {
	admin, hasAdmin             bool
	mac                         string
	hasMAC                      bool
	ips                         []ipRequest
	hasIPs                      bool
	deviceID, deviceOwner       string
	hasDeviceID, hasDeviceOwner bool
	sgs                         []string
	hasSGs                      bool
	pairs                       []map[string]any
	hasPairs                    bool
	psec, hasPsec               bool
	host                        string
	hasHost                     bool
	vnic                        string
	hasVNIC                     bool
	profile                     map[string]any
	hasProfile                  bool
}

func readPortOptions(at *attrs) portOptions {
	var o portOptions
	o.admin, o.hasAdmin = at.boolean("admin_state_up")
	o.mac, o.hasMAC = at.str("mac_address", 64)
	o.ips, o.hasIPs = readFixedIPs(at)
	o.deviceID, o.hasDeviceID = at.str("device_id", maxStringLen)
	o.deviceOwner, o.hasDeviceOwner = at.str("device_owner", maxStringLen)
	o.sgs, o.hasSGs = at.strings("security_groups", maxStringLen, true, false)
	o.pairs, o.hasPairs = at.objects("allowed_address_pairs", true)
	o.psec, o.hasPsec = at.boolean("port_security_enabled")
	o.host, o.hasHost, _ = at.nullableStr("binding:host_id", maxStringLen)
	o.vnic, o.hasVNIC = at.str("binding:vnic_type", 64)
	if o.hasVNIC && !validVNIC(o.vnic) {
		at.fail(invalidInput("binding:vnic_type", "'%s' is not a supported VNIC type", o.vnic))
	}
	var null bool
	o.profile, o.hasProfile, null = at.object("binding:profile")
	if null {
		o.profile = map[string]any{}
	}
	return o
}

// bindingPolicy refuses binding:host_id and binding:profile to callers
// that are neither admin nor the compute service (§2.1).
func (o *portOptions) bindingPolicy(p Principal, action string) error {
	if p.canBind() {
		return nil
	}
	if o.hasHost {
		return policyDenied(action + ":binding:host_id")
	}
	if o.hasProfile && len(o.profile) > 0 {
		return policyDenied(action + ":binding:profile")
	}
	return nil
}

// parsePairs validates allowed_address_pairs.
func parsePairs(objs []map[string]any) ([]map[string]string, error) {
	out := make([]map[string]string, 0, len(objs))
	for _, o := range objs {
		if err := onlyKeys("allowed_address_pairs", o, "ip_address", "mac_address"); err != nil {
			return nil, err
		}
		ip, _ := o["ip_address"].(string)
		if _, err := netip.ParseAddr(ip); err != nil {
			if _, err := netip.ParsePrefix(ip); err != nil {
				return nil, invalidInput("allowed_address_pairs", "'%s' is not a valid IP address or CIDR", short(o["ip_address"]))
			}
		}
		pair := map[string]string{"ip_address": ip}
		if v, ok := o["mac_address"]; ok && v != nil {
			s, _ := v.(string)
			mac, good := parseMAC(s)
			if !good {
				return nil, invalidInput("allowed_address_pairs", "'%s' is not a valid MAC address", short(v))
			}
			pair["mac_address"] = mac
		}
		out = append(out, pair)
	}
	return out, nil
}

// checkSecurity: security groups and address pairs need port security,
// as in Neutron.
func checkSecurity(pt *model.Port) error {
	if pt.PortSecurityEnabled {
		return nil
	}
	if len(pt.SecurityGroups) > 0 {
		return newError(http.StatusBadRequest, "PortSecurityAndIPRequiredForSecurityGroups",
			"security groups need port_security_enabled")
	}
	if len(pt.AllowedAddressPairs) > 0 {
		return conflict("AddressPairAndPortSecurityRequired",
			"allowed address pairs need port_security_enabled")
	}
	return nil
}

func (a *API) createPort(tx *txn, p Principal, b body) (*model.Port, error) {
	at := newAttrs(b)
	at.check(portFields(), false)
	if at.err != nil {
		return nil, at.err
	}
	pt := &model.Port{Resource: newResource(at, p, tx.now), AdminStateUp: true, Status: model.StatusDown,
		VNICType: model.VNICNormal, SecurityGroups: []string{}, AllowedAddressPairs: []map[string]string{},
		Profile: map[string]any{}}
	netID, hasNet := at.str("network_id", maxStringLen)
	o := readPortOptions(at)
	if at.err != nil {
		return nil, at.err
	}
	if !hasNet {
		return nil, badRequest("required attribute network_id missing")
	}
	n, err := visibleNetwork(tx.s, p, netID)
	if err != nil {
		return nil, err
	}
	if err := o.bindingPolicy(p, "create_port"); err != nil {
		return nil, err
	}
	pt.NetworkID = netID
	pt.PortSecurityEnabled = n.PortSecurityEnabled
	if o.hasAdmin {
		pt.AdminStateUp = o.admin
	}
	pt.DeviceID, pt.DeviceOwner = o.deviceID, o.deviceOwner
	if o.hasSGs {
		pt.SecurityGroups = o.sgs
	}
	if o.hasPairs {
		if pt.AllowedAddressPairs, err = parsePairs(o.pairs); err != nil {
			return nil, err
		}
	}
	if o.hasPsec {
		pt.PortSecurityEnabled = o.psec
	}
	if err := checkSecurity(pt); err != nil {
		return nil, err
	}
	pt.HostID = o.host
	if o.hasVNIC {
		pt.VNICType = o.vnic
	}
	if o.hasProfile {
		pt.Profile = o.profile
	}
	if o.hasMAC {
		mac, good := parseMAC(o.mac)
		if !good {
			return nil, invalidInput("mac_address", "'%s' is not a valid MAC address", o.mac)
		}
		if macInUse(tx.s, netID, mac, "") {
			return nil, conflict("MacAddressInUse", "MAC %s is already used on network %s", mac, netID)
		}
		pt.MAC = mac
	} else {
		// 2^24 values: a collision is rare, several in a row rarer still.
		for range 16 {
			if mac := newMAC(); !macInUse(tx.s, netID, mac, "") {
				pt.MAC = mac
				break
			}
		}
		if pt.MAC == "" {
			return nil, conflict("MacAddressGenerationFailure", "no unused MAC found for network %s", netID)
		}
	}
	if pt.FixedIPs, err = assignIPs(tx.s, netID, pt.ID, pt.MAC, pt.DeviceOwner, o.ips, o.hasIPs, nil); err != nil {
		return nil, err
	}
	pt.VIFType, pt.VIFDetails = a.binding(pt)
	tx.putPort(pt)
	return pt, nil
}

func (a *API) updatePort(w http.ResponseWriter, r *http.Request) (result, error) {
	items, _, aerr := readBody(w, r, a.cfg.MaxBodyBytes, "port", "")
	if aerr != nil {
		return result{}, aerr
	}
	p := principalOf(r)
	id := r.PathValue("id")
	var pt *model.Port
	var snap *model.Snapshot
	err := a.write(r.Context(), func(tx *txn) error {
		old, err := visiblePort(tx.s, p, id)
		if err != nil {
			return err
		}
		if !owns(p, old.ProjectID) && !p.isService() {
			return policyDenied("update_port")
		}
		if err := checkRevision(r, old.Revision); err != nil {
			return err
		}
		at := newAttrs(items[0])
		at.check(portFields(), true)
		if at.err != nil {
			return at.err
		}
		c := *old
		readResource(at, &c.Resource)
		o := readPortOptions(at)
		if at.err != nil {
			return at.err
		}
		if err := o.bindingPolicy(p, "update_port"); err != nil {
			return err
		}
		if o.hasAdmin {
			c.AdminStateUp = o.admin
		}
		if o.hasDeviceID {
			c.DeviceID = o.deviceID
		}
		if o.hasDeviceOwner {
			c.DeviceOwner = o.deviceOwner
		}
		if o.hasSGs {
			c.SecurityGroups = o.sgs
		}
		if o.hasPairs {
			if c.AllowedAddressPairs, err = parsePairs(o.pairs); err != nil {
				return err
			}
		}
		if o.hasPsec {
			c.PortSecurityEnabled = o.psec
		}
		if err := checkSecurity(&c); err != nil {
			return err
		}
		if o.hasHost {
			c.HostID = o.host
		}
		if o.hasVNIC {
			c.VNICType = o.vnic
		}
		if o.hasProfile {
			c.Profile = o.profile
		}
		if o.hasMAC {
			mac, good := parseMAC(o.mac)
			if !good {
				return invalidInput("mac_address", "'%s' is not a valid MAC address", o.mac)
			}
			if mac != old.MAC {
				if !p.IsAdmin() {
					return policyDenied("update_port:mac_address")
				}
				if old.HostID != "" {
					return conflict("PortBound", "port %s is bound to host %s: unbind it before changing its MAC", id, old.HostID)
				}
				if macInUse(tx.s, old.NetworkID, mac, id) {
					return conflict("MacAddressInUse", "MAC %s is already used on network %s", mac, old.NetworkID)
				}
				c.MAC = mac
			}
		}
		if o.hasIPs {
			if c.FixedIPs, err = assignIPs(tx.s, c.NetworkID, id, c.MAC, c.DeviceOwner, o.ips, true, old.FixedIPs); err != nil {
				return err
			}
		}
		c.VIFType, c.VIFDetails = a.binding(&c)
		c.Resource = touched(c.Resource, tx.now)
		pt = &c
		tx.putPort(pt)
		snap = tx.s
		return nil
	})
	if err != nil {
		return result{}, err
	}
	return ok(map[string]any{"port": a.view(snap, p).port(pt)})
}

func (a *API) deletePort(w http.ResponseWriter, r *http.Request) (result, error) {
	p := principalOf(r)
	id := r.PathValue("id")
	err := a.write(r.Context(), func(tx *txn) error {
		pt, err := visiblePort(tx.s, p, id)
		if err != nil {
			return err
		}
		if n := tx.s.Networks[pt.NetworkID]; !owns(p, pt.ProjectID) && (n == nil || !owns(p, n.ProjectID)) {
			return policyDenied("delete_port")
		}
		if err := checkRevision(r, pt.Revision); err != nil {
			return err
		}
		if (model.IsRouterInterface(pt.DeviceOwner) || pt.DeviceOwner == model.OwnerRouterGateway) && tx.s.Routers[pt.DeviceID] != nil {
			return conflict("ServicePortInUse", "port %s belongs to a router (%s): remove it through the router", id, pt.DeviceOwner)
		}
		deletePortCascade(tx, id)
		return nil
	})
	if err != nil {
		return result{}, err
	}
	return noContent()
}

// SetPortStatus records a port's status as its host's agent reports it
// (ACTIVE once programmed, DOWN otherwise). It does not call OnChange: a
// status is not an input of the desired state.
func (a *API) SetPortStatus(ctx context.Context, id, status string) error {
	if status != model.StatusActive && status != model.StatusDown {
		return fmt.Errorf("neutronapi: port status %q: want %s or %s", status, model.StatusActive, model.StatusDown)
	}
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	cur := a.snap.Load()
	old := cur.Ports[id]
	if old == nil {
		return fmt.Errorf("neutronapi: port %s: %w", id, portNotFound(id))
	}
	if old.Status == status {
		return nil
	}
	tx := newTxn(cur, a.now())
	c := *old
	c.Status = status
	c.Resource = touched(c.Resource, tx.now)
	tx.putPort(&c)
	if err := a.st.Apply(ctx, func(st store.Tx) error { return st.PutPort(&c) }); err != nil {
		return fmt.Errorf("neutronapi: set port %s status: %w", id, err)
	}
	a.snap.Store(tx.s)
	return nil
}
