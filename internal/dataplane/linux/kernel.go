//go:build linux

package linux

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// exists says whether err only reports that the object is already there,
// which an idempotent add counts as success.
func exists(err error) bool { return errors.Is(err, unix.EEXIST) }

// gone says whether err only reports that the object is absent, which an
// idempotent removal counts as success.
func gone(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENODEV)
}

// dumpRetries bounds the retries of a dump the kernel interrupted because
// the table changed meanwhile.
const dumpRetries = 5

// retryDump runs a netlink dump until it is not interrupted (bounded).
func retryDump[T any](dump func() ([]T, error)) ([]T, error) {
	var (
		out []T
		err error
	)
	for range dumpRetries {
		out, err = dump()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return out, err
		}
	}
	return out, err
}

// ipOf converts an address for netlink.
func ipOf(a netip.Addr) net.IP {
	if !a.IsValid() {
		return nil
	}
	return net.IP(a.AsSlice())
}

// addrOf converts a netlink address; the zero Addr for none.
func addrOf(ip net.IP) netip.Addr {
	if ip4 := ip.To4(); ip4 != nil {
		ip = ip4
	}
	a, _ := netip.AddrFromSlice(ip)
	return a
}

func family(a netip.Addr) int {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// zeroMAC is the all-zero MAC of the flooding entries.
var zeroMAC = net.HardwareAddr{0, 0, 0, 0, 0, 0}

// remoteFDB is the VXLAN device's own ("self") permanent entry sending mac
// to the VTEP dst with VNI vni: bridge fdb replace MAC dev VX dst PE vni N.
func remoteFDB(vx int, mac net.HardwareAddr, dst netip.Addr, vni uint32) *netlink.Neigh {
	return &netlink.Neigh{
		LinkIndex:    vx,
		Family:       unix.AF_BRIDGE,
		State:        netlink.NUD_PERMANENT,
		Flags:        netlink.NTF_SELF,
		HardwareAddr: mac,
		IP:           ipOf(dst),
		VNI:          int(vni),
	}
}

// localFDB is the bridge's static entry for a local MAC on port:
// bridge fdb replace MAC dev PORT master static.
func localFDB(port int, mac net.HardwareAddr) *netlink.Neigh {
	return &netlink.Neigh{
		LinkIndex:    port,
		Family:       unix.AF_BRIDGE,
		State:        netlink.NUD_NOARP,
		Flags:        netlink.NTF_MASTER,
		HardwareAddr: mac,
	}
}

// arpEntry is the permanent neighbour answering ARP/ND for ip on the
// VXLAN device: ip neigh replace IP lladdr MAC dev VX nud permanent.
func arpEntry(vx int, ip netip.Addr, mac net.HardwareAddr) *netlink.Neigh {
	return &netlink.Neigh{
		LinkIndex:    vx,
		Family:       family(ip),
		State:        netlink.NUD_PERMANENT,
		IP:           ipOf(ip),
		HardwareAddr: mac,
	}
}

// rawSocket sends the few rtnetlink requests the netlink package has no
// call for (bridge STP state and forward delay), in the driver's namespace.
type rawSocket struct {
	sockets map[int]*nl.SocketHandle
}

func (r rawSocket) request(proto, flags int) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(proto, flags)
	req.Sockets = r.sockets
	return req
}

// setBridgeAttr sets one u32 IFLA_BR_* attribute of bridge idx.
func (r rawSocket) setBridgeAttr(idx, attr int, v uint32) error {
	req := r.request(unix.RTM_NEWLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(idx)
	req.AddData(msg)
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("bridge"))
	data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	data.AddRtAttr(attr, nl.Uint32Attr(v))
	req.AddData(info)
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}

// bridgeTimers reads bridge idx's STP state and forward delay (in the
// kernel's clock ticks).
func (r rawSocket) bridgeTimers(idx int) (stp, forwardDelay uint32, err error) {
	req := r.request(unix.RTM_GETLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(idx)
	req.AddData(msg)
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
	if err != nil {
		return 0, 0, err
	}
	if len(msgs) != 1 || len(msgs[0]) < unix.SizeofIfInfomsg {
		return 0, 0, fmt.Errorf("link %d: unexpected answer to RTM_GETLINK", idx)
	}
	found := 0
	attrs, err := nl.ParseRouteAttr(msgs[0][unix.SizeofIfInfomsg:])
	if err != nil {
		return 0, 0, err
	}
	for _, a := range attrs {
		if a.Attr.Type != unix.IFLA_LINKINFO {
			continue
		}
		infos, err := nl.ParseRouteAttr(a.Value)
		if err != nil {
			return 0, 0, err
		}
		for _, i := range infos {
			if i.Attr.Type != nl.IFLA_INFO_DATA {
				continue
			}
			data, err := nl.ParseRouteAttr(i.Value)
			if err != nil {
				return 0, 0, err
			}
			for _, d := range data {
				if len(d.Value) < 4 {
					continue
				}
				switch int(d.Attr.Type) {
				case nl.IFLA_BR_STP_STATE:
					stp = nl.NativeEndian().Uint32(d.Value)
					found++
				case nl.IFLA_BR_FORWARD_DELAY:
					forwardDelay = nl.NativeEndian().Uint32(d.Value)
					found++
				}
			}
		}
	}
	if found != 2 {
		return 0, 0, fmt.Errorf("link %d is not a bridge", idx)
	}
	return stp, forwardDelay, nil
}

// bridgeNoSTP sets STP off, then forward delay 0 (the kernel refuses a
// delay under 2 s while STP is on), unless they already are.
func (r rawSocket) bridgeNoSTP(idx int) error {
	stp, fd, err := r.bridgeTimers(idx)
	if err != nil {
		return err
	}
	if stp != 0 {
		if err := r.setBridgeAttr(idx, nl.IFLA_BR_STP_STATE, 0); err != nil {
			return fmt.Errorf("set STP off: %w", err)
		}
	}
	if fd != 0 {
		if err := r.setBridgeAttr(idx, nl.IFLA_BR_FORWARD_DELAY, 0); err != nil {
			return fmt.Errorf("set forward delay 0: %w", err)
		}
	}
	return nil
}
