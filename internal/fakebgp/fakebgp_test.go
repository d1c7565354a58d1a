package fakebgp_test

import (
	"encoding/json"
	"errors"
	"math/big"
	"slices"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/bagpipe-go/bagpipe/client"
	"github.com/bagpipe-go/bagpipe/internal/fakebgp"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Endpoints of the tests, as the agent would send them.
func evpnReq(mac, ip, port string) client.AttachRequest {
	return client.AttachRequest{VPNType: "evpn", VPNInstanceID: "evpn_net1", MACAddress: mac, IPAddress: ip,
		LocalPort: client.LocalPort{LinuxIf: port}, ImportRT: []string{"64512:1"}, ExportRT: []string{"64512:1"}}
}

func ipvpnReq(mac, ip string, rts ...string) client.AttachRequest {
	return client.AttachRequest{VPNType: "ipvpn", VPNInstanceID: "ipvpn_net1", MACAddress: mac, IPAddress: ip,
		GatewayIP: "192.0.2.1", LocalPort: client.LocalPort{EVPN: &client.EVPNPort{ID: "evpn_net1"}},
		ImportRT: rts, ExportRT: rts[:1]}
}

func detachOf(a client.AttachRequest) client.DetachRequest {
	return client.DetachRequest{VPNType: a.VPNType, VPNInstanceID: a.VPNInstanceID, MACAddress: a.MACAddress,
		IPAddress: a.IPAddress, LocalPort: a.LocalPort}
}

// attach attaches reqs in order through c; any refusal ends the test.
func attach(t *testing.T, c *client.Client, reqs ...client.AttachRequest) {
	t.Helper()
	for _, r := range reqs {
		if err := c.Attach(t.Context(), r); err != nil {
			t.Fatalf("attach %s %s: %v", r.VPNInstanceID, r.MACAddress, err)
		}
	}
}

// status is the HTTP status of a call's outcome.
func status(t *testing.T, err error) int {
	t.Helper()
	if err == nil {
		return 200
	}
	var apiErr *client.APIError
	if !errors.As(err, &apiErr) {
		t.Fatalf("not an API error: %v", err)
	}
	return apiErr.Status
}

func ops(calls []fakebgp.Call) []string {
	out := make([]string, len(calls))
	for i, c := range calls {
		out[i] = c.String()
	}
	return out
}

// lg reads a looking-glass object into v.
func lg(t *testing.T, c *client.Client, v any, path ...string) error {
	t.Helper()
	raw, err := c.LookingGlass(t.Context(), path...)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("looking glass %v: %v", path, err)
	}
	return nil
}

func TestPing(t *testing.T) {
	t.Run("vpn-and-api_§2.3_ping_value_exact_and_settable", func(t *testing.T) {
		max128, _ := new(big.Int).SetString("340282366920938463463374607431768211455", 10)
		s := fakebgp.New(t, max128)
		c := s.Client(t)
		if v, err := c.Ping(t.Context()); err != nil || v.Cmp(max128) != 0 {
			t.Fatalf("ping %v %v, want %s", v, err, max128)
		}
		below := new(big.Int).Sub(max128, big.NewInt(1))
		s.SetPing(below)
		if v, err := c.Ping(t.Context()); err != nil || v.Cmp(below) != 0 {
			t.Fatalf("ping %v %v after SetPing, want %s", v, err, below)
		}
		if v, err := fakebgp.New(t, nil).Client(t).Ping(t.Context()); err != nil || v.Int64() != fakebgp.DefaultPing {
			t.Errorf("ping of a fake made with nil: %v %v, want %d", v, err, fakebgp.DefaultPing)
		}
	})

	t.Run("down_answers_500_and_counts_failed_pings", func(t *testing.T) {
		s := fakebgp.New(t, big.NewInt(7))
		c := s.Client(t)
		if _, err := c.Ping(t.Context()); err != nil {
			t.Fatal(err)
		}
		s.SetDown(true)
		for range 2 {
			if _, err := c.Ping(t.Context()); status(t, err) != 500 {
				t.Fatalf("ping while down: %v, want a 500", err)
			}
		}
		if err := c.Attach(t.Context(), evpnReq("02:00:00:00:00:01", "", "tap1")); status(t, err) != 500 {
			t.Errorf("attach while down: %v, want a 500", err)
		}
		if err := c.Detach(t.Context(), detachOf(evpnReq("02:00:00:00:00:01", "", "tap1"))); status(t, err) != 500 {
			t.Errorf("detach while down: %v, want a 500", err)
		}
		s.SetDown(false)
		if v, err := c.Ping(t.Context()); err != nil || v.Int64() != 7 {
			t.Errorf("ping after down: %v %v, want the same value 7", v, err)
		}
		if all, failed := s.Pings(); all != 4 || failed != 2 {
			t.Errorf("Pings() = %d, %d, want 4, 2", all, failed)
		}
		if got := ops(s.Take()); !slices.Equal(got, []string{
			"attach(evpn evpn_net1 02:00:00:00:00:01 )=500", "detach(evpn evpn_net1 02:00:00:00:00:01 )=500",
		}) {
			t.Errorf("calls %v, want the two refused", got)
		}
		if n := len(s.Endpoints()); n != 0 {
			t.Errorf("%d endpoints after calls while down", n)
		}
	})

	t.Run("restart_new_value_no_state", func(t *testing.T) {
		s := fakebgp.New(t, nil)
		c := s.Client(t)
		attach(t, c, evpnReq("02:00:00:00:00:01", "10.0.0.1", "tap1"))
		s.Restart(big.NewInt(2000))
		if v, err := c.Ping(t.Context()); err != nil || v.Int64() != 2000 {
			t.Errorf("ping after restart %v %v, want 2000", v, err)
		}
		if eps := s.Endpoints(); len(eps) != 0 {
			t.Errorf("endpoints %v after restart", eps)
		}
		if n := len(s.Peek()); n != 1 {
			t.Errorf("%d calls kept over the restart, want the 1 not taken", n)
		}
	})
}

func TestAttachDetach(t *testing.T) {
	t.Run("vpn-and-api_§2.4_§2.5_plug_refresh_unplug_and_the_instance_with_its_last_endpoint", func(t *testing.T) {
		s := fakebgp.New(t, nil)
		c := s.Client(t)
		a1, a2 := evpnReq("02:00:00:00:00:01", "10.0.0.1", "tap1"), evpnReq("02:00:00:00:00:02", "", "tap2")
		attach(t, c, a1, a2, a1) // a1 twice: a refresh
		want := []string{"evpn_net1 02:00:00:00:00:01 10.0.0.1 tap1", "evpn_net1 02:00:00:00:00:02 - tap2"}
		if got := s.Endpoints(); !slices.Equal(got, want) {
			t.Errorf("endpoints %q, want %q", got, want)
		}
		if err := c.Detach(t.Context(), detachOf(a1)); err != nil {
			t.Fatal(err)
		}
		if _, _, ok := s.InstanceRTs("evpn_net1"); !ok {
			t.Fatal("instance gone with an endpoint left")
		}
		if err := c.Detach(t.Context(), detachOf(a2)); err != nil {
			t.Fatal(err)
		}
		if _, _, ok := s.InstanceRTs("evpn_net1"); ok {
			t.Error("instance left after its last endpoint")
		}
		calls := s.Take()
		if got := ops(calls); !slices.Equal(got, []string{
			"attach(evpn evpn_net1 02:00:00:00:00:01 10.0.0.1)=200", "attach(evpn evpn_net1 02:00:00:00:00:02 )=200",
			"attach(evpn evpn_net1 02:00:00:00:00:01 10.0.0.1)=200",
			"detach(evpn evpn_net1 02:00:00:00:00:01 10.0.0.1)=200", "detach(evpn evpn_net1 02:00:00:00:00:02 )=200",
		}) {
			t.Errorf("calls %v", got)
		}
		// Both views of a call.
		if c := calls[1]; c.Attach.LocalPort.LinuxIf != "tap2" || c.Attach.IPAddress != "" || c.Str("vpn_instance_id") != "evpn_net1" {
			t.Errorf("typed view %+v", c.Attach)
		}
		if _, ok := calls[1].Body["ip_address"]; ok {
			t.Errorf("body %v has ip_address, the client left it out", calls[1].Body)
		}
		if d := calls[3].Detach; d.MACAddress != a1.MACAddress || d.LocalPort.LinuxIf != "tap1" {
			t.Errorf("detach view %+v", d)
		}
		if !strings.HasSuffix(calls[0].Detail(), calls[0].Raw) || !strings.Contains(calls[0].Raw, `"import_rt":["64512:1"]`) {
			t.Errorf("Detail %q, Raw %q", calls[0].Detail(), calls[0].Raw)
		}
		for i := 1; i < len(calls); i++ {
			if calls[i].At.Before(calls[i-1].At) || calls[i].At.IsZero() {
				t.Errorf("call %d at %v, the one before at %v", i, calls[i].At, calls[i-1].At)
			}
		}
		if n := len(s.Take()); n != 0 {
			t.Errorf("a second Take returned %d calls", n)
		}
	})

	t.Run("vpn-and-api_§3.5_last_attach_sets_the_route_targets", func(t *testing.T) {
		s := fakebgp.New(t, nil)
		c := s.Client(t)
		attach(t, c, evpnReq("02:00:00:00:00:01", "10.0.0.1", "tap1"),
			ipvpnReq("02:00:00:00:00:01", "10.0.0.1", "64512:20", "64512:10"),
			ipvpnReq("02:00:00:00:00:01", "10.0.0.1", "64512:30", "64512:40"))
		imp, exp, ok := s.InstanceRTs("ipvpn_net1")
		if !ok || !slices.Equal(imp, []string{"64512:30", "64512:40"}) || !slices.Equal(exp, []string{"64512:30"}) {
			t.Errorf("RTs import %v export %v (exists %v), want the last attach's, sorted", imp, exp, ok)
		}
		if got := s.Peek()[2].Strs("import_rt"); !slices.Equal(got, []string{"64512:30", "64512:40"}) {
			t.Errorf("Strs(import_rt) %v", got)
		}
	})

	t.Run("refusals_are_400s", func(t *testing.T) {
		s := fakebgp.New(t, nil)
		c := s.Client(t)
		a := evpnReq("02:00:00:00:00:01", "10.0.0.1", "tap1")
		attach(t, c, a)
		otherPort := evpnReq("02:00:00:00:00:01", "10.0.0.2", "tap9")
		wrongType := ipvpnReq("02:00:00:00:00:05", "10.0.0.5", "64512:1")
		wrongType.VPNInstanceID = "evpn_net1"
		noEVI := ipvpnReq("02:00:00:00:00:06", "10.0.0.6", "64512:1")
		noEVI.LocalPort.EVPN.ID = "evpn_nowhere"
		badType := evpnReq("02:00:00:00:00:07", "", "tap7")
		badType.VPNType = "EVPN"
		for name, bad := range map[string]client.AttachRequest{
			"vpn-and-api_§2.6_MAC_on_a_second_port": otherPort, "vpn-and-api_§7_#32_other_type": wrongType,
			"vpn-and-api_§7_#74_stitch_to_nothing": noEVI, "vpn-and-api_§7_#9_unknown_vpn_type": badType,
		} {
			if err := c.Attach(t.Context(), bad); status(t, err) != 400 {
				t.Errorf("%s: %v, want a 400", name, err)
			}
		}
		for name, body := range map[string]string{
			"no_import_rt":  `{"vpn_type":"evpn","vpn_instance_id":"e2","mac_address":"02:00:00:00:00:08","local_port":{"linuxif":"tap8"},"export_rt":[]}`,
			"no_export_rt":  `{"vpn_type":"evpn","vpn_instance_id":"e2","mac_address":"02:00:00:00:00:08","local_port":{"linuxif":"tap8"},"import_rt":[]}`,
			"no_local_port": `{"vpn_type":"evpn","vpn_instance_id":"e2","mac_address":"02:00:00:00:00:08","import_rt":[],"export_rt":[]}`,
		} {
			if _, err := c.AttachRaw(t.Context(), []byte(body)); status(t, err) != 400 {
				t.Errorf("%s: %v, want a 400", name, err)
			}
		}
		unknown := detachOf(a)
		unknown.VPNInstanceID = "nope"
		onOtherPort := detachOf(a)
		onOtherPort.LocalPort.LinuxIf = "tap9"
		for name, bad := range map[string]client.DetachRequest{
			"vpn-and-api_§7_#48_unknown_instance": unknown,
			"vpn-and-api_§7_#46_unknown_endpoint": detachOf(evpnReq("02:00:00:00:00:01", "10.0.0.9", "tap1")),
			"control-plane_D7_other_port":         onOtherPort,
		} {
			if err := c.Detach(t.Context(), bad); status(t, err) != 400 {
				t.Errorf("%s: %v, want a 400", name, err)
			}
		}
		if got, want := s.Endpoints(), []string{"evpn_net1 02:00:00:00:00:01 10.0.0.1 tap1"}; !slices.Equal(got, want) {
			t.Errorf("endpoints %q after refusals, want %q", got, want)
		}
		var statuses []int
		for _, call := range s.Take() {
			statuses = append(statuses, call.Status)
		}
		if want := append([]int{200}, slices.Repeat([]int{400}, 10)...); !slices.Equal(statuses, want) {
			t.Errorf("recorded statuses %v, want %v", statuses, want)
		}
	})

	t.Run("a_body_the_client_types_cannot_hold_is_a_400_not_recorded", func(t *testing.T) {
		s := fakebgp.New(t, nil)
		c := s.Client(t)
		for _, body := range []string{`not json`, `[1,2]`, `{"vpn_type":"evpn","mac_address":5}`} {
			if _, err := c.AttachRaw(t.Context(), []byte(body)); status(t, err) != 400 {
				t.Errorf("attach %s: %v, want a 400", body, err)
			}
			if _, err := c.DetachRaw(t.Context(), []byte(body)); status(t, err) != 400 {
				t.Errorf("detach %s: %v, want a 400", body, err)
			}
		}
		if calls := s.Take(); len(calls) != 0 {
			t.Errorf("recorded %v", ops(calls))
		}
	})
}

func TestFaults(t *testing.T) {
	t.Run("FailAttaches_n_then_success", func(t *testing.T) {
		s := fakebgp.New(t, nil)
		c := s.Client(t)
		s.FailAttaches(2)
		a := evpnReq("02:00:00:00:00:01", "10.0.0.1", "tap1")
		var got []int
		for range 3 {
			got = append(got, status(t, c.Attach(t.Context(), a)))
		}
		if !slices.Equal(got, []int{500, 500, 200}) {
			t.Errorf("answers %v, want 500 500 200", got)
		}
	})

	t.Run("FailAttaches_negative_until_zero", func(t *testing.T) {
		s := fakebgp.New(t, nil)
		c := s.Client(t)
		s.FailAttaches(-1)
		a := evpnReq("02:00:00:00:00:01", "10.0.0.1", "tap1")
		for i := range 5 {
			if err := c.Attach(t.Context(), a); status(t, err) != 500 {
				t.Fatalf("attach %d: %v, want a 500", i, err)
			}
		}
		if n := len(s.Endpoints()); n != 0 {
			t.Errorf("%d endpoints from failed attaches", n)
		}
		s.FailAttaches(0)
		if err := c.Attach(t.Context(), a); err != nil {
			t.Errorf("attach after FailAttaches(0): %v", err)
		}
		// A detach is not an attach.
		s.FailAttaches(1)
		if err := c.Detach(t.Context(), detachOf(a)); err != nil {
			t.Errorf("detach with an attach fault pending: %v", err)
		}
	})

	t.Run("Plug_records_no_call_and_reports_refusals", func(t *testing.T) {
		s := fakebgp.New(t, nil)
		s.FailAttaches(-1)
		if err := s.Plug(evpnReq("02:00:00:00:00:01", "", "tapold")); err != nil {
			t.Fatalf("Plug with attach faults: %v, want faults not to apply", err)
		}
		if err := s.Plug(evpnReq("02:00:00:00:00:01", "", "tapother")); err == nil {
			t.Error("Plug of a MAC on a second port succeeded")
		}
		if calls := s.Take(); len(calls) != 0 {
			t.Errorf("Plug recorded %v", ops(calls))
		}
		if got, want := s.Endpoints(), []string{"evpn_net1 02:00:00:00:00:01 - tapold"}; !slices.Equal(got, want) {
			t.Errorf("endpoints %q, want %q", got, want)
		}
	})

	t.Run("Lose_and_LoseInstance_drift_without_calls", func(t *testing.T) {
		s := fakebgp.New(t, nil)
		for _, a := range []client.AttachRequest{evpnReq("02:00:00:00:00:01", "10.0.0.1", "tap1"), evpnReq("02:00:00:00:00:02", "10.0.0.2", "tap2"),
			ipvpnReq("02:00:00:00:00:01", "10.0.0.1", "64512:10")} {
			if err := s.Plug(a); err != nil {
				t.Fatal(err)
			}
		}
		if !s.Lose("evpn_net1", "02:00:00:00:00:02", "10.0.0.2") || s.Lose("evpn_net1", "02:00:00:00:00:02", "10.0.0.2") {
			t.Error("Lose: want true then false")
		}
		if !s.LoseInstance("ipvpn_net1") || s.LoseInstance("ipvpn_net1") {
			t.Error("LoseInstance: want true then false")
		}
		if got, want := s.Endpoints(), []string{"evpn_net1 02:00:00:00:00:01 10.0.0.1 tap1"}; !slices.Equal(got, want) {
			t.Errorf("endpoints %q, want %q", got, want)
		}
		if !s.Lose("evpn_net1", "02:00:00:00:00:01", "10.0.0.1") {
			t.Fatal("Lose of the last endpoint")
		}
		if _, _, ok := s.InstanceRTs("evpn_net1"); ok {
			t.Error("instance left after Lose of its last endpoint")
		}
	})
}

// TestLookingGlass: the subset the agent's sweep reads (vpn-and-api §4).
func TestLookingGlass(t *testing.T) {
	s := fakebgp.New(t, nil)
	c := s.Client(t)
	attach(t, c, evpnReq("02:00:00:00:00:01", "10.0.0.1", "tap1"), evpnReq("02:00:00:00:00:02", "", "tap2"),
		ipvpnReq("02:00:00:00:00:01", "10.0.0.1", "64512:10"))
	var list []struct{ ID, Name string }
	if err := lg(t, c, &list, "vpns", "instances"); err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != "evpn_net1" || list[1].ID != "ipvpn_net1" {
		t.Errorf("instances %+v, want evpn_net1 and ipvpn_net1, sorted", list)
	}
	for id, want := range map[string]string{"evpn_net1": "EVI", "ipvpn_net1": "VRF"} {
		var typ string
		if err := lg(t, c, &typ, "vpns", "instances", id, "instance_type"); err != nil || typ != want {
			t.Errorf("%s instance_type %q %v, want %s", id, typ, err, want)
		}
	}
	var ports map[string]struct {
		Endpoints []struct {
			MAC string  `json:"mac_address"`
			IP  *string `json:"ip_address"`
		} `json:"endpoints"`
	}
	if err := lg(t, c, &ports, "vpns", "instances", "evpn_net1", "ports"); err != nil {
		t.Fatal(err)
	}
	if e := ports["tap1"].Endpoints; len(e) != 1 || e[0].MAC != "02:00:00:00:00:01" || e[0].IP == nil || *e[0].IP != "10.0.0.1" {
		t.Errorf("tap1 endpoints %+v", e)
	}
	if e := ports["tap2"].Endpoints; len(e) != 1 || e[0].IP != nil {
		t.Errorf("tap2 endpoints %+v, want one with a null ip_address", e)
	}
	if err := lg(t, c, &ports, "vpns", "instances", "ipvpn_net1", "ports"); err != nil || len(ports["evpn:evpn_net1"].Endpoints) != 1 {
		t.Errorf("stitched VRF ports %+v %v, want the endpoint on evpn:evpn_net1", ports, err)
	}
	for _, path := range [][]string{{"vpns", "instances", "nope", "ports"}, {"vpns", "instances", "evpn_net1", "routes"}} {
		var v any
		if err := lg(t, c, &v, path...); status(t, err) != 404 {
			t.Errorf("%v: %v, want a 404", path, err)
		}
	}
	s.Restart(big.NewInt(1))
	if err := lg(t, c, &list, "vpns", "instances"); err != nil || len(list) != 0 {
		t.Errorf("instances after restart %+v %v, want []", list, err)
	}
}
