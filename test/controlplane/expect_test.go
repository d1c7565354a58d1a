package controlplane

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/bagpipe-go/bagpipe/internal/fakebgp"
)

// absentKey, as an expected value, says the key must not be in the body.
type absentKey struct{}

var absent = absentKey{}

// exp is an expected call: its kind and the keys of its body that must
// have these values (other keys are not checked). Lists of strings (the
// route targets) compare as sets.
type exp struct {
	op   string
	keys M
}

func attach(keys M) exp { return exp{op: "attach", keys: keys} }

// detachKeys are what a detach says (§4.4): the endpoint, and the
// local_port of its attach (D7).
var detachKeys = []string{"vpn_type", "vpn_instance_id", "mac_address", "ip_address", "local_port"}

// detach expects the detach of what keys (an attach's) describe: the
// detach keys only, and no route target.
func detach(keys M) exp {
	d := M{"import_rt": absent, "export_rt": absent}
	for _, k := range detachKeys {
		if v, ok := keys[k]; ok {
			d[k] = v
		}
	}
	return exp{op: "detach", keys: d}
}

func (e exp) String() string {
	b, _ := json.Marshal(e.keys)
	return e.op + " " + strings.ReplaceAll(string(b), `{}`, "<absent>")
}

// norm makes a decoded JSON value comparable: lists of strings sorted.
func norm(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = norm(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		allStrings := true
		for i, e := range x {
			out[i] = norm(e)
			_, ok := e.(string)
			allStrings = allStrings && ok
		}
		if allStrings {
			slices.SortFunc(out, func(a, b any) int { return strings.Compare(a.(string), b.(string)) })
		}
		return out
	}
	return v
}

// asJSON is v as encoding/json decodes it (numbers float64...), normed.
func asJSON(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		panic(err)
	}
	return norm(out)
}

// matches says whether c is the call e expects.
func (e exp) matches(c fakebgp.Call) bool {
	if c.Op != e.op {
		return false
	}
	for k, want := range e.keys {
		got, present := c.Body[k]
		if _, ok := want.(absentKey); ok {
			if present {
				return false
			}
			continue
		}
		if !present || !reflect.DeepEqual(norm(got), asJSON(want)) {
			return false
		}
	}
	return true
}

// assign finds a one-to-one matching of calls to expectations (each
// expectation one call, no call left over).
func assign(calls []fakebgp.Call, want []exp) bool {
	if len(calls) != len(want) {
		return false
	}
	used := make([]bool, len(calls))
	var try func(i int) bool
	try = func(i int) bool {
		if i == len(want) {
			return true
		}
		for j, c := range calls {
			if !used[j] && want[i].matches(c) {
				used[j] = true
				if try(i + 1) {
					return true
				}
				used[j] = false
			}
		}
		return false
	}
	return try(0)
}

// passRank orders the calls of one reconciliation pass (§4.4, §4.7):
// detaches before attaches, ipvpn detaches before evpn ones, evpn
// attaches before ipvpn ones.
func passRank(c fakebgp.Call) int {
	switch typ := c.Str("vpn_type"); {
	case c.Op == "detach" && typ == "ipvpn":
		return 0
	case c.Op == "detach":
		return 1
	case typ == "evpn":
		return 2
	}
	return 3
}

// orderProblem says how calls break the order of a pass, "" if they do
// not.
func orderProblem(calls []fakebgp.Call) string {
	for i := 1; i < len(calls); i++ {
		if passRank(calls[i]) < passRank(calls[i-1]) {
			return fmt.Sprintf("call %d (%s %s) after call %d (%s %s): a pass detaches ipvpn then evpn, then attaches evpn then ipvpn",
				i+1, calls[i].Op, calls[i].Str("vpn_type"), i, calls[i-1].Op, calls[i-1].Str("vpn_type"))
		}
	}
	return ""
}

func render(calls []fakebgp.Call) string {
	if len(calls) == 0 {
		return "  (none)"
	}
	var b strings.Builder
	for _, c := range calls {
		b.WriteString("  " + c.Detail() + "\n")
	}
	return b.String()
}

// expect checks what host's bagpipe-bgp received since the last take
// (call it after settle): exactly the calls want describes, in any order
// between them but in the order of a reconciliation pass, every one
// answered 200. It returns the calls and forgets them.
func (c *cluster) expect(host string, want ...exp) []fakebgp.Call {
	c.t.Helper()
	calls := c.hosts[host].bgp.Take()
	ok := assign(calls, want)
	if !ok {
		var w strings.Builder
		for _, e := range want {
			w.WriteString("  " + e.String() + "\n")
		}
		if len(want) == 0 {
			w.WriteString("  (none)\n")
		}
		c.t.Errorf("bbgp(%s) received:\n%swant:\n%s", host, render(calls), w.String())
		return calls
	}
	for _, call := range calls {
		if call.Status != 200 {
			c.t.Errorf("bbgp(%s) answered %d to %s", host, call.Status, call.Detail())
		}
	}
	if p := orderProblem(calls); p != "" {
		c.t.Errorf("bbgp(%s): %s:\n%s", host, p, render(calls))
	}
	return calls
}

// expectNothing checks that the hosts' bagpipe-bgp received no call.
func (c *cluster) expectNothing(hosts ...string) {
	c.t.Helper()
	for _, h := range hosts {
		c.expect(h)
	}
}

// Expected keys of attaches and detaches on OVS-flavour hosts (§4.2,
// §4.3 b/c), from the host's local VLAN of the network.

// lpEVPN is the local_port of an E-VPN attachment on an OVS host.
func (c *cluster) lpEVPN(host, network string) M {
	v := c.hosts[host].vlan(network)
	return M{"linuxif": fmt.Sprintf("patch2tun:%d", v), "vlan": v}
}

// lpIPVPN is the local_port of an IP-VPN attachment on an OVS host.
func (c *cluster) lpIPVPN(host, network string) M {
	v := c.hosts[host].vlan(network)
	return M{"linuxif": fmt.Sprintf("patch2tun:%d", v), "ovs": M{"plugged": true, "port_number": ofportToTun, "vlan": v}}
}

// ipKey is p's ip_address as expected: its first IPv4, or no key.
func ipKey(p port) any {
	if p.ip == "" {
		return absent
	}
	return p.ip
}

// evpnKeys identify p's E-VPN attachment on host (OVS).
func (c *cluster) evpnKeys(host string, p port) M {
	return M{"vpn_type": "evpn", "vpn_instance_id": "evpn_" + p.net, "mac_address": p.mac, "ip_address": ipKey(p),
		"local_port": c.lpEVPN(host, p.net)}
}

// ipvpnKeys identify p's IP-VPN fixed-IP attachment on the network's VRF
// on host (OVS).
func (c *cluster) ipvpnKeys(host string, p port) M {
	return M{"vpn_type": "ipvpn", "vpn_instance_id": "ipvpn_" + p.net, "mac_address": p.mac, "ip_address": ipKey(p),
		"local_port": c.lpIPVPN(host, p.net)}
}

// rt is the same route targets imported and exported.
func rt(rts ...string) M { return M{"import_rt": rts, "export_rt": rts} }

// ml2 is the ML2 E-VPN attach of p on host with the fixture's VNI 101 and
// AS 64512 (§4.3 a, OVS local_port).
func (c *cluster) ml2(host string, p port) exp {
	return attach(with(c.evpnKeys(host, p), with(rt("64512:101"), M{"vni": 101})))
}

// callsOf are the calls about MAC mac.
func callsOf(calls []fakebgp.Call, mac string) []fakebgp.Call {
	var out []fakebgp.Call
	for _, c := range calls {
		if c.Str("mac_address") == mac {
			out = append(out, c)
		}
	}
	return out
}
