package neutronapi

import (
	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
)

// Relations between resources, found by scanning the snapshot: the sizes
// this server handles (thousands of ports) make a scan per write cheap,
// and nothing needs to be kept in step.

// subnetsOf is a network's subnets, oldest first.
func subnetsOf(s *model.Snapshot, network string) []*model.Subnet {
	return sortedBy(s.Subnets, func(sn *model.Subnet) bool { return sn.NetworkID == network },
		byCreation(func(sn *model.Subnet) *model.Resource { return &sn.Resource }))
}

// portsOn is a network's ports, oldest first.
func portsOn(s *model.Snapshot, network string) []*model.Port {
	return sortedBy(s.Ports, func(p *model.Port) bool { return p.NetworkID == network },
		byCreation(func(p *model.Port) *model.Resource { return &p.Resource }))
}

// interfacesOf is a router's interface ports (every router-interface
// owner, control-plane D19), oldest first.
func interfacesOf(s *model.Snapshot, router string) []*model.Port {
	return sortedBy(s.Ports, func(p *model.Port) bool { return p.DeviceID == router && model.IsRouterInterface(p.DeviceOwner) },
		byCreation(func(p *model.Port) *model.Resource { return &p.Resource }))
}

// gatewayPortOf is a router's external gateway port, or nil.
func gatewayPortOf(s *model.Snapshot, router string) *model.Port {
	for _, p := range s.Ports {
		if p.DeviceID == router && p.DeviceOwner == model.OwnerRouterGateway {
			return p
		}
	}
	return nil
}

// connectedNetworks are the networks a router has interfaces on (its
// gateway excluded, §2.5).
func connectedNetworks(s *model.Snapshot, router string) map[string]bool {
	out := map[string]bool{}
	for _, p := range interfacesOf(s, router) {
		out[p.NetworkID] = true
	}
	return out
}

// routersOn are the routers with an interface on a network.
func routersOn(s *model.Snapshot, network string) map[string]bool {
	out := map[string]bool{}
	for _, p := range s.Ports {
		if p.NetworkID == network && model.IsRouterInterface(p.DeviceOwner) && p.DeviceID != "" {
			out[p.DeviceID] = true
		}
	}
	return out
}

// netAssocBGPVPNs are the BGPVPNs a network is associated with.
func netAssocBGPVPNs(s *model.Snapshot, network string) []*model.BGPVPN {
	var out []*model.BGPVPN
	for _, na := range s.NetworkAssociations {
		if na.NetworkID == network {
			if b := s.BGPVPNs[na.BGPVPNID]; b != nil {
				out = append(out, b)
			}
		}
	}
	return out
}

// routerAssocBGPVPNs are the BGPVPNs a router is associated with.
func routerAssocBGPVPNs(s *model.Snapshot, router string) []*model.BGPVPN {
	var out []*model.BGPVPN
	for _, ra := range s.RouterAssociations {
		if ra.RouterID == router {
			if b := s.BGPVPNs[ra.BGPVPNID]; b != nil {
				out = append(out, b)
			}
		}
	}
	return out
}

// deletePortCascade deletes a port with its port associations (upstream's
// database cascade).
func deletePortCascade(w *txn, id string) {
	for _, pa := range w.s.PortAssociations {
		if pa.PortID == id {
			w.deletePortAssoc(pa.ID)
		}
	}
	w.deletePort(id)
}
