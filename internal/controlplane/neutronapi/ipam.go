package neutronapi

import (
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
)

// IPv6 address modes whose addresses derive from the MAC (EUI-64).
const (
	ipv6SLAAC     = "slaac"
	ipv6Stateful  = "dhcpv6-stateful"
	ipv6Stateless = "dhcpv6-stateless"
)

func isAutoAddress(sn *model.Subnet) bool {
	return sn.IPVersion == 6 && (sn.IPv6AddressMode == ipv6SLAAC || sn.IPv6AddressMode == ipv6Stateless)
}

// lastAddr is the highest address of p (the IPv4 broadcast address).
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// hostRange is the usable range of p: without the network address (and,
// on IPv4 of /30 and wider, the broadcast address); /31, /32 and /128 are
// usable whole.
func hostRange(p netip.Prefix) (first, last netip.Addr) {
	first, last = p.Masked().Addr(), lastAddr(p)
	max := first.BitLen()
	if p.Bits() >= max-1 {
		return first, last
	}
	first = first.Next()
	if first.Is4() {
		last = last.Prev()
	}
	return first, last
}

// defaultGateway is Neutron's default: the first host address (none for
// the smallest prefixes).
func defaultGateway(p netip.Prefix) netip.Addr {
	if p.Bits() >= p.Addr().BitLen()-1 {
		return netip.Addr{}
	}
	return p.Masked().Addr().Next()
}

// inRange says whether a is in [r.Start, r.End].
func inRange(a netip.Addr, r model.IPRange) bool {
	return a.Compare(r.Start) >= 0 && a.Compare(r.End) <= 0
}

// defaultPools is the host range without the gateway.
func defaultPools(p netip.Prefix, gw netip.Addr) []model.IPRange {
	first, last := hostRange(p)
	r := model.IPRange{Start: first, End: last}
	if !gw.IsValid() || !inRange(gw, r) {
		return []model.IPRange{r}
	}
	var out []model.IPRange
	if gw.Compare(first) > 0 {
		out = append(out, model.IPRange{Start: first, End: gw.Prev()})
	}
	if gw.Compare(last) < 0 {
		out = append(out, model.IPRange{Start: gw.Next(), End: last})
	}
	return out
}

// eui64 is the SLAAC address of mac in a /64.
func eui64(p netip.Prefix, mac string) (netip.Addr, bool) {
	hw, err := net.ParseMAC(mac)
	if err != nil || len(hw) != 6 || p.Bits() != 64 || !p.Addr().Is6() {
		return netip.Addr{}, false
	}
	b := p.Masked().Addr().As16()
	b[8], b[9], b[10], b[11] = hw[0]^0x02, hw[1], hw[2], 0xff
	b[12], b[13], b[14], b[15] = 0xfe, hw[3], hw[4], hw[5]
	return netip.AddrFrom16(b), true
}

// usedIPs are the addresses allocated on a network's subnets, but those of
// port except.
func usedIPs(s *model.Snapshot, network, except string) map[string]map[netip.Addr]bool {
	out := map[string]map[netip.Addr]bool{}
	for _, p := range s.Ports {
		if p.NetworkID != network || p.ID == except {
			continue
		}
		for _, f := range p.FixedIPs {
			if out[f.SubnetID] == nil {
				out[f.SubnetID] = map[netip.Addr]bool{}
			}
			out[f.SubnetID][f.IP] = true
		}
	}
	return out
}

// freeIP is the lowest address of sn's pools neither used nor the
// gateway. Each step skips one taken address, so the loop is bounded by
// the number of allocations plus the pools' count.
func freeIP(sn *model.Subnet, used map[netip.Addr]bool) (netip.Addr, bool) {
	for _, pool := range sn.AllocationPools {
		for a := pool.Start; a.IsValid() && a.Compare(pool.End) <= 0; a = a.Next() {
			if !used[a] && a != sn.GatewayIP {
				return a, true
			}
		}
	}
	return netip.Addr{}, false
}

// ipRequest is one fixed_ips entry: a subnet, an address, or both.
type ipRequest struct {
	subnetID string
	ip       netip.Addr
}

// readFixedIPs reads fixed_ips: [{"subnet_id": ..}, {"ip_address": ..}].
func readFixedIPs(at *attrs) ([]ipRequest, bool) { return readFixedIPsKey(at, "fixed_ips") }

// readFixedIPsKey reads a list shaped like fixed_ips under key.
func readFixedIPsKey(at *attrs, key string) ([]ipRequest, bool) {
	objs, present := at.objects(key, false)
	if !present || at.err != nil {
		return nil, present
	}
	out := make([]ipRequest, 0, len(objs))
	for _, o := range objs {
		if err := onlyKeys(key, o, "subnet_id", "ip_address"); err != nil {
			at.fail(err)
			return nil, true
		}
		var req ipRequest
		if v, ok := o["subnet_id"]; ok {
			s, isStr := v.(string)
			if !isStr || s == "" {
				at.fail(invalidInput(key, "'%s' is not a valid subnet id", short(v)))
				return nil, true
			}
			req.subnetID = s
		}
		if v, ok := o["ip_address"]; ok {
			s, _ := v.(string)
			ip, err := netip.ParseAddr(s)
			if err != nil || ip.Zone() != "" {
				at.fail(invalidInput(key, "'%s' is not a valid IP address", short(v)))
				return nil, true
			}
			req.ip = ip.Unmap()
		}
		if req.subnetID == "" && !req.ip.IsValid() {
			at.fail(invalidInput(key, "each entry needs a subnet_id or an ip_address"))
			return nil, true
		}
		out = append(out, req)
	}
	return out, true
}

func ipGenerationFailure(network string) error {
	return conflict("IpAddressGenerationFailure", "no free address left on network %s", network)
}

// assignIPs computes a port's fixed IPs: from the requests when given
// (keeping the port's current address on a subnet asked for by id only),
// else automatically: one IPv4 address from the first IPv4 subnet with
// room, one from the first stateful IPv6 subnet, and the EUI-64 address
// of every SLAAC subnet (not for router interfaces, which take fixed
// addresses).
func assignIPs(s *model.Snapshot, network, portID, mac, owner string, reqs []ipRequest, given bool, current []model.FixedIP) ([]model.FixedIP, error) {
	used := usedIPs(s, network, portID)
	taken := map[netip.Addr]bool{}
	var out []model.FixedIP
	add := func(sn *model.Subnet, ip netip.Addr) {
		out = append(out, model.FixedIP{SubnetID: sn.ID, IP: ip})
		taken[ip] = true
		if used[sn.ID] == nil {
			used[sn.ID] = map[netip.Addr]bool{}
		}
		used[sn.ID][ip] = true
	}
	subnets := subnetsOf(s, network)
	if !given {
		v4Tried, v6Stateful := false, false
		for _, sn := range subnets {
			switch {
			case sn.IPVersion == 4:
				if hasIPv4(out) {
					continue
				}
				v4Tried = true
				if ip, ok := freeIP(sn, used[sn.ID]); ok {
					add(sn, ip)
				}
			case isAutoAddress(sn):
				if model.IsRouterInterface(owner) {
					continue
				}
				if ip, ok := eui64(sn.CIDR, mac); ok && !used[sn.ID][ip] {
					add(sn, ip)
				}
			case !v6Stateful:
				if ip, ok := freeIP(sn, used[sn.ID]); ok {
					add(sn, ip)
					v6Stateful = true
				}
			}
		}
		if v4Tried && !hasIPv4(out) {
			return nil, ipGenerationFailure(network)
		}
		return out, nil
	}
	for _, req := range reqs {
		var sn *model.Subnet
		if req.subnetID != "" {
			sn = s.Subnets[req.subnetID]
			if sn == nil || sn.NetworkID != network {
				return nil, invalidOperation("fixed_ips: subnet %s is not a subnet of network %s", req.subnetID, network)
			}
		}
		if req.ip.IsValid() {
			if sn == nil {
				for _, c := range subnets {
					if c.CIDR.Contains(req.ip) {
						sn = c
						break
					}
				}
				if sn == nil {
					return nil, newError(http.StatusBadRequest, "InvalidIpForNetwork", "%s is in no subnet of the network", req.ip)
				}
			}
			first, last := hostRange(sn.CIDR)
			if !sn.CIDR.Contains(req.ip) || req.ip.Compare(first) < 0 || req.ip.Compare(last) > 0 {
				return nil, newError(http.StatusBadRequest, "InvalidIpForSubnet", "%s is not a host address of subnet %s", req.ip, sn.ID)
			}
			if taken[req.ip] {
				return nil, invalidInput("fixed_ips", "duplicate IP address %s", req.ip)
			}
			if used[sn.ID][req.ip] {
				return nil, conflict("IpAddressAlreadyAllocated", "%s is already allocated on subnet %s", req.ip, sn.ID)
			}
			add(sn, req.ip)
			continue
		}
		kept := false
		for _, f := range current {
			if f.SubnetID == sn.ID && !taken[f.IP] {
				add(sn, f.IP)
				kept = true
				break
			}
		}
		if kept {
			continue
		}
		if isAutoAddress(sn) {
			ip, ok := eui64(sn.CIDR, mac)
			if !ok || taken[ip] || used[sn.ID][ip] {
				return nil, ipGenerationFailure(network)
			}
			add(sn, ip)
			continue
		}
		ip, ok := freeIP(sn, mergedUsed(used[sn.ID], taken))
		if !ok {
			return nil, ipGenerationFailure(network)
		}
		add(sn, ip)
	}
	return out, nil
}

func mergedUsed(a, b map[netip.Addr]bool) map[netip.Addr]bool {
	out := make(map[netip.Addr]bool, len(a)+len(b))
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

func hasIPv4(ips []model.FixedIP) bool {
	for _, f := range ips {
		if f.IP.Is4() {
			return true
		}
	}
	return false
}

// newMAC is a random MAC with OpenStack's prefix fa:16:3e.
func newMAC() string {
	var b [3]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand documents it)
	return fmt.Sprintf("fa:16:3e:%02x:%02x:%02x", b[0], b[1], b[2])
}

// parseMAC validates a client's MAC: six bytes, unicast, not zero;
// returned lower case, colon separated.
func parseMAC(s string) (string, bool) {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 || hw[0]&1 == 1 || strings.Trim(hw.String(), "0:") == "" {
		return "", false
	}
	return hw.String(), true
}

// macInUse says whether another port of the network has mac.
func macInUse(s *model.Snapshot, network, mac, except string) bool {
	for _, p := range s.Ports {
		if p.NetworkID == network && p.MAC == mac && p.ID != except {
			return true
		}
	}
	return false
}
