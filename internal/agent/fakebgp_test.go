package agent

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

	"github.com/bagpipe-go/bagpipe/client"
)

// call is one REST call the fake bagpipe-bgp received.
type call struct {
	Op     string // "attach" or "detach"
	Status int    // what the fake answered
	Attach client.AttachRequest
	Detach client.DetachRequest
	Raw    string
}

func (c call) String() string {
	if c.Op == "attach" {
		return fmt.Sprintf("attach(%s %s %s %s)=%d", c.Attach.VPNType, c.Attach.VPNInstanceID, c.Attach.MACAddress, c.Attach.IPAddress, c.Status)
	}
	return fmt.Sprintf("detach(%s %s %s %s)=%d", c.Detach.VPNType, c.Detach.VPNInstanceID, c.Detach.MACAddress, c.Detach.IPAddress, c.Status)
}

// fakeEndpoint is (MAC, IP) in an instance.
type fakeEndpoint struct{ mac, ip string }

type fakeInstance struct {
	vpnType string
	eps     map[fakeEndpoint]string // → port name
	rts     []string                // import RTs, last attach wins
}

// fakeBGP is a bagpipe-bgp REST API for tests: it records the attach and
// detach calls, keeps endpoints as bagpipe-bgp does (a repeated attach is
// a refresh, a MAC on a second port is refused, a detach of something
// unknown is a 400), answers /ping with a settable value and serves the
// looking glass subset the agent reads. Faults: failing pings, attaches
// answered 500.
type fakeBGP struct {
	srv *httptest.Server

	mu          sync.Mutex
	ping        *big.Int
	pingFails   int // next pings answered 500
	attachFails int // next attaches answered 500
	down        bool
	calls       []call
	instances   map[string]*fakeInstance
	pings       int
}

func newFakeBGP(t *testing.T) *fakeBGP {
	t.Helper()
	f := &fakeBGP{ping: big.NewInt(1000), instances: map[string]*fakeInstance{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ping", f.handlePing)
	mux.HandleFunc("POST /attach_localport", f.handleAttach)
	mux.HandleFunc("POST /detach_localport", f.handleDetach)
	mux.HandleFunc("GET /looking-glass/vpns/instances", f.handleInstances)
	mux.HandleFunc("GET /looking-glass/vpns/instances/{id}/{item}", f.handleInstanceItem)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

// client is a client of the fake.
func (f *fakeBGP) client(t *testing.T) *client.Client {
	t.Helper()
	c, err := client.New(f.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (f *fakeBGP) handlePing(w http.ResponseWriter, _ *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pings++
	if f.down || f.pingFails > 0 {
		if f.pingFails > 0 {
			f.pingFails--
		}
		http.Error(w, "down", http.StatusInternalServerError)
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

func portName(lp client.LocalPort) string {
	if lp.EVPN != nil {
		return "evpn:" + lp.EVPN.ID
	}
	return lp.LinuxIf
}

func (f *fakeBGP) handleAttach(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	var req client.AttachRequest
	if err := json.Unmarshal(raw, &req); err != nil {
		answer(w, 400, err.Error())
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	status, desc := f.attachLocked(&req)
	f.calls = append(f.calls, call{Op: "attach", Status: status, Attach: req, Raw: string(raw)})
	answer(w, status, desc)
}

func (f *fakeBGP) attachLocked(req *client.AttachRequest) (int, string) {
	if f.down {
		return 500, "down"
	}
	if f.attachFails > 0 {
		f.attachFails--
		return 500, "injected failure"
	}
	if req.VPNInstanceID == "" || req.MACAddress == "" || portName(req.LocalPort) == "" {
		return 400, "Missing parameter"
	}
	in := f.instances[req.VPNInstanceID]
	if in == nil {
		in = &fakeInstance{vpnType: req.VPNType, eps: map[fakeEndpoint]string{}}
		f.instances[req.VPNInstanceID] = in
	}
	if in.vpnType != req.VPNType {
		return 400, "Found an existing vpn_instance with a different type"
	}
	port := portName(req.LocalPort)
	for ep, p := range in.eps {
		if ep.mac == req.MACAddress && p != port {
			return 400, "Port information is not consistent. MAC address cannot be bound to two different ports."
		}
	}
	in.eps[fakeEndpoint{req.MACAddress, req.IPAddress}] = port
	in.rts = slices.Clone(req.ImportRT)
	return 200, ""
}

func (f *fakeBGP) handleDetach(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	var req client.DetachRequest
	if err := json.Unmarshal(raw, &req); err != nil {
		answer(w, 400, err.Error())
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	status, desc := f.detachLocked(&req)
	f.calls = append(f.calls, call{Op: "detach", Status: status, Detach: req, Raw: string(raw)})
	answer(w, status, desc)
}

func (f *fakeBGP) detachLocked(req *client.DetachRequest) (int, string) {
	if f.down {
		return 500, "down"
	}
	in := f.instances[req.VPNInstanceID]
	if in == nil {
		return 400, fmt.Sprintf("VPN %s could not be found", req.VPNInstanceID)
	}
	ep := fakeEndpoint{req.MACAddress, req.IPAddress}
	if _, ok := in.eps[ep]; !ok {
		return 400, "Endpoint not plugged yet, can't unplug"
	}
	delete(in.eps, ep)
	if len(in.eps) == 0 {
		delete(f.instances, req.VPNInstanceID)
	}
	return 200, ""
}

func (f *fakeBGP) handleInstances(w http.ResponseWriter, _ *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []map[string]string
	for _, id := range slices.Sorted(maps.Keys(f.instances)) {
		out = append(out, map[string]string{"id": id, "name": "I-" + id})
	}
	if out == nil {
		out = []map[string]string{}
	}
	_ = json.NewEncoder(w).Encode(out)
}

func (f *fakeBGP) handleInstanceItem(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	in := f.instances[r.PathValue("id")]
	if in == nil {
		answer(w, 404, "")
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
				ip := e.ip
				x.IP = &ip
			}
			ports[p]["endpoints"] = append(ports[p]["endpoints"], x)
		}
		_ = json.NewEncoder(w).Encode(ports)
	default:
		answer(w, 404, "")
	}
}

// restart makes the fake a restarted bagpipe-bgp: a new ping value and no
// state.
func (f *fakeBGP) restart(ping *big.Int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ping = ping
	clear(f.instances)
}

// plug records an endpoint as if attached by someone (a previous agent).
func (f *fakeBGP) plug(req client.AttachRequest) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attachLocked(&req)
}

func (f *fakeBGP) set(fn func(f *fakeBGP)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// takeCalls returns the calls recorded since the last take.
func (f *fakeBGP) takeCalls() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

// endpoints renders the fake's state, one "instance mac ip port" line
// per endpoint, sorted.
func (f *fakeBGP) endpoints() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for id, in := range f.instances {
		for ep, p := range in.eps {
			out = append(out, strings.TrimSpace(fmt.Sprintf("%s %s %s %s", id, ep.mac, p, ep.ip)))
		}
	}
	slices.Sort(out)
	return out
}
