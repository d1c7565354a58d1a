package vpnapi

import (
	"github.com/bagpipe-go/bagpipe/internal/dataplane"
	"github.com/bagpipe-go/bagpipe/internal/vpn"
	"github.com/bagpipe-go/bagpipe/internal/vpn/request"
)

// attachParams maps a validated attach body onto the manager's parameters.
// Texts the original echoes (MAC, IP, the local_port object) travel with the
// parsed values so that messages and the looking glass show them as sent.
func attachParams(a *request.Attach) vpn.AttachParams {
	p := vpn.AttachParams{
		Type:                  dataplane.VPNType(a.VPNType),
		ExternalID:            a.InstanceID,
		MAC:                   a.MAC,
		MACString:             a.MACString,
		IP:                    a.IP,
		IPString:              a.IPString,
		LocalPort:             localPort(a.LocalPort),
		LocalPortRepr:         a.LocalPort.Repr(),
		ImportRTs:             a.ImportRTs,
		ExportRTs:             a.ExportRTs,
		GatewayIP:             a.GatewayAddr,
		AdvertiseSubnet:       a.AdvertiseSubnet,
		Direction:             dataplane.Direction(a.Direction),
		LBConsistentHashOrder: a.LBConsistentHashOrder,
		VNI:                   a.VNI,
		LinuxBridge:           a.LinuxBridge,
		Description:           a.Description,
		InstanceDescription:   a.InstanceDescription,
		Readvertise:           readvertise(a.Readvertise),
		AttractTraffic:        attractTraffic(a.AttractTraffic),
		Fallback:              fallback(a.Fallback),
	}
	// The manager's 0 is "not given": LOCAL_PREF 100 on the wire and null
	// in the looking glass, which is also what the original made of 0.
	if a.LocalPref != nil {
		p.LocalPref = *a.LocalPref
	}
	return p
}

// detachParams maps a validated detach body onto the manager's parameters.
func detachParams(d *request.Detach) vpn.DetachParams {
	return vpn.DetachParams{
		Type:          dataplane.VPNType(d.VPNType),
		ExternalID:    d.InstanceID,
		MAC:           d.MAC,
		MACString:     d.MACString,
		IP:            d.IP,
		IPString:      d.IPString,
		LocalPort:     localPort(d.LocalPort),
		LocalPortRepr: d.LocalPort.Repr(),
	}
}

// localPort converts the API's local_port into the dataplane's; numbers
// not given are 0, as dataplane.LocalPort has them.
func localPort(l request.LocalPort) dataplane.LocalPort {
	out := dataplane.LocalPort{LinuxIf: l.LinuxIf, VLAN: derefInt(l.VLAN)}
	if o := l.OVS; o != nil {
		out.OVS = &dataplane.OVSPort{
			Plugged:        o.Plugged,
			PortNumber:     derefInt(o.PortNumber),
			PortName:       o.PortName,
			ToVMPortNumber: derefInt(o.ToVMPortNumber),
			ToVMPortName:   o.ToVMPortName,
			VLAN:           derefInt(o.VLAN),
		}
	}
	if e := l.EVPN; e != nil {
		out.EVPN = &dataplane.EVPNStitch{ID: e.ID, OVSPortName: e.OVSPortName}
	}
	return out
}

func readvertise(r *request.Readvertise) *vpn.Readvertise {
	if r == nil {
		return nil
	}
	return &vpn.Readvertise{FromRTs: r.FromRTs, ToRTs: r.ToRTs}
}

func attractTraffic(a *request.AttractTraffic) *vpn.AttractTraffic {
	if a == nil {
		return nil
	}
	out := &vpn.AttractTraffic{
		RedirectRTs:                  a.RedirectRTs,
		ToRTs:                        a.ToRTs,
		HasStaticDestinationPrefixes: a.HasStaticDestinationPrefixes,
		StaticDestinationPrefixes:    a.StaticDestinationPrefixes,
	}
	// A missing classifier stays nil: the manager refuses the creation
	// with the original's message.
	if c := a.Classifier; c != nil {
		dc := classifier(c)
		out.Classifier, out.ClassifierRaw = &dc, c.Raw
	}
	return out
}

// classifier converts attract_traffic's classifier; a protocol given as
// null or "" matches any protocol (0).
func classifier(c *request.Classifier) dataplane.Classifier {
	out := dataplane.Classifier{SourcePrefix: c.SourcePrefix, DestinationPrefix: c.DestinationPrefix}
	if p := c.SourcePort; p != nil {
		out.SourcePorts = dataplane.PortRange{First: p.Low, Last: p.High}
	}
	if p := c.DestinationPort; p != nil {
		out.DestinationPorts = dataplane.PortRange{First: p.Low, Last: p.High}
	}
	if c.HasProtocol {
		out.Protocol = c.Protocol
	}
	return out
}

func fallback(f *request.Fallback) *dataplane.Fallback {
	if f == nil {
		return nil
	}
	return &dataplane.Fallback{
		SrcMAC:        f.SrcMAC,
		DstMAC:        f.DstMAC,
		OVSPortName:   f.OVSPortName,
		OVSPortNumber: derefInt(f.OVSPortNumber),
	}
}

func derefInt[T uint16 | uint32](p *T) int {
	if p == nil {
		return 0
	}
	return int(*p)
}
