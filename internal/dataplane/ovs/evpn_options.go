package ovs

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// DefaultEVPNBridge is the E-VPN driver's bridge unless ovs_bridge says
// otherwise: the Neutron OVS agent's tunnel bridge (dataplanes §4.1, §8).
const DefaultEVPNBridge = "br-tun"

// EVPNOptions are the E-VPN driver's settings from [DATAPLANE_DRIVER_EVPN].
type EVPNOptions struct {
	// Bridge is the tunnel bridge to program; it must exist (the Neutron
	// agent owns it) and is never created.
	Bridge string
}

// DefaultEVPNOptions are the options of an empty section.
func DefaultEVPNOptions() EVPNOptions { return EVPNOptions{Bridge: DefaultEVPNBridge} }

// ParseEVPNOptions reads the E-VPN driver's options from the raw values of
// its section; other keys are ignored (they belong to the common part, or
// to other drivers), as the original's oslo.config did. Errors name the
// option.
func ParseEVPNOptions(raw map[string]string) (EVPNOptions, error) {
	o := DefaultEVPNOptions()
	for _, k := range slices.Sorted(maps.Keys(raw)) {
		v := strings.TrimSpace(raw[k])
		if k == OptBridge {
			if !ovsName.MatchString(v) {
				return EVPNOptions{}, fmt.Errorf("%s: %q is not an OVS bridge name", k, v)
			}
			o.Bridge = v
		}
	}
	return o, nil
}
