// Package fakebgp is a fake bagpipe-bgp REST API for tests of its clients
// (the agent, the control plane): an httptest server on loopback that
// records every attach_localport and detach_localport in order, keeps
// instances and endpoints the way bagpipe-bgp does, answers /ping with a
// settable value (exact at 128 bits and beyond) and serves the part of
// the looking glass the agent reads: vpns/instances, and an instance's
// instance_type and ports.
//
// Like bagpipe-bgp (vpn-and-api §2.4–§2.6, §3.5–§3.7), it takes a
// repeated attach of an endpoint as a refresh, refuses a MAC address on a
// second port of an instance, an attach to an instance of the other type
// and a VRF endpoint stitched to an E-VPN instance that does not exist,
// lets the last attach set the instance's route targets, drops an
// instance with its last endpoint and refuses a detach from an unknown
// instance or of an unknown endpoint. Every refusal is a 400 with a
// description; bagpipe-bgp answers some of them 500. Two checks go
// beyond bagpipe-bgp to catch client defects: an attach must carry
// import_rt and export_rt (mandatory upstream too, but a client that
// drops them is a bug worth a clear 400), and a detach must name the
// port the endpoint was plugged on (control-plane D7; bagpipe-bgp does
// not compare it).
//
// Faults: SetDown makes every ping and call answer 500; FailAttaches
// makes the next attaches answer 500. Lose and LoseInstance make the
// state drift behind the clients' back, Plug fills it as an earlier
// client would have, Restart is a restarted bagpipe-bgp.
//
// A Server closes in the clean-up of the test that made it.
package fakebgp

import (
	"cmp"
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

	"github.com/bagpipe-go/bagpipe/client"
)

// DefaultPing is the first ping value of a Server made with a nil ping.
const DefaultPing = 1000

// Call is one attach_localport or detach_localport the fake received, in
// two views: Body for checks on raw keys (present, absent, null, numbers
// as float64), Attach or Detach for typed checks.
type Call struct {
	Op     string         // "attach" or "detach"
	Status int            // what the fake answered
	Body   map[string]any // the JSON body as decoded into a map
	Attach client.AttachRequest
	Detach client.DetachRequest
	Raw    string    // the body as received
	At     time.Time // when the fake handled it
}

// Str is the body's key as a string; "" when absent or not a string.
func (c Call) Str(key string) string {
	s, _ := c.Body[key].(string)
	return s
}

// Strs is the body's key as a list of strings (route targets); a value
// that is not a string in the list is "".
func (c Call) Strs(key string) []string {
	return strs(c.Body[key])
}

// String is the call compactly, for comparisons:
// "attach(evpn evpn_net1 02:00:00:00:00:0a 10.0.0.10)=200".
func (c Call) String() string {
	return fmt.Sprintf("%s(%s %s %s %s)=%d", c.Op, c.Str("vpn_type"), c.Str("vpn_instance_id"),
		c.Str("mac_address"), c.Str("ip_address"), c.Status)
}

// Detail is String followed by the whole body, for failure messages.
func (c Call) Detail() string {
	return c.String() + " " + c.Raw
}

// endpoint is (MAC, IP) in an instance, both as the attach sent them.
type endpoint struct{ mac, ip string }

type instance struct {
	vpnType  string
	eps      map[endpoint]string // → the port it is plugged on
	imp, exp []string            // route targets: the last attach wins
}

// Server is the fake. Its methods are safe for concurrent use.
type Server struct {
	srv *httptest.Server

	mu          sync.Mutex // guards everything below
	ping        *big.Int
	down        bool // pings and calls answer 500
	attachFails int  // the next attaches answering 500; < 0: all of them
	pings       int  // pings received, answered either way
	failedPings int
	calls       []Call
	instances   map[string]*instance
}

// New starts a fake whose /ping answers ping (nil: DefaultPing). It
// closes in t's clean-up.
func New(t testing.TB, ping *big.Int) *Server {
	t.Helper()
	if ping == nil {
		ping = big.NewInt(DefaultPing)
	}
	s := &Server{ping: new(big.Int).Set(ping), instances: map[string]*instance{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ping", s.handlePing)
	mux.HandleFunc("POST /attach_localport", s.handleCall("attach"))
	mux.HandleFunc("POST /detach_localport", s.handleCall("detach"))
	mux.HandleFunc("GET /looking-glass/vpns/instances", s.handleInstances)
	mux.HandleFunc("GET /looking-glass/vpns/instances/{id}/{item}", s.handleInstanceItem)
	s.srv = httptest.NewServer(mux)
	t.Cleanup(s.srv.Close)
	return s
}

// URL is the fake's base URL, e.g. "http://127.0.0.1:41234".
func (s *Server) URL() string { return s.srv.URL }

// Client is a REST client of the fake.
func (s *Server) Client(t testing.TB) *client.Client {
	t.Helper()
	c, err := client.New(s.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// SetPing changes the ping value and nothing else: a client sees a
// restart without losing its state, or a value it must keep exact.
func (s *Server) SetPing(ping *big.Int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ping = new(big.Int).Set(ping)
}

// Restart makes the fake a restarted bagpipe-bgp: a new ping value and no
// instance. Faults and recorded calls stay.
func (s *Server) Restart(ping *big.Int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ping = new(big.Int).Set(ping)
	clear(s.instances)
}

// SetDown makes every ping, attach and detach answer 500 (down) or
// answer normally again with the same ping value (up).
func (s *Server) SetDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

// FailAttaches makes the next n attaches answer 500 without touching the
// state; n < 0 makes every attach fail until FailAttaches(0).
func (s *Server) FailAttaches(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.attachFails = n
}

// Pings counts the pings received since the start and, of them, those
// answered 500.
func (s *Server) Pings() (all, failed int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pings, s.failedPings
}

// Take returns the calls received since the last Take and forgets them.
func (s *Server) Take() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.calls
	s.calls = nil
	return c
}

// Peek returns the calls received since the last Take, keeping them.
func (s *Server) Peek() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// Plug attaches req as a client did before the test began: no call is
// recorded and faults do not apply. A refusal is an error.
func (s *Server) Plug(req client.AttachRequest) error {
	b, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("plug: %w", err)
	}
	var body map[string]any
	if err := json.Unmarshal(b, &body); err != nil {
		return fmt.Errorf("plug: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if status, desc := s.plugLocked(body); status != http.StatusOK {
		return fmt.Errorf("plug %s %s: %d %s", req.VPNInstanceID, req.MACAddress, status, desc)
	}
	return nil
}

// Lose removes an endpoint as if bagpipe-bgp had lost it, without a
// call; the instance goes with its last endpoint. It says whether the
// endpoint existed.
func (s *Server) Lose(instanceID, mac, ip string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.instances[instanceID]
	if in == nil {
		return false
	}
	ep := endpoint{mac, ip}
	if _, ok := in.eps[ep]; !ok {
		return false
	}
	s.unplugLocked(instanceID, in, ep)
	return true
}

// LoseInstance removes an instance and its endpoints as if bagpipe-bgp
// had lost them, without a call. It says whether the instance existed.
func (s *Server) LoseInstance(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.instances[id]
	delete(s.instances, id)
	return ok
}

// Endpoints renders the fake's state, one "instance mac ip port" line per
// endpoint ("-" for no IP), sorted.
func (s *Server) Endpoints() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for id, in := range s.instances {
		for ep, port := range in.eps {
			out = append(out, fmt.Sprintf("%s %s %s %s", id, ep.mac, cmp.Or(ep.ip, "-"), port))
		}
	}
	slices.Sort(out)
	return out
}

// InstanceRTs is an instance's import and export route targets, sorted;
// false when it does not exist.
func (s *Server) InstanceRTs(id string) (imp, exp []string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.instances[id]
	if in == nil {
		return nil, nil, false
	}
	imp, exp = slices.Clone(in.imp), slices.Clone(in.exp)
	slices.Sort(imp)
	slices.Sort(exp)
	return imp, exp, true
}

func (s *Server) handlePing(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pings++
	if s.down {
		s.failedPings++
		answer(w, http.StatusInternalServerError, "down")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprint(w, s.ping.String())
}

// answer writes bagpipe-bgp's answer to a JSON client: null on success,
// else its error object (vpn-and-api §2.2).
func answer(w http.ResponseWriter, status int, description string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if status == http.StatusOK {
		fmt.Fprint(w, "null")
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"code": status, "title": http.StatusText(status), "description": description})
}

// handleCall serves attach_localport or detach_localport. A body that
// is not a JSON object the client types can hold is a 400, not recorded.
func (s *Server) handleCall(op string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := decode(op, r.Body)
		if err != nil {
			answer(w, http.StatusBadRequest, fmt.Sprintf("bad body: %v", err))
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		var desc string
		if op == "attach" {
			c.Status, desc = s.attachLocked(c.Body)
		} else {
			c.Status, desc = s.detachLocked(c.Body)
		}
		c.At = time.Now()
		s.calls = append(s.calls, c)
		answer(w, c.Status, desc)
	}
}

// decode reads a call's body into both views.
func decode(op string, r io.Reader) (Call, error) {
	raw, err := io.ReadAll(r)
	if err != nil {
		return Call{}, err
	}
	c := Call{Op: op, Raw: string(raw)}
	if err := json.Unmarshal(raw, &c.Body); err != nil {
		return Call{}, err
	}
	if op == "attach" {
		err = json.Unmarshal(raw, &c.Attach)
	} else {
		err = json.Unmarshal(raw, &c.Detach)
	}
	if err != nil {
		return Call{}, err
	}
	return c, nil
}

// portOf names what local_port plugs: an interface, or "evpn:<id>" for a
// stitched E-VPN instance.
func portOf(body map[string]any) string {
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

// attachLocked is an attach call: faults first, then plugLocked.
func (s *Server) attachLocked(body map[string]any) (int, string) {
	switch {
	case s.down:
		return http.StatusInternalServerError, "down"
	case s.attachFails != 0:
		if s.attachFails > 0 {
			s.attachFails--
		}
		return http.StatusInternalServerError, "injected failure"
	}
	return s.plugLocked(body)
}

// plugLocked checks an attach body and plugs its endpoint.
func (s *Server) plugLocked(body map[string]any) (int, string) {
	id, _ := body["vpn_instance_id"].(string)
	typ, _ := body["vpn_type"].(string)
	mac, _ := body["mac_address"].(string)
	ip, _ := body["ip_address"].(string)
	port := portOf(body)
	_, hasImp := body["import_rt"]
	_, hasExp := body["export_rt"]
	switch {
	case id == "" || mac == "" || port == "" || !hasImp || !hasExp:
		return http.StatusBadRequest, "Missing parameter"
	case typ != "evpn" && typ != "ipvpn":
		return http.StatusBadRequest, "unknown vpn_type " + typ
	}
	if stitched, ok := strings.CutPrefix(port, "evpn:"); ok {
		if e := s.instances[stitched]; e == nil || e.vpnType != "evpn" {
			return http.StatusBadRequest, "E-VPN instance " + stitched + " to stitch does not exist"
		}
	}
	in := s.instances[id]
	if in == nil {
		in = &instance{vpnType: typ, eps: map[endpoint]string{}}
		s.instances[id] = in
	}
	if in.vpnType != typ {
		return http.StatusBadRequest, "Found an existing vpn_instance with a different type"
	}
	for ep, p := range in.eps {
		if ep.mac == mac && p != port {
			return http.StatusBadRequest, "Port information is not consistent. MAC address cannot be bound to two different ports."
		}
	}
	in.eps[endpoint{mac, ip}] = port
	in.imp, in.exp = strs(body["import_rt"]), strs(body["export_rt"])
	return http.StatusOK, ""
}

func (s *Server) detachLocked(body map[string]any) (int, string) {
	if s.down {
		return http.StatusInternalServerError, "down"
	}
	id, _ := body["vpn_instance_id"].(string)
	mac, _ := body["mac_address"].(string)
	ip, _ := body["ip_address"].(string)
	in := s.instances[id]
	if in == nil {
		return http.StatusBadRequest, fmt.Sprintf("VPN %s could not be found", id)
	}
	ep := endpoint{mac, ip}
	if p, ok := in.eps[ep]; !ok || p != portOf(body) {
		return http.StatusBadRequest, "Endpoint not plugged yet on this port, can't unplug"
	}
	s.unplugLocked(id, in, ep)
	return http.StatusOK, ""
}

// unplugLocked removes ep from in, and in with its last endpoint.
func (s *Server) unplugLocked(id string, in *instance, ep endpoint) {
	delete(in.eps, ep)
	if len(in.eps) == 0 {
		delete(s.instances, id)
	}
}

func (s *Server) handleInstances(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []map[string]string{}
	for _, id := range slices.Sorted(maps.Keys(s.instances)) {
		out = append(out, map[string]string{"id": id, "name": "I-" + id})
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// lgEndpoint is an endpoint in the looking glass's ports of an instance.
type lgEndpoint struct {
	MAC string  `json:"mac_address"`
	IP  *string `json:"ip_address"` // null when plugged without an IP
}

func (s *Server) handleInstanceItem(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.instances[r.PathValue("id")]
	if in == nil {
		answer(w, http.StatusNotFound, "no such instance")
		return
	}
	var out any
	switch r.PathValue("item") {
	case "instance_type":
		out = "VRF"
		if in.vpnType == "evpn" {
			out = "EVI"
		}
	case "ports":
		ports := map[string]map[string][]lgEndpoint{}
		for ep, p := range in.eps {
			if ports[p] == nil {
				ports[p] = map[string][]lgEndpoint{"endpoints": {}}
			}
			x := lgEndpoint{MAC: ep.mac}
			if ep.ip != "" {
				x.IP = &ep.ip
			}
			ports[p]["endpoints"] = append(ports[p]["endpoints"], x)
		}
		out = ports
	default:
		answer(w, http.StatusNotFound, "no such item")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}
