package blaster

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
)

// maxNLRIOctets keeps each UPDATE under the 4096-octet limit with room for
// the header and the other attributes.
const maxNLRIOctets = 3800

// Updates packs nlris into as few UPDATE messages as fit 4096 octets each,
// all with next hop nh and the given attributes (ORIGIN and AS_PATH are
// added when absent).
func Updates(family bgp.Family, nlris []gb.NLRI, nh netip.Addr, attrs ...gb.PathAttributeInterface) ([][]byte, error) {
	base := withMandatory(attrs)
	var out [][]byte
	var batch []gb.PathNLRI
	size := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		mp, err := gb.NewPathAttributeMpReachNLRI(family, batch, nh)
		if err != nil {
			return fmt.Errorf("MP_REACH: %w", err)
		}
		all := append([]gb.PathAttributeInterface{mp}, base...)
		b, err := gb.NewBGPUpdateMessage(nil, all, nil).Serialize()
		if err != nil {
			return fmt.Errorf("UPDATE: %w", err)
		}
		out = append(out, b)
		batch, size = nil, 0
		return nil
	}
	for _, n := range nlris {
		l := n.Len()
		if size+l > maxNLRIOctets {
			if err := flush(); err != nil {
				return nil, err
			}
		}
		batch = append(batch, gb.PathNLRI{NLRI: n})
		size += l
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return out, nil
}

// Withdrawals packs nlris into MP_UNREACH UPDATE messages.
func Withdrawals(family bgp.Family, nlris []gb.NLRI) ([][]byte, error) {
	var out [][]byte
	for start := 0; start < len(nlris); {
		var batch []gb.PathNLRI
		size := 0
		for start < len(nlris) && size+nlris[start].Len() <= maxNLRIOctets {
			batch = append(batch, gb.PathNLRI{NLRI: nlris[start]})
			size += nlris[start].Len()
			start++
		}
		mp, err := gb.NewPathAttributeMpUnreachNLRI(family, batch)
		if err != nil {
			return nil, fmt.Errorf("MP_UNREACH: %w", err)
		}
		b, err := gb.NewBGPUpdateMessage(nil, []gb.PathAttributeInterface{mp}, nil).Serialize()
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

func withMandatory(attrs []gb.PathAttributeInterface) []gb.PathAttributeInterface {
	var hasOrigin, hasPath bool
	for _, a := range attrs {
		switch a.GetType() {
		case gb.BGP_ATTR_TYPE_ORIGIN:
			hasOrigin = true
		case gb.BGP_ATTR_TYPE_AS_PATH:
			hasPath = true
		}
	}
	out := append([]gb.PathAttributeInterface(nil), attrs...)
	if !hasOrigin {
		out = append(out, gb.NewPathAttributeOrigin(gb.BGP_ORIGIN_ATTR_TYPE_IGP))
	}
	if !hasPath {
		out = append(out, gb.NewPathAttributeAsPath(nil))
	}
	return out
}

// EVPNMACRoutes makes n distinct E-VPN type-2 NLRIs (MAC and IPv4 per
// route, VNI-style label) under one RD.
func EVPNMACRoutes(n int, rd bgp.RD, vni uint32) ([]gb.NLRI, error) {
	out := make([]gb.NLRI, 0, n)
	for i := range n {
		mac := net.HardwareAddr{0x02, 0x42, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}
		var ip [4]byte
		binary.BigEndian.PutUint32(ip[:], 0x0a000000+uint32(i))
		nl, err := bgp.EVPNMACIP(rd, 0, mac, netip.AddrFrom4(ip), bgp.EVPNLabel(vni, true))
		if err != nil {
			return nil, err
		}
		out = append(out, nl)
	}
	return out, nil
}

// VPNv4Routes makes n distinct VPNv4 /32 NLRIs under one RD.
func VPNv4Routes(n int, rd bgp.RD, label uint32) ([]gb.NLRI, error) {
	out := make([]gb.NLRI, 0, n)
	for i := range n {
		var ip [4]byte
		binary.BigEndian.PutUint32(ip[:], 0x0a000000+uint32(i))
		nl, _, err := bgp.VPNPrefix(rd, netip.PrefixFrom(netip.AddrFrom4(ip), 32), label)
		if err != nil {
			return nil, err
		}
		out = append(out, nl)
	}
	return out, nil
}
