package config

import "net/netip"

// secretMask replaces passwords in the looking glass.
const secretMask = "****"

// LookingGlass returns the looking glass "config" subtree: one object per
// section with the effective value of each option, as the original showed
// them (addresses as text, unset options as null), plus one object per
// [BGP_PEER <address>] section. Passwords are masked.
func (c *Config) LookingGlass() map[string]any {
	b := c.BGP
	out := map[string]any{
		"COMMON": map[string]any{
			"root_helper":        c.Common.RootHelper,
			"root_helper_daemon": nullable(c.Common.RootHelperDaemon),
		},
		"API": map[string]any{
			"host": c.API.Host,
			"port": int(c.API.Port),
		},
		"BGP": map[string]any{
			"local_address":   addrText(b.LocalAddress),
			"peers":           addrTexts(b.activeList),
			"my_as":           int64(b.MyAS),
			"enable_rtc":      b.EnableRTC,
			"bgp_port":        int(b.Port),
			"router_id":       addrText(b.RouterID),
			"hold_time":       int(b.HoldTime),
			"connect_retry":   int(b.ConnectRetry.Seconds()),
			"passive_peers":   addrTexts(b.passiveList),
			"listen":          b.Listen,
			"listen_address":  addrText(b.ListenAddress),
			"listen_port":     int(b.ListenPort),
			"peer_as":         int64(b.PeerAS),
			"md5_password":    mask(b.MD5Password),
			"route_reflector": b.RouteReflector,
			"cluster_id":      addrText(b.ClusterID),
		},
		"DATAPLANE_DRIVER_IPVPN": c.IPVPN.lg(),
		"DATAPLANE_DRIVER_EVPN":  c.EVPN.lg(),
	}
	for _, a := range b.sectionPeers {
		for _, pe := range b.Peers {
			if pe.Address != a {
				continue
			}
			out["BGP_PEER "+a.String()] = map[string]any{
				"peer_as":       int64(pe.AS),
				"passive":       pe.Passive,
				"port":          int(pe.Port),
				"hold_time":     int(pe.HoldTime),
				"connect_retry": int(pe.ConnectRetry.Seconds()),
				"md5_password":  mask(pe.MD5Password),
			}
		}
	}
	return out
}

func (d Dataplane) lg() map[string]any {
	m := make(map[string]any, len(d.Options)+2)
	for k, v := range d.Options {
		m[k] = v
	}
	m["dataplane_driver"] = d.DriverOption
	m["dataplane_local_address"] = nil
	if d.LocalAddress.IsValid() {
		m["dataplane_local_address"] = d.LocalAddress.String()
	}
	return m
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func mask(s string) any {
	if s == "" {
		return nil
	}
	return secretMask
}

func addrText(a netip.Addr) any {
	if !a.IsValid() {
		return nil
	}
	return a.String()
}

func addrTexts(as []netip.Addr) []string {
	out := make([]string, 0, len(as))
	for _, a := range as {
		out = append(out, a.String())
	}
	return out
}
