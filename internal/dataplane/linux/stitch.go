//go:build linux

package linux

// Stitching links (vpn-and-api §3.7, dataplanes §1.5): the driver is the
// VPN layer's dataplane.StitchLinker. Each link is a veth pair whose
// E-VPN end joins an instance's bridge (SetGatewayPort) and whose IP-VPN
// end the IP-VPN driver plugs (the OVS driver adds it to its bridge). Both
// ends carry the alias "bagpipe-stitch:<other end>", so that ResetState
// and AdoptState treat them as the driver's devices: after a restart an
// unclaimed pair goes with the other devices not adopted in the grace
// period, and a re-claimed one is adopted in place.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"regexp"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/bagpipe-go/bagpipe/internal/dataplane"
)

// stitchAliasPrefix starts the ifalias of both ends of a stitching link
// the driver made; the rest is the name of the other end. Unlike an
// instance's "bagpipe:<EXT>", it cannot be read as an owner EXT.
const stitchAliasPrefix = "bagpipe-stitch:"

// legacyStitchName matches the names the original gave its stitching
// veths, which carry no alias: such a leftover is bagpipe's too.
var legacyStitchName = regexp.MustCompile(`^(evpn[0-9]+-ipvpn[0-9]+|ipvpn[0-9]+-evpn[0-9]+)$`)

var _ dataplane.StitchLinker = (*Driver)(nil)

// stitchOwned says whether a veth is one end of a stitching link of
// bagpipe's: marked by this driver, or unmarked with the original's name.
func stitchOwned(l netlink.Link) bool {
	if _, ok := l.(*netlink.Veth); !ok {
		return false
	}
	a := l.Attrs()
	return strings.HasPrefix(a.Alias, stitchAliasPrefix) || a.Alias == "" && legacyStitchName.MatchString(a.Name)
}

// checkIfName refuses what the kernel would refuse as an interface name.
func checkIfName(name string) error {
	if name == "" || len(name) > maxIfName || name == "." || name == ".." || strings.ContainsAny(name, "/: \t\n\r\v\f") {
		return fmt.Errorf("%q is not an interface name of 1 to %d characters", name, maxIfName)
	}
	return nil
}

// CreateStitchLink implements dataplane.StitchLinker: a veth pair eviIf /
// vrfIf, both ends with MTU dataplane.StitchLinkMTU, marked with the
// alias "bagpipe-stitch:<other end>", and up. A pair of these names that
// the driver made (a previous run's, noted by AdoptState) is adopted in
// place, so that the bridge port and the traffic through it stay;
// another veth of either name that is bagpipe's is deleted first. A device
// of either name that is not bagpipe's is left alone and the call fails.
func (d *Driver) CreateStitchLink(ctx context.Context, eviIf, vrfIf string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := errors.Join(checkIfName(eviIf), checkIfName(vrfIf)); err != nil {
		return fmt.Errorf("stitching link: %w", err)
	}
	if eviIf == vrfIf {
		return fmt.Errorf("stitching link: both ends named %s", eviIf)
	}
	if d.closed.Load() {
		return errors.New("stitching link: linux E-VPN dataplane closed")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	evi, err := d.linkOrNil(eviIf)
	if err != nil {
		return err
	}
	vrf, err := d.linkOrNil(vrfIf)
	if err != nil {
		return err
	}
	if evi != nil && vrf != nil && ourPair(evi, vrf) {
		if err := d.fixStitchLink(evi, vrf); err != nil {
			return err
		}
		delete(d.inherited, eviIf)
		delete(d.inherited, vrfIf)
		d.stitch[eviIf] = vrfIf
		d.log.Info("stitching link adopted", "evpn_interface", eviIf, "interface", vrfIf)
		return nil
	}
	var stale []netlink.Link
	for _, l := range []netlink.Link{evi, vrf} {
		if l == nil {
			continue
		}
		if !stitchOwned(l) {
			return fmt.Errorf("stitching link %s/%s: %s exists and is not a stitching link of bagpipe's (a %s, alias %q): left alone",
				eviIf, vrfIf, l.Attrs().Name, l.Type(), l.Attrs().Alias)
		}
		stale = append(stale, l)
	}
	for _, l := range stale {
		// Deleting one end deletes its peer: the other may be gone already.
		if err := d.h.LinkDel(l); err != nil && !gone(err) {
			return fmt.Errorf("stitching link %s/%s: delete stale %s: %w", eviIf, vrfIf, l.Attrs().Name, err)
		}
		delete(d.inherited, l.Attrs().Name)
		d.log.Info("stale stitching link deleted", "device", l.Attrs().Name)
	}
	veth := &netlink.Veth{
		LinkAttrs:  netlink.LinkAttrs{Name: eviIf, MTU: dataplane.StitchLinkMTU, TxQLen: -1},
		PeerName:   vrfIf,
		PeerMTU:    dataplane.StitchLinkMTU,
		PeerTxQLen: -1,
	}
	if err := d.h.LinkAdd(veth); err != nil {
		return fmt.Errorf("stitching link %s/%s: create: %w", eviIf, vrfIf, err)
	}
	if err := d.setupStitchLink(eviIf, vrfIf); err != nil {
		if l, lerr := d.h.LinkByName(eviIf); lerr == nil {
			_ = d.h.LinkDel(l) // the peer goes with it
		}
		return err
	}
	d.stitch[eviIf] = vrfIf
	d.log.Info("stitching link created", "evpn_interface", eviIf, "interface", vrfIf, "mtu", dataplane.StitchLinkMTU)
	return nil
}

// linkOrNil is the device named name, nil when there is none.
func (d *Driver) linkOrNil(name string) (netlink.Link, error) {
	l, err := d.h.LinkByName(name)
	if gone(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("stitching link: find %s: %w", name, err)
	}
	return l, nil
}

// ourPair says whether evi and vrf are the two ends of one veth pair
// marked as this driver's stitching link between them.
func ourPair(evi, vrf netlink.Link) bool {
	_, v1 := evi.(*netlink.Veth)
	_, v2 := vrf.(*netlink.Veth)
	a, b := evi.Attrs(), vrf.Attrs()
	// A veth's link index (IFLA_LINK) is its peer's ifindex.
	return v1 && v2 && a.ParentIndex == b.Index && b.ParentIndex == a.Index &&
		a.Alias == stitchAliasPrefix+b.Name && b.Alias == stitchAliasPrefix+a.Name
}

// setupStitchLink marks both ends of the new pair (the kernel takes no
// alias at creation) and sets them up.
func (d *Driver) setupStitchLink(eviIf, vrfIf string) error {
	var ends []netlink.Link
	for _, e := range [][2]string{{eviIf, vrfIf}, {vrfIf, eviIf}} {
		l, err := d.h.LinkByName(e[0])
		if err != nil {
			return fmt.Errorf("stitching link %s/%s: find %s: %w", eviIf, vrfIf, e[0], err)
		}
		if err := d.h.LinkSetAlias(l, stitchAliasPrefix+e[1]); err != nil {
			return fmt.Errorf("stitching link %s/%s: alias of %s: %w", eviIf, vrfIf, e[0], err)
		}
		ends = append(ends, l)
	}
	return d.fixStitchLink(ends...)
}

// fixStitchLink gives both ends the stitching MTU and sets them up, where
// they are not already.
func (d *Driver) fixStitchLink(ends ...netlink.Link) error {
	for _, l := range ends {
		a := l.Attrs()
		if a.MTU != dataplane.StitchLinkMTU {
			if err := d.h.LinkSetMTU(l, dataplane.StitchLinkMTU); err != nil {
				return fmt.Errorf("stitching link: MTU of %s: %w", a.Name, err)
			}
		}
		if a.Flags&net.FlagUp == 0 {
			if err := d.h.LinkSetUp(l); err != nil {
				return fmt.Errorf("stitching link: set %s up: %w", a.Name, err)
			}
		}
	}
	return nil
}

// DeleteStitchLink implements dataplane.StitchLinker: the veth pair whose
// end is eviIf goes (its peer with it), if it is bagpipe's; an absent one
// is no error, a device of that name that is not bagpipe's is left alone
// and the call fails.
func (d *Driver) DeleteStitchLink(ctx context.Context, eviIf string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkIfName(eviIf); err != nil {
		return fmt.Errorf("stitching link: %w", err)
	}
	if d.closed.Load() {
		return errors.New("stitching link: linux E-VPN dataplane closed")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.stitch, eviIf)
	l, err := d.linkOrNil(eviIf)
	if err != nil || l == nil {
		return err
	}
	if !stitchOwned(l) {
		return fmt.Errorf("stitching link %s: a %s with alias %q, not a stitching link of bagpipe's: left alone", eviIf, l.Type(), l.Attrs().Alias)
	}
	if err := d.h.LinkDel(l); err != nil && !gone(err) {
		return fmt.Errorf("stitching link %s: delete: %w", eviIf, err)
	}
	return nil
}

// stitchLGLocked is the driver looking glass's list of the stitching links made
// or adopted by this run, by EVI end.
func (d *Driver) stitchLGLocked() []map[string]string {
	out := []map[string]string{}
	for _, evi := range slices.Sorted(maps.Keys(d.stitch)) {
		out = append(out, map[string]string{"evpn_interface": evi, "ipvpn_interface": d.stitch[evi]})
	}
	return out
}
