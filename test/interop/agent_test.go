package interop

import (
	"fmt"
	"math/big"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/bgpvpns"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/portsbinding"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/provider"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"
)

// The mixed network's speakers, each on a loopback address of its own:
// host h1's bagpipe-bgp is the original, host h2's is ours, and both peer
// with our fake route reflector.
var (
	h1Addr = netip.MustParseAddr("127.0.0.71")
	h2Addr = netip.MustParseAddr("127.0.0.72")
	rrAddr = netip.MustParseAddr("127.0.0.73")
)

// The network, its ports and the BGPVPN (VM addresses from TEST-NET-2:
// never socket addresses).
const (
	cpVNI     = 4011
	cpRT      = "64512:4011" // ML2 E-VPN: <AS>:<VNI> (control-plane §3.1)
	cpCIDR    = "198.51.100.0/24"
	cpGateway = "198.51.100.1"
	vpnRT     = "64512:4100"

	p1MAC = "52:54:00:71:00:01"
	p1IP  = "198.51.100.71"
	p2MAC = "52:54:00:72:00:01"
	p2IP  = "198.51.100.72"
	p3MAC = "52:54:00:71:00:03"
	p3IP  = "198.51.100.73"
)

// The original's stitching commands (stubbed): a veth pair between E-VPN
// instance n and VRF m, named after their internal numbers.
var (
	vethAddRE = regexp.MustCompile(`^ip link add evpn\d+-ipvpn\d+ type veth peer name ipvpn\d+-evpn\d+`)
	vethDelRE = regexp.MustCompile(`^ip link delete evpn\d+-ipvpn\d+$`)
)

// TestAgentDrivesOriginal: our control plane (bagpipe-server, NATS, our
// bagpipe-agent) drives the original Python bagpipe-bgp unchanged, as
// host h1's bagpipe-bgp, in a network whose host h2 runs our bagpipe-bgp;
// the two exchange their ports' routes through our fake route reflector.
// The original's state is read only through its own looking glass.
func TestAgentDrivesOriginal(t *testing.T) {
	requireOriginal(t)
	began := time.Now()
	rrPort := startFakeRR(t, rrAddr)
	cp := startControlPlane(t)
	orig := startOriginal(t, originalConfig{LocalAddress: h1Addr, Peer: rrAddr, BGPPort: rrPort, MyAS: testAS})
	stubHostCommands(t, orig)
	ours := startOurNode(t, "h2", h2Addr, rrAddr, rrPort)
	t.Logf("the original answered on its REST API %v after the test began", time.Since(began).Round(time.Millisecond))
	a1 := cp.startAgent(t, "h1", orig.url(""))
	a2 := cp.startAgent(t, "h2", ours.api)

	ctx := t.Context()
	gc := cp.neutron()
	var net1 struct {
		networks.Network
		provider.NetworkProviderExt
	}
	err := networks.Create(ctx, gc, provider.CreateOptsExt{
		CreateOptsBuilder: networks.CreateOpts{Name: "interop-net"},
		Segments:          []provider.Segment{{NetworkType: "vxlan", SegmentationID: cpVNI}},
	}).ExtractInto(&net1)
	if err != nil {
		t.Fatalf("networks.Create: %v", err)
	}
	sub, err := subnets.Create(ctx, gc, subnets.CreateOpts{NetworkID: net1.ID, CIDR: cpCIDR, IPVersion: gophercloud.IPv4}).Extract()
	if err != nil {
		t.Fatalf("subnets.Create: %v", err)
	}
	createPort := func(name, host, mac, ip string) string {
		t.Helper()
		var p struct {
			ports.Port
			portsbinding.PortsBindingExt
		}
		err := ports.Create(ctx, gc, portsbinding.CreateOptsExt{
			CreateOptsBuilder: ports.CreateOpts{NetworkID: net1.ID, Name: name, DeviceOwner: "compute:nova", MACAddress: mac,
				FixedIPs: []ports.IP{{SubnetID: sub.ID, IPAddress: ip}}},
			HostID: host,
		}).ExtractInto(&p)
		if err != nil || p.HostID != host {
			t.Fatalf("ports.Create %s: %v %+v", name, err, p)
		}
		return p.ID
	}
	p1 := createPort("vm1", "h1", p1MAC, p1IP)
	p2 := createPort("vm2", "h2", p2MAC, p2IP)
	cp.settle(t, "h1", "h2")

	evpnID, ipvpnID := "evpn_"+net1.ID, "ipvpn_"+net1.ID
	tap1 := "tap" + p1[:11]
	stitch := fmt.Sprintf("'local_port': {'evpn': {'id': '%s'}}", evpnID)
	// The original shows an endpoint's address as attached: bare.
	ep1 := p1MAC + " " + p1IP
	origGet := func(path string) ([]byte, error) { return orig.get(path) }

	ok := t.Run("control-plane_§4.3a_ML2_E-VPN_port_attached_on_the_original", func(t *testing.T) {
		// The agent reported the attach done; the original's looking
		// glass must show exactly it.
		inst, err := instance(origGet, evpnID)
		if err != nil {
			t.Fatal(err)
		}
		want := lgInstance{Type: "EVI", Import: []string{cpRT}, Export: []string{cpRT}, Endpoints: map[string][]string{tap1: {ep1}}}
		checkInstance(t, "the original", evpnID, inst, want)
		ids, err := instances(origGet)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(ids, []string{evpnID}) {
			t.Errorf("the original's instances %v, want only %s", ids, evpnID)
		}
		checkAgentClean(t, cp, "h1")
	})
	if !ok {
		return
	}

	t.Run("control-plane_§4.1_ping_128-bit_value_kept_exact", func(t *testing.T) {
		raw, err := orig.get("/ping")
		if err != nil {
			t.Fatal(err)
		}
		text := strings.TrimSpace(string(raw))
		v, ok := new(big.Int).SetString(text, 10)
		if !ok {
			t.Fatalf("the original's /ping answered %q, not a JSON integer", raw)
		}
		// The original's value is a random UUID's 128-bit integer, its
		// version nibble set: always at least 2^78.
		if v.BitLen() <= 64 {
			t.Fatalf("the original's ping %s fits in 64 bits: this test proves nothing", text)
		}
		st, _ := cp.lastStatus("h1")
		if st.Ping != text {
			t.Errorf("the agent of h1 reports ping %q, the original answers %s", st.Ping, text)
		}
		if len(a1.logLines("bagpipe-bgp reached", "ping="+text)) != 1 {
			t.Errorf("the agent of h1 did not log the exact ping %s once at first contact: %q", text, a1.logLines("ping="))
		}
	})

	ourGet := getter(ours.get)
	t.Run("control-plane_§3.6_mixed_network_E-VPN_routes_between_the_original_and_ours", func(t *testing.T) {
		waitSessions(t, orig, ours)
		// h2's port, from our bagpipe-bgp, imported by the original.
		waitRoute(t, "the original", origGet, evpnID, h2Addr, p2MAC, p2IP)
		// h1's port, from the original, imported by ours.
		waitRoute(t, "ours", ourGet, evpnID, h1Addr, p1MAC, p1IP)
	})

	vpn, err := bgpvpns.Create(ctx, gc, bgpvpns.CreateOpts{Name: "interop-l3", Type: "l3", RouteTargets: []string{vpnRT}}).Extract()
	if err != nil {
		t.Fatalf("bgpvpns.Create: %v", err)
	}
	assoc, err := bgpvpns.CreateNetworkAssociation(ctx, gc, vpn.ID, bgpvpns.CreateNetworkAssociationOpts{NetworkID: net1.ID}).Extract()
	if err != nil {
		t.Fatalf("CreateNetworkAssociation: %v", err)
	}
	cp.settle(t, "h1", "h2")

	ok = t.Run("control-plane_§4.3g_l3_BGPVPN_stitched_to_the_E-VPN_on_the_original", func(t *testing.T) {
		checkAgentClean(t, cp, "h1")
		// The Linux bridge flavour's body: the network's E-VPN plugged
		// into the VRF (§4.2), taken as it is.
		if l := orig.logLines("Local port attach received", "'vpn_type': 'ipvpn'", stitch); len(l) != 1 {
			t.Errorf("the original received %d ipvpn attaches with %s: %q", len(l), stitch, orig.logLines("Local port attach received"))
		}
		// The original made its veth pair between the two (stubbed).
		if c := matching(orig.hostCommands(), vethAddRE); len(c) != 1 {
			t.Errorf("the original's stitching commands %q, want one veth pair added", orig.hostCommands())
		}
		inst, err := instance(origGet, ipvpnID)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("the original's %s: %+v", ipvpnID, inst)
		if inst.Type != "VRF" || !slices.Equal(inst.Import, []string{vpnRT}) || !slices.Equal(inst.Export, []string{vpnRT}) {
			t.Errorf("the original's %s: type %s import %v export %v, want VRF and [%s] both ways", ipvpnID, inst.Type, inst.Import, inst.Export, vpnRT)
		}
		if got := allEndpoints(inst); !slices.Equal(got, []string{ep1}) {
			t.Errorf("the original's %s holds endpoints %v, want [%s]", ipvpnID, got, ep1)
		}
		// The E-VPN is unchanged by the stitching.
		ev, err := instance(origGet, evpnID)
		if err != nil {
			t.Fatal(err)
		}
		checkInstance(t, "the original", evpnID, ev, lgInstance{Type: "EVI", Import: []string{cpRT}, Export: []string{cpRT}, Endpoints: map[string][]string{tap1: {ep1}}})
	})
	if !ok {
		return
	}

	t.Run("control-plane_§3.6_mixed_network_IP-VPN_routes_between_the_original_and_ours", func(t *testing.T) {
		waitRoute(t, "the original", origGet, ipvpnID, h2Addr, p2IP+"/32")
		waitRoute(t, "ours", ourGet, ipvpnID, h1Addr, p1IP+"/32")
	})

	t.Run("control-plane_§4.7_sweep_reads_the_original's_looking_glass_without_churn", func(t *testing.T) {
		// The agents compare their applied set with the looking glass
		// every second: on the original's, nothing may look missing or
		// undesired. Two comparisons since the BGPVPN (the test itself
		// never reads instance_type).
		typePath := "/looking-glass/vpns/instances/" + ipvpnID + "/instance_type"
		err := waitFor(cpWait, func() error {
			if n := countRequests(http.MethodGet, typePath, orig.outPath); n < 2 {
				return fmt.Errorf("the agent of h1 read %s %d times", typePath, n)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range []*hostAgent{a1, a2} {
			for _, words := range [][]string{{"applied attachment missing"}, {"not desired: detaching"}, {"looking glass not readable"}} {
				if l := a.logLines(words...); len(l) > 0 {
					t.Errorf("agent of %s: %q", a.host, l)
				}
			}
		}
	})

	parent := t
	firstOut := orig.outPath
	t.Run("control-plane_§4.6_resync_after_kill_-9_of_the_original", func(t *testing.T) {
		before, _ := cp.lastStatus("h1")
		checkNoErrors(t, orig)
		killed := time.Now()
		killOriginal(t, orig)
		// The new run serves the rest of the test: its stop is the
		// parent's clean-up.
		orig = restartOriginal(parent, orig)
		restarted := time.Now()
		raw, err := orig.get("/ping")
		if err != nil {
			t.Fatal(err)
		}
		ping := strings.TrimSpace(string(raw))
		if ping == before.Ping {
			t.Fatalf("the restarted original answers the same ping %s", ping)
		}
		// Everything back, exactly, with no API call.
		err = waitFor(cpWait, func() error {
			ids, err := instances(origGet)
			if err != nil {
				return err
			}
			if !slices.Equal(ids, []string{evpnID, ipvpnID}) {
				return fmt.Errorf("the original's instances %v", ids)
			}
			for _, id := range ids {
				inst, err := instance(origGet, id)
				if err != nil {
					return err
				}
				if got := allEndpoints(inst); !slices.Equal(got, []string{ep1}) {
					return fmt.Errorf("%s holds %v", id, got)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		reattached := time.Now()
		st, _ := cp.lastStatus("h1")
		if st.Ping != ping {
			t.Errorf("the agent of h1 reports ping %q, the restarted original answers %s", st.Ping, ping)
		}
		if len(a1.logLines("restart detected", "ping="+ping, "previous_ping="+before.Ping)) != 1 {
			t.Errorf("the agent of h1 did not log the restart from %s to %s once: %q", before.Ping, ping, a1.logLines("restart detected"))
		}
		ev, err := instance(origGet, evpnID)
		if err != nil {
			t.Fatal(err)
		}
		checkInstance(t, "the restarted original", evpnID, ev, lgInstance{Type: "EVI", Import: []string{cpRT}, Export: []string{cpRT}, Endpoints: map[string][]string{tap1: {ep1}}})
		vrf, err := instance(origGet, ipvpnID)
		if err != nil {
			t.Fatal(err)
		}
		if vrf.Type != "VRF" || !slices.Equal(vrf.Import, []string{vpnRT}) || !slices.Equal(vrf.Export, []string{vpnRT}) {
			t.Errorf("the restarted original's %s: %+v, want a VRF importing and exporting %s", ipvpnID, vrf, vpnRT)
		}
		// Each attachment sent once to the new run, E-VPN first (the
		// VRF's attach plugs that E-VPN).
		if l := orig.logLines("Local port attach received"); len(l) != 4 || !strings.Contains(l[2], "'vpn_type': 'evpn'") || !strings.Contains(l[3], stitch) {
			t.Errorf("attaches the original received over both runs: %q, want evpn then ipvpn again after the restart", l)
		}
		if n := countRequests(http.MethodPost, "/attach_localport", orig.outPath); n != 2 {
			t.Errorf("the restarted original received %d attaches, want 2", n)
		}
		// The BGP session comes back through the reflector and the routes
		// of h2 with it. Once the restarted original has h2's routes, h2
		// is on a new session (the relay pairs whole sessions, and h2
		// dropped the old one's routes when it ended): what h2 imports
		// from h1 then comes from the restarted original.
		waitRoute(t, "the restarted original", origGet, evpnID, h2Addr, p2MAC, p2IP)
		waitRoute(t, "the restarted original", origGet, ipvpnID, h2Addr, p2IP+"/32")
		waitRoute(t, "ours", ourGet, evpnID, h1Addr, p1MAC, p1IP)
		waitRoute(t, "ours", ourGet, ipvpnID, h1Addr, p1IP+"/32")
		t.Logf("resync: the original answered %v after its kill -9; the agent re-attached everything %v after that "+
			"(%v from the kill); routes exchanged again %v from the kill",
			restarted.Sub(killed).Round(time.Millisecond), reattached.Sub(restarted).Round(time.Millisecond),
			reattached.Sub(killed).Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
		cp.settle(t, "h1")
		checkAgentClean(t, cp, "h1")
	})

	t.Run("control-plane_§4.4_port_delete_detaches_on_the_original", func(t *testing.T) {
		deletes := len(matching(orig.hostCommands(), vethDelRE))
		if err := ports.Delete(ctx, gc, p1).ExtractErr(); err != nil {
			t.Fatalf("ports.Delete: %v", err)
		}
		cp.settle(t, "h1", "h2")
		// ipvpn first, then evpn (§4.4), the stitched local port in the
		// ipvpn one.
		err := waitFor(cpWait, func() error {
			l := orig.logLines("Local port detach received")
			if len(l) != 2 || !strings.Contains(l[0], "'vpn_type': 'ipvpn'") || !strings.Contains(l[0], stitch) ||
				!strings.Contains(l[1], "'vpn_type': 'evpn'") || !strings.Contains(l[1], "'linuxif': '"+tap1+"'") {
				return fmt.Errorf("the original received the detaches %q", l)
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
		// The last endpoint of each instance gone, the instances too.
		err = waitFor(cpWait, func() error {
			ids, err := instances(origGet)
			if err != nil {
				return err
			}
			if len(ids) != 0 {
				return fmt.Errorf("the original still has instances %v", ids)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		// The E-VPN unplugged from the VRF: the veth pair deleted (an
		// attach also deletes the pair first, in case).
		if n := len(matching(orig.hostCommands(), vethDelRE)); n != deletes+1 {
			t.Errorf("the original deleted %d veth pairs at the detach, want 1 (commands %q)", n-deletes, orig.hostCommands())
		}
		// Its routes withdrawn towards h2.
		err = waitFor(cpWait, func() error {
			for _, id := range []string{evpnID, ipvpnID} {
				routes, err := received(ourGet, id)
				if err != nil {
					return err
				}
				if len(routes) != 0 {
					return fmt.Errorf("ours still imports in %s: %v", id, routes)
				}
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
		if st, _ := cp.lastStatus("h1"); st.Applied != 0 || st.Pending != 0 || st.LastError != "" {
			t.Errorf("the agent of h1 reports %+v, want nothing applied or pending", st)
		}
		// h2 keeps its own port.
		inst, err := instance(ourGet, evpnID)
		if err != nil {
			t.Fatal(err)
		}
		want := lgInstance{Type: "EVI", Import: []string{cpRT}, Export: []string{cpRT}, Endpoints: map[string][]string{"tap" + p2[:11]: {p2MAC + " " + p2IP}}}
		checkInstance(t, "ours", evpnID, inst, want)
	})
	t.Run("control-plane_§4.7_restarted_agent_sweeps_the_stitched_VRF_off_the_original", func(t *testing.T) {
		// A port on the network with the BGPVPN: E-VPN and stitched VRF.
		// Then the agent is down while the network association goes:
		// its successor finds the VRF's endpoint in the original's
		// looking glass and detaches it. The E-VPN stays (the port
		// stays) and must be unplugged from the VRF, so that the
		// association, made again, plugs it again.
		createPort("vm3", "h1", p3MAC, p3IP)
		cp.settle(t, "h1")
		if err := a1.stop(); err != nil {
			t.Fatal(err)
		}
		if err := bgpvpns.DeleteNetworkAssociation(ctx, gc, vpn.ID, assoc.ID).ExtractErr(); err != nil {
			t.Fatalf("DeleteNetworkAssociation: %v", err)
		}
		if err := cp.ctl.Recompute(ctx); err != nil {
			t.Fatal(err)
		}
		deletes := len(matching(orig.hostCommands(), vethDelRE))
		a1 = cp.startAgent(parent, "h1", orig.url(""))
		cp.settle(t, "h1")
		err := waitFor(cpWait, func() error {
			ids, err := instances(origGet)
			if err != nil {
				return err
			}
			if !slices.Equal(ids, []string{evpnID}) {
				return fmt.Errorf("the original has instances %v, want only %s", ids, evpnID)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("the sweep's detach: %q", orig.logLines("Local port detach received", "'vpn_type': 'ipvpn'", p3MAC))
		if n := len(matching(orig.hostCommands(), vethDelRE)); n != deletes+1 {
			t.Errorf("the original deleted %d veth pairs at the sweep's detach, want 1: the E-VPN stays plugged into the removed VRF (commands %q)",
				n-deletes, orig.hostCommands())
		}
		// The association again: the VRF back, stitched.
		if _, err := bgpvpns.CreateNetworkAssociation(ctx, gc, vpn.ID, bgpvpns.CreateNetworkAssociationOpts{NetworkID: net1.ID}).Extract(); err != nil {
			t.Fatalf("CreateNetworkAssociation: %v", err)
		}
		if err := cp.ctl.Recompute(ctx); err != nil {
			t.Fatal(err)
		}
		err = waitFor(10*time.Second, func() error {
			st, _ := cp.lastStatus("h1")
			inst, err := instance(origGet, ipvpnID)
			if err != nil {
				return fmt.Errorf("%w; the agent of h1 reports %+v", err, st)
			}
			if got := allEndpoints(inst); !slices.Equal(got, []string{p3MAC + " " + p3IP}) {
				return fmt.Errorf("the original's %s holds %v; the agent of h1 reports %+v", ipvpnID, got, st)
			}
			if !st.Reconciled || st.LastError != "" {
				return fmt.Errorf("the agent of h1 reports %+v", st)
			}
			return nil
		})
		if err != nil {
			t.Error(err)
			t.Logf("the attaches the original received since: %q", orig.logLines("Local port attach received", "'vpn_type': 'ipvpn'", p3MAC))
		}
	})

	t.Run("every_call_of_our_agents_accepted_by_the_original", func(t *testing.T) {
		checkOriginalAccepted(t, orig, firstOut, orig.outPath)
		checkNoErrors(t, orig)
	})
	t.Logf("whole test: %v", time.Since(began).Round(time.Millisecond))
}

// matching are the lines re matches.
func matching(lines []string, re *regexp.Regexp) []string {
	var out []string
	for _, l := range lines {
		if re.MatchString(l) {
			out = append(out, l)
		}
	}
	return out
}

// checkInstance compares an instance with want.
func checkInstance(t *testing.T, who, id string, got, want lgInstance) {
	t.Helper()
	if got.Type != want.Type || !slices.Equal(got.Import, want.Import) || !slices.Equal(got.Export, want.Export) {
		t.Errorf("%s's %s: type %s import %v export %v, want %s %v %v", who, id, got.Type, got.Import, got.Export, want.Type, want.Import, want.Export)
	}
	if fmt.Sprint(got.Endpoints) != fmt.Sprint(want.Endpoints) {
		t.Errorf("%s's %s: endpoints %v, want %v", who, id, got.Endpoints, want.Endpoints)
	}
}

// allEndpoints are an instance's endpoints whatever their port, sorted.
func allEndpoints(inst lgInstance) []string {
	var out []string
	for _, eps := range inst.Endpoints {
		out = append(out, eps...)
	}
	slices.Sort(out)
	return out
}

// checkAgentClean checks that host's agent reports everything applied
// and no error: no attach or detach was refused.
func checkAgentClean(t *testing.T, cp *controlPlane, host string) {
	t.Helper()
	st, ok := cp.lastStatus(host)
	if !ok || !st.Reconciled || st.Pending != 0 || st.LastError != "" || !st.BagpipeBGPUp {
		t.Errorf("agent of %s reports %+v, want reconciled with nothing pending and no error", host, st)
	}
}

// waitSessions waits until the original and ours both show their
// session with the reflector Established.
func waitSessions(t *testing.T, orig *original, ours *ourNode) {
	t.Helper()
	err := orig.waitFor(establishTimeout, func() error {
		st, fams, _, err := orig.peerState()
		if err != nil {
			return err
		}
		if st != "Established" || len(fams) == 0 {
			return fmt.Errorf("the original's session is %s with families %v", st, fams)
		}
		var peers []struct {
			ID    string `json:"id"`
			State string `json:"state"`
		}
		if err := lgGet(ours.get, "/bgp/peers", &peers); err != nil {
			return err
		}
		if len(peers) != 1 || peers[0].State != "Established" {
			return fmt.Errorf("our sessions %+v", peers)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// waitRoute waits until instance id of who imports exactly one route
// whose NLRI text shows every one of parts, with next hop nh.
func waitRoute(t *testing.T, who string, get getter, id string, nh netip.Addr, parts ...string) {
	t.Helper()
	var found lgRoute
	err := waitFor(cpWait, func() error {
		routes, err := received(get, id)
		if err != nil {
			return err
		}
		m := findRoute(routes, parts...)
		if len(m) != 1 {
			return fmt.Errorf("%s's %s imports %v, want one route with %v", who, id, routes, parts)
		}
		found = m[0]
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if found.NextHop == nil || *found.NextHop != nh.String() {
		t.Errorf("%s's %s: route %v, want next hop %s", who, id, found, nh)
	}
	t.Logf("%s's %s imports %s", who, id, found.NLRI)
}
