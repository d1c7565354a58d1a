package desired

import (
	"cmp"
	"slices"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
)

// Change is what turns a host's bagpipe-bgp from one desired state into
// another: detaches first, then attaches (§4.7).
type Change struct {
	// Detach holds the old bodies of the attachments to remove, ipvpn
	// before evpn (an E-VPN may be stitched into a VRF, §4.4).
	Detach []model.Attachment
	// Attach holds the new bodies of the attachments to add or refresh,
	// evpn before ipvpn.
	Attach []model.Attachment
}

// Empty says there is nothing to do.
func (c Change) Empty() bool { return len(c.Detach) == 0 && len(c.Attach) == 0 }

// Diff compares two states of one host, old and next, by attachment key
// (vpn_instance_id, MAC, IP). A key only in old is a detach, a key only in
// next an attach, a key in both whose body differs a re-attach (no detach: bagpipe-bgp
// refreshes an endpoint in place, D8), except when the change cannot be
// made in place: a different VPN type, port, network, vni or stitched
// E-VPN changes what bagpipe-bgp plugged, so the old endpoint is detached
// and the new one attached. An IP-VPN attachment stitched to an E-VPN
// instance that the change removes and re-creates is re-plugged too.
// Either state may be nil (empty). Route target lists compare as sets.
func Diff(old, next *model.HostState) Change {
	oldBy, newBy := byKey(old), byKey(next)
	detach := map[model.AttachmentKey]bool{}
	attach := map[model.AttachmentKey]bool{}
	for k, o := range oldBy {
		n, ok := newBy[k]
		switch {
		case !ok:
			detach[k] = true
		case needsReplug(o, n):
			detach[k], attach[k] = true, true
		case !Equal(o, n):
			attach[k] = true
		}
	}
	for k := range newBy {
		if _, ok := oldBy[k]; !ok {
			attach[k] = true
		}
	}

	// E-VPN instances whose every old endpoint is detached but which
	// exist in new are destroyed then re-created by bagpipe-bgp: a VRF
	// stitched to them must be plugged again.
	left := map[string]int{}
	for k, o := range oldBy {
		if o.VPNType == model.VPNTypeEVPN && !detach[k] {
			left[o.VPNInstanceID]++
		}
	}
	recreated := map[string]bool{}
	for k, o := range oldBy {
		if o.VPNType == model.VPNTypeEVPN && detach[k] && left[o.VPNInstanceID] == 0 {
			recreated[o.VPNInstanceID] = true
		}
	}
	for inst := range recreated {
		found := false
		for _, n := range newBy {
			if n.VPNInstanceID == inst {
				found = true
				break
			}
		}
		if !found {
			delete(recreated, inst)
		}
	}
	if len(recreated) > 0 {
		for k, o := range oldBy {
			if n, ok := newBy[k]; ok && o.VPNType == model.VPNTypeIPVPN && recreated[n.StitchEVPN] {
				detach[k], attach[k] = true, true
			}
		}
	}

	var ch Change
	for k := range detach {
		ch.Detach = append(ch.Detach, *oldBy[k])
	}
	for k := range attach {
		ch.Attach = append(ch.Attach, *newBy[k])
	}
	slices.SortFunc(ch.Detach, func(a, b model.Attachment) int {
		return cmp.Or(cmp.Compare(typeRank(b.VPNType), typeRank(a.VPNType)), compareAttachments(a, b))
	})
	slices.SortFunc(ch.Attach, compareAttachments)
	return ch
}

func byKey(st *model.HostState) map[model.AttachmentKey]*model.Attachment {
	if st == nil {
		return nil
	}
	m := make(map[model.AttachmentKey]*model.Attachment, len(st.Attachments))
	for i := range st.Attachments {
		m[st.Attachments[i].Key()] = &st.Attachments[i]
	}
	return m
}

// needsReplug says whether going from o to n (same key) needs a detach
// before the attach.
func needsReplug(o, n *model.Attachment) bool {
	return o.VPNType != n.VPNType || o.PortID != n.PortID || o.NetworkID != n.NetworkID ||
		o.VNI != n.VNI || o.StitchEVPN != n.StitchEVPN
}

// Equal says whether two attachments have the same body, route target
// lists compared as sets.
func Equal(a, b *model.Attachment) bool {
	return a.VPNType == b.VPNType && a.VPNInstanceID == b.VPNInstanceID &&
		a.PortID == b.PortID && a.NetworkID == b.NetworkID &&
		a.MACAddress == b.MACAddress && a.IPAddress == b.IPAddress &&
		a.GatewayIP == b.GatewayIP && a.GatewayMAC == b.GatewayMAC &&
		sameSet(a.ImportRT, b.ImportRT) && sameSet(a.ExportRT, b.ExportRT) &&
		a.VNI == b.VNI && equalPtr(a.LocalPref, b.LocalPref) &&
		a.Direction == b.Direction && a.AdvertiseSubnet == b.AdvertiseSubnet &&
		equalReadvertise(a.Readvertise, b.Readvertise) &&
		a.StitchEVPN == b.StitchEVPN &&
		a.Description == b.Description && a.InstanceDescription == b.InstanceDescription
}

func equalPtr(a, b *uint32) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func equalReadvertise(a, b *model.Readvertise) bool {
	if a == nil || b == nil {
		return a == b
	}
	return sameSet(a.FromRT, b.FromRT) && sameSet(a.ToRT, b.ToRT)
}

// sameSet compares two string lists as sets.
func sameSet(a, b []string) bool {
	if slices.Equal(a, b) {
		return true
	}
	return slices.Equal(sortedSet(slices.Clone(a)), sortedSet(slices.Clone(b)))
}
