package linux

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Option names of [DATAPLANE_DRIVER_EVPN] for this driver.
const (
	OptDstPort  = "vxlan_dst_port"
	OptMTU      = "vxlan_mtu"
	OptPreserve = "preserve_dataplane"
	OptGrace    = "reconcile_grace_period"
)

// Defaults of the options.
const (
	DefaultDstPort = 4789
	DefaultGrace   = 120 * time.Second
)

// Options are the driver's settings from its configuration section.
type Options struct {
	// DstPort is the VXLAN UDP destination port; 0 leaves the kernel's
	// default, as the original did for an empty option.
	DstPort uint16
	// MTU of the VXLAN devices; 0 leaves the kernel's default.
	MTU int
	// Preserve keeps the previous run's dataplane at start-up and
	// reconciles it (see the package doc); false wipes it as the original
	// did.
	Preserve bool
	// Grace is how long stale entries of an adopted instance, and devices
	// no instance adopted, survive before the sweep.
	Grace time.Duration
}

// DefaultOptions are the options of an empty section.
func DefaultOptions() Options {
	return Options{DstPort: DefaultDstPort, Preserve: true, Grace: DefaultGrace}
}

// ParseOptions reads the driver's options from the raw values of its
// section; other keys are ignored (they belong to the common part).
func ParseOptions(raw map[string]string) (Options, error) {
	o := DefaultOptions()
	for _, k := range slices.Sorted(maps.Keys(raw)) {
		v := strings.TrimSpace(raw[k])
		switch k {
		case OptDstPort:
			if v == "" {
				o.DstPort = 0
				continue
			}
			n, err := strconv.ParseUint(v, 10, 16)
			if err != nil {
				return Options{}, fmt.Errorf("%s: %q is not a port number (0 to 65535)", k, v)
			}
			o.DstPort = uint16(n)
		case OptMTU:
			if v == "" {
				continue
			}
			n, err := strconv.Atoi(v)
			// 68 is the IPv4 minimum; 65535 the largest the kernel takes
			if err != nil || n != 0 && (n < 68 || n > 65535) {
				return Options{}, fmt.Errorf("%s: %q is not an MTU (68 to 65535, or 0 for the kernel default)", k, v)
			}
			o.MTU = n
		case OptPreserve:
			b, err := strconv.ParseBool(v)
			if err != nil {
				return Options{}, fmt.Errorf("%s: %q is not a boolean", k, v)
			}
			o.Preserve = b
		case OptGrace:
			n, err := strconv.ParseFloat(v, 64)
			if err != nil || n < 0 || n > 86400 {
				return Options{}, fmt.Errorf("%s: %q is not a number of seconds (0 to 86400)", k, v)
			}
			o.Grace = time.Duration(n * float64(time.Second))
		}
	}
	return o, nil
}
