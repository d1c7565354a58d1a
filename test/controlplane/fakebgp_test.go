package controlplane

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// call is one attach_localport or detach_localport a fake bagpipe-bgp
// received, with its decoded body and the status it answered.
type call struct {
	op     string // "attach" or "detach"
	status int
	body   map[string]any
	at     time.Time
}

func (c call) str(key string) string {
	s, _ := c.body[key].(string)
	return s
}

func (c call) String() string {
	b, _ := json.Marshal(c.body)
	return fmt.Sprintf("%s=%d %s", c.op, c.status, b)
}

// endpoint is (MAC, IP) in an instance.
type endpoint struct{ mac, ip string }

type instance struct {
	vpnType  string
	eps      map[endpoint]string // → the port it is plugged on
	imp, exp []string            // route targets: the last attach wins
}

// fakeBGP is bagpipe-bgp's REST API as the agent uses it (control-plane
// §4.1): it records every attach and detach in order and keeps endpoints
// the way bagpipe-bgp does (a repeated attach refreshes, a MAC on a
// second port of an instance is refused, stitching needs the E-VPN
// instance, a detach of something unknown is a 400, the last attach sets
// the instance's route targets), answers /ping with a settable 128-bit
// value and serves the looking-glass subset the agent's sweep reads.
// Faults: down (every call fails), failing attaches.
type fakeBGP struct {
	srv *httptest.Server

	mu          sync.Mutex
	ping        *big.Int
	down        bool // pings and calls answer 500
	failAttach  bool // attaches answer 500
	calls       []call
	pings       int // pings answered, either way
	failedPings int
	instances   map[string]*instance
}

func newFakeBGP(t *testing.T, ping *big.Int) *fakeBGP {
	t.Helper()
	f := &fakeBGP{ping: ping, instances: map[string]*instance{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ping", f.handlePing)
	mux.HandleFunc("POST /attach_localport", func(w http.ResponseWriter, r *http.Request) { f.handle(w, r, "attach") })
	mux.HandleFunc("POST /detach_localport", func(w http.ResponseWriter, r *http.Request) { f.handle(w, r, "detach") })
	mux.HandleFunc("GET /looking-glass/vpns/instances", f.handleInstances)
	mux.HandleFunc("GET /looking-glass/vpns/instances/{id}/{item}", f.handleInstanceItem)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeBGP) handlePing(w http.ResponseWriter, _ *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pings++
	if f.down {
		f.failedPings++
		answer(w, http.StatusInternalServerError, "down")
		return
	}
	fmt.Fprint(w, f.ping.String())
}

func answer(w http.ResponseWriter, status int, description string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if status == http.StatusOK {
		fmt.Fprint(w, "null")
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"code": status, "title": http.StatusText(status), "description": description})
}

func (f *fakeBGP) handle(w http.ResponseWriter, r *http.Request, op string) {
	raw, err := io.ReadAll(r.Body)
	var body map[string]any
	if err == nil {
		err = json.Unmarshal(raw, &body)
	}
	if err != nil {
		answer(w, http.StatusBadRequest, fmt.Sprintf("bad body: %v", err))
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var status int
	var desc string
	if op == "attach" {
		status, desc = f.attachLocked(body)
	} else {
		status, desc = f.detachLocked(body)
	}
	f.calls = append(f.calls, call{op: op, status: status, body: body, at: time.Now()})
	answer(w, status, desc)
}

// plugOf names what local_port plugs: an interface, or a stitched E-VPN.
func plugOf(body map[string]any) string {
	lp, _ := body["local_port"].(map[string]any)
	if e, ok := lp["evpn"].(map[string]any); ok {
		id, _ := e["id"].(string)
		return "evpn:" + id
	}
	s, _ := lp["linuxif"].(string)
	return s
}

func strs(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, x := range l {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

func (f *fakeBGP) attachLocked(body map[string]any) (int, string) {
	if f.down || f.failAttach {
		return http.StatusInternalServerError, "injected failure"
	}
	id, _ := body["vpn_instance_id"].(string)
	typ, _ := body["vpn_type"].(string)
	mac, _ := body["mac_address"].(string)
	ip, _ := body["ip_address"].(string)
	port := plugOf(body)
	_, hasImp := body["import_rt"]
	_, hasExp := body["export_rt"]
	switch {
	case id == "" || mac == "" || port == "" || !hasImp || !hasExp:
		return http.StatusBadRequest, "Missing parameter"
	case typ != "evpn" && typ != "ipvpn":
		return http.StatusBadRequest, "unknown vpn_type " + typ
	}
	if stitched, ok := strings.CutPrefix(port, "evpn:"); ok {
		if e := f.instances[stitched]; e == nil || e.vpnType != "evpn" {
			return http.StatusBadRequest, "E-VPN instance " + stitched + " to stitch does not exist"
		}
	}
	in := f.instances[id]
	if in == nil {
		in = &instance{vpnType: typ, eps: map[endpoint]string{}}
		f.instances[id] = in
	}
	if in.vpnType != typ {
		return http.StatusBadRequest, "Found an existing vpn_instance with a different type"
	}
	for ep, p := range in.eps {
		if ep.mac == mac && p != port {
			return http.StatusBadRequest, "MAC address cannot be bound to two different ports"
		}
	}
	in.eps[endpoint{mac, ip}] = port
	in.imp, in.exp = strs(body["import_rt"]), strs(body["export_rt"])
	return http.StatusOK, ""
}

func (f *fakeBGP) detachLocked(body map[string]any) (int, string) {
	if f.down {
		return http.StatusInternalServerError, "injected failure"
	}
	id, _ := body["vpn_instance_id"].(string)
	mac, _ := body["mac_address"].(string)
	ip, _ := body["ip_address"].(string)
	in := f.instances[id]
	if in == nil {
		return http.StatusBadRequest, fmt.Sprintf("VPN %s could not be found", id)
	}
	ep := endpoint{mac, ip}
	if p, ok := in.eps[ep]; !ok || p != plugOf(body) {
		return http.StatusBadRequest, "Endpoint not plugged yet on this port, can't unplug"
	}
	delete(in.eps, ep)
	if len(in.eps) == 0 {
		delete(f.instances, id)
	}
	return http.StatusOK, ""
}

func (f *fakeBGP) handleInstances(w http.ResponseWriter, _ *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := []map[string]string{}
	for _, id := range slices.Sorted(maps.Keys(f.instances)) {
		out = append(out, map[string]string{"id": id, "name": "I-" + id})
	}
	_ = json.NewEncoder(w).Encode(out)
}

func (f *fakeBGP) handleInstanceItem(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	in := f.instances[r.PathValue("id")]
	if in == nil {
		answer(w, http.StatusNotFound, "no such instance")
		return
	}
	switch r.PathValue("item") {
	case "instance_type":
		typ := "VRF"
		if in.vpnType == "evpn" {
			typ = "EVI"
		}
		_ = json.NewEncoder(w).Encode(typ)
	case "ports":
		type ep struct {
			MAC string  `json:"mac_address"`
			IP  *string `json:"ip_address"`
		}
		ports := map[string]map[string][]ep{}
		for e, p := range in.eps {
			if ports[p] == nil {
				ports[p] = map[string][]ep{"endpoints": {}}
			}
			x := ep{MAC: e.mac}
			if e.ip != "" {
				x.IP = &e.ip
			}
			ports[p]["endpoints"] = append(ports[p]["endpoints"], x)
		}
		_ = json.NewEncoder(w).Encode(ports)
	default:
		answer(w, http.StatusNotFound, "no such item")
	}
}

// restart makes the fake a restarted bagpipe-bgp: a new ping value, no
// state.
func (f *fakeBGP) restart(ping *big.Int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ping = ping
	clear(f.instances)
}

func (f *fakeBGP) set(fn func(*fakeBGP)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// take returns the calls received since the last take.
func (f *fakeBGP) take() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

// peek returns the calls received since the last take, keeping them.
func (f *fakeBGP) peek() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// endpoints renders the fake's state, one "instance mac ip port" line per
// endpoint, sorted.
func (f *fakeBGP) endpoints() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for id, in := range f.instances {
		for ep, p := range in.eps {
			out = append(out, fmt.Sprintf("%s %s %s %s", id, ep.mac, ep.ip, p))
		}
	}
	slices.Sort(out)
	return out
}

// instanceRTs is an instance's import and export route targets, sorted;
// false when it does not exist.
func (f *fakeBGP) instanceRTs(id string) (imp, exp []string, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	in := f.instances[id]
	if in == nil {
		return nil, nil, false
	}
	imp, exp = slices.Clone(in.imp), slices.Clone(in.exp)
	slices.Sort(imp)
	slices.Sort(exp)
	return imp, exp, true
}
