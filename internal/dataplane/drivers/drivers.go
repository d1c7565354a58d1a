// Package drivers builds the dataplane driver of each VPN type from the
// [DATAPLANE_DRIVER_EVPN] and [DATAPLANE_DRIVER_IPVPN] sections of bgp.conf,
// for the daemon and the cleanup tool alike, so both always pick the same
// drivers with the same settings.
package drivers

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/bagpipe-go/bagpipe/internal/config"
	"github.com/bagpipe-go/bagpipe/internal/dataplane"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/dummy"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/linux"
	"github.com/bagpipe-go/bagpipe/internal/dataplane/ovs"
)

// Section is the configuration section of the driver of type t.
func Section(t dataplane.VPNType) string {
	switch t {
	case dataplane.EVPN:
		return "DATAPLANE_DRIVER_EVPN"
	case dataplane.IPVPN:
		return "DATAPLANE_DRIVER_IPVPN"
	}
	return "DATAPLANE_DRIVER_" + string(t)
}

// New builds one driver per VPN type. logger gives the logger of the
// driver of each type (nil: logs discarded). The drivers that exist are
// dummy (both types), linux (E-VPN) and ovs (IP-VPN: MPLS over Open
// vSwitch; E-VPN: VXLAN on the Neutron agent's br-tun; both reach the
// system's OVS, or the one OVS_RUNDIR names);
// naming another one is an error, so that a daemon stops at start rather
// than failing every attach later. Building changes nothing on the host.
func New(cfg *config.Config, logger func(dataplane.VPNType) *slog.Logger) (map[dataplane.VPNType]dataplane.Driver, error) {
	out, _, err := build(cfg, logger, false)
	return out, err
}

// Absent is the error, for one VPN type, of a dataplane that does not exist
// on the host (an OVS bridge that was never created).
type Absent struct {
	Type dataplane.VPNType
	Err  error
}

func (a *Absent) Error() string { return fmt.Sprintf("[%s]: %v", Section(a.Type), a.Err) }
func (a *Absent) Unwrap() error { return a.Err }

// NewPresent is New for the cleanup tool: a driver whose dataplane does not
// exist on the host (dataplanes §7: nothing to clean) is left out of the
// map and reported in absent instead of failing the build.
func NewPresent(cfg *config.Config, logger func(dataplane.VPNType) *slog.Logger) (drivers map[dataplane.VPNType]dataplane.Driver, absent []*Absent, err error) {
	return build(cfg, logger, true)
}

func build(cfg *config.Config, logger func(dataplane.VPNType) *slog.Logger, allowAbsent bool) (map[dataplane.VPNType]dataplane.Driver, []*Absent, error) {
	var absent []*Absent
	sections := []struct {
		typ dataplane.VPNType
		dp  config.Dataplane
	}{
		{dataplane.EVPN, cfg.EVPN},
		{dataplane.IPVPN, cfg.IPVPN},
	}
	lg := cfg.LookingGlass()
	out := make(map[dataplane.VPNType]dataplane.Driver, len(sections))
	built := false
	defer func() {
		// A driver holding sockets must not outlive a failed build.
		if !built {
			for _, d := range out {
				if c, ok := d.(interface{ Close() }); ok {
					c.Close()
				}
			}
		}
	}()
	for _, sec := range sections {
		name := Section(sec.typ)
		linuxEVPN := sec.typ == dataplane.EVPN && sec.dp.Driver == "linux"
		ovsEVPN := sec.typ == dataplane.EVPN && sec.dp.Driver == "ovs"
		ovsIPVPN := sec.typ == dataplane.IPVPN && sec.dp.Driver == "ovs"
		if sec.dp.Driver != "dummy" && !linuxEVPN && !ovsEVPN && !ovsIPVPN {
			return nil, nil, fmt.Errorf("[%s] dataplane driver %s is not available yet", name, sec.dp.DriverOption)
		}
		// The driver shows its section, as the looking glass's config
		// shows it.
		options, _ := lg[name].(map[string]any)
		var log *slog.Logger
		if logger != nil {
			log = logger(sec.typ)
		}
		if linuxEVPN {
			opts, err := linux.ParseOptions(sec.dp.Options)
			if err != nil {
				return nil, nil, fmt.Errorf("[%s]: %w", name, err)
			}
			d, err := linux.New(linux.Config{
				LocalAddress: sec.dp.Address(cfg.BGP),
				Options:      opts,
				ConfigLG:     options,
				Logger:       log,
				// The daemon says when BGP has settled (dataplane.Settler).
				WaitForBGP: true,
			})
			if err != nil {
				return nil, nil, fmt.Errorf("[%s]: %w", name, err)
			}
			out[sec.typ] = d
			continue
		}
		if ovsEVPN {
			opts, err := ovs.ParseEVPNOptions(sec.dp.Options)
			if err != nil {
				return nil, nil, fmt.Errorf("[%s]: %w", name, err)
			}
			d, err := ovs.NewEVPN(ovs.EVPNConfig{
				LocalAddress: sec.dp.Address(cfg.BGP),
				Options:      opts,
				ConfigLG:     options,
				Logger:       log,
			})
			if allowAbsent && errors.Is(err, ovs.ErrBridgeNotFound) {
				absent = append(absent, &Absent{Type: sec.typ, Err: err})
				continue
			}
			if err != nil {
				return nil, nil, fmt.Errorf("[%s]: %w", name, err)
			}
			out[sec.typ] = d
			continue
		}
		if ovsIPVPN {
			opts, err := ovs.ParseOptions(sec.dp.Options)
			if err != nil {
				return nil, nil, fmt.Errorf("[%s]: %w", name, err)
			}
			d, err := ovs.New(ovs.Config{
				LocalAddress: sec.dp.Address(cfg.BGP),
				Options:      opts,
				ConfigLG:     options,
				Logger:       log,
				// The daemon says when BGP has settled (dataplane.Settler).
				WaitForBGP: true,
			})
			if allowAbsent && errors.Is(err, ovs.ErrBridgeNotFound) {
				absent = append(absent, &Absent{Type: sec.typ, Err: err})
				continue
			}
			if err != nil {
				return nil, nil, fmt.Errorf("[%s]: %w", name, err)
			}
			out[sec.typ] = d
			continue
		}
		d, err := dummy.New(dummy.Config{
			Type:         sec.typ,
			LocalAddress: sec.dp.Address(cfg.BGP),
			Options:      options,
			Logger:       log,
		})
		if err != nil {
			return nil, nil, fmt.Errorf("[%s]: %w", name, err)
		}
		out[sec.typ] = d
	}
	built = true
	return out, absent, nil
}
