package dummy

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	"github.com/bagpipe-go/bagpipe/internal/dataplane"
)

// instance is the state of one VPN instance's dataplane. Its fields but d
// and cfg are guarded by d.mu.
type instance struct {
	d   *Driver
	cfg dataplane.InstanceConfig

	closed      bool
	vifs        map[vifKey]dataplane.Port
	prefixes    map[netip.Prefix][]dataplane.RemotePrefix // next hops of each prefix
	macs        map[string][]dataplane.RemoteMAC          // next hops of each MAC, by MAC text
	bum         []dataplane.BUMEndpoint
	gateways    map[string]netip.Addr // gateway port → gateway IP
	fallback    *dataplane.Fallback
	classifiers map[dataplane.Classifier]uint32 // → redirect instance id
}

type vifKey struct {
	mac string
	ip  netip.Addr
}

// hop is the identity of a next hop: a removal takes away the entry with
// the same one, whatever its other fields (encapsulations, order).
type hop struct {
	nh    netip.Addr
	label uint32
}

func (i *instance) resetLocked() {
	i.vifs = make(map[vifKey]dataplane.Port)
	i.prefixes = make(map[netip.Prefix][]dataplane.RemotePrefix)
	i.macs = make(map[string][]dataplane.RemoteMAC)
	i.bum = nil
	i.gateways = make(map[string]netip.Addr)
	i.fallback = nil
	i.classifiers = make(map[dataplane.Classifier]uint32)
}

// call records c as made on this instance and applies it.
func (i *instance) call(ctx context.Context, c Call, apply func(c Call) error) error {
	c.Instance, c.ExternalID = i.cfg.ID, i.cfg.ExternalID
	return i.d.do(ctx, i, c, apply)
}

// VifPlugged implements dataplane.Instance.
func (i *instance) VifPlugged(ctx context.Context, p dataplane.Port) error {
	return i.call(ctx, Call{Op: OpVifPlugged, Port: &p}, func(c Call) error {
		i.vifs[vifKey{c.Port.MAC.String(), c.Port.IP}] = *c.Port
		return nil
	})
}

// VifUnplugged implements dataplane.Instance; an unknown endpoint is no
// error.
func (i *instance) VifUnplugged(ctx context.Context, p dataplane.Port, lastEndpoint bool) error {
	return i.call(ctx, Call{Op: OpVifUnplugged, Port: &p, LastEndpoint: lastEndpoint}, func(c Call) error {
		delete(i.vifs, vifKey{c.Port.MAC.String(), c.Port.IP})
		return nil
	})
}

// NeedsCleanupAssist implements dataplane.Instance.
func (i *instance) NeedsCleanupAssist() bool { return i.d.assist }

// Cleanup implements dataplane.Instance: the instance and its state are
// gone; a second call is recorded and succeeds.
func (i *instance) Cleanup(ctx context.Context) error {
	return i.call(ctx, Call{Op: OpCleanup}, func(Call) error {
		if i.closed {
			return nil
		}
		i.closed = true
		i.resetLocked()
		delete(i.d.live, i.cfg.ID)
		return nil
	})
}

// LookingGlass implements dataplane.Instance: the original dummy showed no
// driver-specific item.
func (i *instance) LookingGlass() []dataplane.LGItem { return nil }

// evi is an E-VPN instance.
type evi struct{ *instance }

var _ dataplane.EVPNInstance = evi{}

// SetupRemoteMAC implements dataplane.EVPNInstance.
func (e evi) SetupRemoteMAC(ctx context.Context, r dataplane.RemoteMAC) error {
	return e.call(ctx, Call{Op: OpSetupRemoteMAC, MAC: &r}, func(c Call) error {
		k := c.MAC.MAC.String()
		e.macs[k] = setHop(e.macs[k], *c.MAC, e.d.ecmp, macHop)
		return nil
	})
}

// RemoveRemoteMAC implements dataplane.EVPNInstance.
func (e evi) RemoveRemoteMAC(ctx context.Context, r dataplane.RemoteMAC) error {
	return e.call(ctx, Call{Op: OpRemoveRemoteMAC, MAC: &r}, func(c Call) error {
		k := c.MAC.MAC.String()
		removeHop(e.macs, k, *c.MAC, macHop)
		return nil
	})
}

// AddBUMEndpoint implements dataplane.EVPNInstance.
func (e evi) AddBUMEndpoint(ctx context.Context, b dataplane.BUMEndpoint) error {
	return e.call(ctx, Call{Op: OpAddBUMEndpoint, BUM: &b}, func(c Call) error {
		e.bum = setHop(e.bum, *c.BUM, true, bumHop)
		return nil
	})
}

// RemoveBUMEndpoint implements dataplane.EVPNInstance.
func (e evi) RemoveBUMEndpoint(ctx context.Context, b dataplane.BUMEndpoint) error {
	return e.call(ctx, Call{Op: OpRemoveBUMEndpoint, BUM: &b}, func(c Call) error {
		h := bumHop(*c.BUM)
		e.bum = slices.DeleteFunc(e.bum, func(x dataplane.BUMEndpoint) bool { return bumHop(x) == h })
		return nil
	})
}

// SetGatewayPort implements dataplane.EVPNInstance.
func (e evi) SetGatewayPort(ctx context.Context, linuxif string, gatewayIP netip.Addr) error {
	return e.call(ctx, Call{Op: OpSetGatewayPort, GatewayIf: linuxif, GatewayIP: gatewayIP}, func(c Call) error {
		e.gateways[c.GatewayIf] = c.GatewayIP
		return nil
	})
}

// GatewayPortDown implements dataplane.EVPNInstance.
func (e evi) GatewayPortDown(ctx context.Context, linuxif string) error {
	return e.call(ctx, Call{Op: OpGatewayPortDown, GatewayIf: linuxif}, func(c Call) error {
		delete(e.gateways, c.GatewayIf)
		return nil
	})
}

// vrf is an IP-VPN instance.
type vrf struct{ *instance }

var _ dataplane.IPVPNInstance = vrf{}

// UpdateFallback implements dataplane.IPVPNInstance.
func (v vrf) UpdateFallback(ctx context.Context, f dataplane.Fallback) error {
	return v.call(ctx, Call{Op: OpUpdateFallback, Fallback: &f}, func(c Call) error {
		v.fallback = c.Fallback
		return nil
	})
}

// SetupRemotePrefix implements dataplane.IPVPNInstance.
func (v vrf) SetupRemotePrefix(ctx context.Context, r dataplane.RemotePrefix) error {
	return v.call(ctx, Call{Op: OpSetupRemotePrefix, Prefix: &r}, func(c Call) error {
		if !c.Prefix.Prefix.IsValid() {
			return fmt.Errorf("setup remote prefix: invalid prefix %s", c.Prefix.Prefix)
		}
		p := c.Prefix.Prefix
		v.prefixes[p] = setHop(v.prefixes[p], *c.Prefix, v.d.ecmp, prefixHop)
		return nil
	})
}

// RemoveRemotePrefix implements dataplane.IPVPNInstance.
func (v vrf) RemoveRemotePrefix(ctx context.Context, r dataplane.RemotePrefix) error {
	return v.call(ctx, Call{Op: OpRemoveRemotePrefix, Prefix: &r}, func(c Call) error {
		removeHop(v.prefixes, c.Prefix.Prefix, *c.Prefix, prefixHop)
		return nil
	})
}

// AddTrafficClassifier implements dataplane.IPVPNInstance (the original
// dummy refused it as not implemented).
func (v vrf) AddTrafficClassifier(ctx context.Context, cl dataplane.Classifier, redirectTo uint32) error {
	return v.call(ctx, Call{Op: OpAddTrafficClassifier, Classifier: &cl, RedirectTo: redirectTo}, func(c Call) error {
		if err := c.Classifier.Validate(); err != nil {
			return err
		}
		v.classifiers[*c.Classifier] = c.RedirectTo
		return nil
	})
}

// RemoveTrafficClassifier implements dataplane.IPVPNInstance.
func (v vrf) RemoveTrafficClassifier(ctx context.Context, cl dataplane.Classifier) error {
	return v.call(ctx, Call{Op: OpRemoveTrafficClassifier, Classifier: &cl}, func(c Call) error {
		delete(v.classifiers, *c.Classifier)
		return nil
	})
}

func prefixHop(r dataplane.RemotePrefix) hop { return hop{r.NextHop, r.Label} }
func macHop(r dataplane.RemoteMAC) hop       { return hop{r.NextHop, r.Label} }
func bumHop(b dataplane.BUMEndpoint) hop     { return hop{b.NextHop, b.Label} }

// setHop installs v among an entry's next hops: with ecmp it replaces the
// one with the same identity or is added; without, it replaces them all.
func setHop[T any](hops []T, v T, ecmp bool, id func(T) hop) []T {
	if !ecmp {
		return []T{v}
	}
	h := id(v)
	for n, x := range hops {
		if id(x) == h {
			hops[n] = v
			return hops
		}
	}
	return append(hops, v)
}

// removeHop removes the next hop of entry k with v's identity, and the
// entry with its last next hop.
func removeHop[K comparable, T any](m map[K][]T, k K, v T, id func(T) hop) {
	h := id(v)
	hops := slices.DeleteFunc(m[k], func(x T) bool { return id(x) == h })
	if len(hops) == 0 {
		delete(m, k)
		return
	}
	m[k] = hops
}

// stateLocked renders the instance (see Driver.InstanceState).
func (i *instance) stateLocked() []string {
	vni := i.d.vniLabels()
	var lines []string
	for _, p := range i.vifs {
		lines = append(lines, "vif "+portText(p))
	}
	for _, hops := range i.prefixes {
		for _, r := range hops {
			lines = append(lines, "remote "+prefixText(r))
		}
	}
	for _, hops := range i.macs {
		for _, r := range hops {
			lines = append(lines, "mac "+macText(r, vni))
		}
	}
	for _, b := range i.bum {
		lines = append(lines, "bum "+bumText(b, vni))
	}
	for ifname, ip := range i.gateways {
		lines = append(lines, "gateway "+ifname+" "+addrText(ip))
	}
	if i.fallback != nil {
		lines = append(lines, "fallback "+fallbackText(*i.fallback))
	}
	for cl, to := range i.classifiers {
		lines = append(lines, fmt.Sprintf("classifier %s redirect %d", cl, to))
	}
	slices.Sort(lines)
	return append([]string{"instance " + instanceText(i.cfg)}, lines...)
}
