package desired

import (
	"errors"
	"fmt"
	"strconv"
)

// DefaultAS is the AS number of the ML2 E-VPN route targets when none is
// configured (upstream's [ml2_bagpipe_extension] as_number default).
const DefaultAS = 64512

// maxVNI is the largest VXLAN network identifier (24 bits).
const maxVNI = 1<<24 - 1

// Flavour is how a host's agent plugs ports into bagpipe-bgp (§4.2). It
// matters to the desired state in one place: on Linux bridge hosts, an
// IP-VPN attachment of a port that also has an E-VPN attachment is plugged
// through the E-VPN instance (stitching, §4.3 g); on OVS hosts it is not.
type Flavour int

// Host flavours.
const (
	FlavourOVS Flavour = iota
	FlavourLinuxBridge
)

func (f Flavour) String() string {
	switch f {
	case FlavourOVS:
		return "ovs"
	case FlavourLinuxBridge:
		return "linuxbridge"
	}
	return "flavour(" + strconv.Itoa(int(f)) + ")"
}

// Config is the server-side configuration of the computation.
type Config struct {
	// ASNumbers are the AS numbers of the ML2 E-VPN route targets
	// "<AS>:<VNI>", one RT per AS (several during an AS migration). Empty
	// means [DefaultAS].
	ASNumbers []uint32
	// ML2EVPN turns the ML2 E-VPN mechanism on: vxlan networks are
	// realised as E-VPN instances on every host with ports on them.
	ML2EVPN bool
	// Flavour tells each host's flavour; nil means every host is OVS.
	Flavour func(host string) Flavour
	// AdvertiseExtraRoutes implements the advertise_extra_routes flag of
	// router associations (control-plane §2.8, D20): a router's extra
	// routes whose next hop is a port on one of its connected networks
	// are advertised from that port. Off, the flag is stored and ignored,
	// as upstream does.
	AdvertiseExtraRoutes bool
}

// ErrVNITooLarge says a VNI does not fit in the "<AS>:<VNI>" route target of
// a 4-byte AS: such a route target is an RFC 4364 type 2 one, whose local
// part has 16 bits (§3.1).
var ErrVNITooLarge = errors.New("VNI does not fit in a route target with a 4-byte AS number (16-bit local part)")

// Validate checks the configuration once, at server start.
func (c Config) Validate() error {
	seen := make(map[uint32]bool, len(c.ASNumbers))
	for _, as := range c.ASNumbers {
		if as == 0 {
			return errors.New("as_numbers: 0 is not a valid AS number")
		}
		if seen[as] {
			return fmt.Errorf("as_numbers: %d listed twice", as)
		}
		seen[as] = true
	}
	return nil
}

// CheckVNI says whether a vxlan network with this VNI can have its ML2
// E-VPN route targets under the configured AS numbers; the API calls it
// when a network is created so that the problem is a 400, not a network
// silently left out (§7.4). With ML2 E-VPN off every VNI is accepted.
func (c Config) CheckVNI(vni int) error {
	if !c.ML2EVPN {
		return nil
	}
	_, err := c.ml2RouteTargets(vni)
	return err
}

func (c Config) asNumbers() []uint32 {
	if len(c.ASNumbers) == 0 {
		return []uint32{DefaultAS}
	}
	return c.ASNumbers
}

func (c Config) flavour(host string) Flavour {
	if c.Flavour == nil {
		return FlavourOVS
	}
	return c.Flavour(host)
}

// ml2RouteTargets is the ML2 E-VPN route target set of a vxlan network
// (§3.1), sorted. An AS that cannot carry the VNI is left out and reported
// in the error; the set is empty only if no AS can.
func (c Config) ml2RouteTargets(vni int) ([]string, error) {
	if vni < 1 || vni > maxVNI {
		return nil, fmt.Errorf("vni %d: not a VXLAN network identifier (1..%d)", vni, maxVNI)
	}
	var rts []string
	var errs []error
	for _, as := range c.asNumbers() {
		if as > 0xffff && vni > 0xffff {
			errs = append(errs, fmt.Errorf("vni %d with as_number %d: %w", vni, as, ErrVNITooLarge))
			continue
		}
		rts = append(rts, strconv.FormatUint(uint64(as), 10)+":"+strconv.Itoa(vni))
	}
	return sortedSet(rts), errors.Join(errs...)
}
