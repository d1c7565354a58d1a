package vpn

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/bagpipe-go/bagpipe/internal/dataplane"
)

// stitching is the VRF end of a stitching with an EVI (vpn-and-api §3.7,
// dataplanes §1.5).
type stitching struct {
	evi   *instance
	eviIf string // EVI side, given to its SetGatewayPort
	vrfIf string // VRF side: the linuxif of the VRF's endpoints
	// linker made the link's devices and deletes them with the stitching;
	// nil when the VPN layer only names the ends (ovs_port_name, or an
	// E-VPN driver that makes no device).
	linker dataplane.StitchLinker
}

// maxIfName is the longest Linux interface name (IFNAMSIZ - 1).
const maxIfName = 15

// stitchNames are the names of the two ends of the link stitching EVI
// eviID into VRF vrfID: the original's, evpn<E>-ipvpn<V> and
// ipvpn<V>-evpn<E>, when they fit in an interface name; otherwise
// (dataplanes §11 #31) "e<E>_<V>" and "i<V>_<E>" with the ids in base 36,
// and, for two ids of seven base-36 digits, the same without the "_" and
// each id padded to seven digits. The short forms hold no "-", so they
// never equal an original name; each maps back to its pair of ids, so two
// stitchings never share a name. short says the original names did not
// fit.
func stitchNames(eviID, vrfID uint32) (eviIf, vrfIf string, short bool) {
	eviIf = fmt.Sprintf("evpn%d-ipvpn%d", eviID, vrfID)
	vrfIf = fmt.Sprintf("ipvpn%d-evpn%d", vrfID, eviID)
	if len(eviIf) <= maxIfName {
		return eviIf, vrfIf, false
	}
	e, v := strconv.FormatUint(uint64(eviID), 36), strconv.FormatUint(uint64(vrfID), 36)
	eviIf, vrfIf = "e"+e+"_"+v, "i"+v+"_"+e
	if len(eviIf) > maxIfName {
		pad := func(s string) string { return strings.Repeat("0", 7-len(s)) + s }
		eviIf, vrfIf = "e"+pad(e)+pad(v), "i"+pad(v)+pad(e)
	}
	return eviIf, vrfIf, true
}

// prepare stitches the EVI named by local_port.evpn into the VRF (§3.7):
// the VRF's endpoint is plugged on the VRF side of the stitching link, the
// EVI gets the other side as its gateway port. When the EVI's driver makes
// devices (dataplane.StitchLinker), it makes the link here; otherwise only
// the names exist. With ovs_port_name, that pre-plugged OVS port is the EVI
// side and local_port.ovs.port_name the VRF side, and no device is made
// (the original crashed there, §8 #11).
func (v *vrf) prepare(ctx context.Context, p AttachParams) (AttachParams, func(), error) {
	s := p.LocalPort.EVPN
	if s == nil {
		return p, nil, nil
	}
	in := v.in
	if s.ID == "" {
		return p, nil, inputErrorf("Mandatory key 'id' is missing in local_port/evpn")
	}
	if p.LocalPort.LinuxIf != "" {
		return p, nil, inputErrorf("local_port: 'linuxif' cannot be given with 'evpn'")
	}
	ovs := p.LocalPort.OVS
	if s.OVSPortName != "" && (ovs == nil || !ovs.Plugged || ovs.PortName == "" && ovs.PortNumber == 0) {
		return p, nil, inputErrorf("local_port/evpn: 'ovs_port_name' requires local_port/ovs with 'plugged' and 'port_name' or 'port_number'")
	}
	if st := v.stitch; st != nil {
		if st.evi.ext != s.ID {
			return p, nil, inputErrorf("VPN instance %s is already stitched to EVPN instance %s, cannot stitch %s", in.ext, st.evi.ext, s.ID)
		}
		// The same stitching again: reused as it is (§3.7).
		p.LocalPort.LinuxIf = st.vrfIf
		return p, nil, nil
	}
	evi := in.m.lookup(s.ID)
	if evi == nil {
		return p, nil, inputErrorf("EVPN instance %s could not be found", s.ID)
	}
	if evi.typ != dataplane.EVPN {
		return p, nil, inputErrorf("Instance %s is not an EVPN instance (it is %s)", s.ID, evi.typ)
	}
	st := &stitching{evi: evi}
	if s.OVSPortName != "" {
		st.eviIf, st.vrfIf = s.OVSPortName, fmt.Sprintf("ipvpn%d-evpn%d", in.id, evi.id)
		if ovs.PortName != "" {
			st.vrfIf = ovs.PortName
		}
	} else {
		eviIf, vrfIf, short := stitchNames(evi.id, in.id)
		st.eviIf, st.vrfIf = eviIf, vrfIf
		if short {
			// Recorded: the names are not the ones the original's tools
			// would look for.
			in.log.Info("stitching link names shortened to fit interface names",
				"evpn_interface", eviIf, "interface", vrfIf,
				"evpn_interface_original", fmt.Sprintf("evpn%d-ipvpn%d", evi.id, in.id),
				"interface_original", fmt.Sprintf("ipvpn%d-evpn%d", in.id, evi.id))
		}
		st.linker, _ = dataplane.AsStitchLinker(evi.drv)
	}
	if err := evi.claimGateway(ctx, in, st, in.create.GatewayIP); err != nil {
		if errors.Is(err, errStopped) {
			return p, nil, inputErrorf("EVPN instance %s could not be found", s.ID)
		}
		return p, nil, err
	}
	v.stitch = st
	p.LocalPort.LinuxIf = st.vrfIf
	in.log.Info("EVPN instance stitched", "evpn_instance", evi.name, "evpn_interface", st.eviIf, "interface", st.vrfIf,
		"link_created", st.linker != nil)
	return p, func() { v.unstitch(context.WithoutCancel(ctx)) }, nil
}

// unstitch gives the EVI its gateway port back, then deletes the link the
// stitching made. The link goes even when the EVI has stopped already (its
// Cleanup took the port out of its bridge, §8 #28).
func (v *vrf) unstitch(ctx context.Context) {
	st := v.stitch
	if st == nil {
		return
	}
	v.stitch = nil
	if err := st.evi.releaseGateway(ctx, v.in); err != nil && !errors.Is(err, errStopped) {
		v.in.log.Error("EVPN gateway port teardown failed", "evpn_instance", st.evi.name, "error", err)
	}
	if st.linker == nil {
		return
	}
	if err := st.linker.DeleteStitchLink(ctx, st.eviIf); err != nil {
		v.in.log.Error("stitching link not deleted", "evpn_interface", st.eviIf, "interface", st.vrfIf, "error", err)
		return
	}
	v.in.log.Info("stitching link deleted", "evpn_interface", st.eviIf, "interface", st.vrfIf)
}

// claimGateway stitches the EVI into vrf through st (§3.7), on the EVI's
// goroutine: refused when the EVI is stitched into another VRF or through
// another port; idempotent for the same VRF and port. The link's devices,
// when st makes them, are made once the claim is known to be acceptable,
// and deleted again when the gateway port cannot be set.
func (in *instance) claimGateway(ctx context.Context, vrf *instance, st *stitching, gatewayIP netip.Addr) error {
	return in.do(ctx, newOp(ctx, false, func(ctx context.Context, in *instance) error {
		e, ok := in.kind.(*evi)
		if !ok || e.dp == nil {
			return inputErrorf("Instance %s is not an EVPN instance", in.ext)
		}
		if g := e.gateway; g != nil && (g.vrf != vrf || g.linuxif != st.eviIf) {
			return inputErrorf("EVPN instance %s already has a gateway port (%s, stitched into %s)", in.ext, g.linuxif, g.vrf.ext)
		}
		if st.linker != nil {
			if err := st.linker.CreateStitchLink(ctx, st.eviIf, st.vrfIf); err != nil {
				return fmt.Errorf("stitch %s into %s: link %s/%s: %w", in.ext, vrf.ext, st.eviIf, st.vrfIf, err)
			}
		}
		if err := e.dp.SetGatewayPort(ctx, st.eviIf, gatewayIP); err != nil {
			if st.linker != nil {
				if derr := st.linker.DeleteStitchLink(context.WithoutCancel(ctx), st.eviIf); derr != nil {
					in.log.Error("stitching link not deleted after a failed stitching", "evpn_interface", st.eviIf, "error", derr)
				}
			}
			return fmt.Errorf("stitch %s into %s: %w", in.ext, vrf.ext, err)
		}
		e.gateway = &gatewayPort{linuxif: st.eviIf, vrf: vrf}
		return nil
	}))
}

// releaseGateway undoes claimGateway, if vrf still holds the EVI's
// gateway port. The EVI lets the port go even when its dataplane fails to
// detach it: the VRF is leaving, and its link goes with it.
func (in *instance) releaseGateway(ctx context.Context, vrf *instance) error {
	return in.do(ctx, newOp(ctx, false, func(ctx context.Context, in *instance) error {
		e, ok := in.kind.(*evi)
		if !ok || e.gateway == nil || e.gateway.vrf != vrf {
			return nil
		}
		linuxif := e.gateway.linuxif
		e.gateway = nil
		if err := e.dp.GatewayPortDown(ctx, linuxif); err != nil {
			return fmt.Errorf("unstitch %s from %s: %w", in.ext, vrf.ext, err)
		}
		return nil
	}))
}
