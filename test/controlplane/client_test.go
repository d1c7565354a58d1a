package controlplane

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
)

// M is a JSON object.
type M = map[string]any

// reply is an API answer.
type reply struct {
	status int
	body   M
	raw    string
}

// obj is the object under key.
func (r reply) obj(key string) M {
	m, _ := r.body[key].(map[string]any)
	return m
}

// list is the list of objects under key.
func (r reply) list(key string) []M {
	items, _ := r.body[key].([]any)
	out := make([]M, len(items))
	for i, it := range items {
		out[i], _ = it.(map[string]any)
	}
	return out
}

// errType is the NeutronError type of an error answer.
func (r reply) errType() string {
	s, _ := r.obj("NeutronError")["type"].(string)
	return s
}

// send sends a request to the server's REST API as token, body (if any)
// JSON-encoded. It does not touch the test: any goroutine may call it.
func (c *cluster) send(token, method, path string, body any) (reply, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return reply{}, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(c.t.Context(), method, c.apiURL+path, rd)
	if err != nil {
		return reply{}, err
	}
	req.Header.Set("X-Auth-Token", token)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return reply{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return reply{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	r := reply{status: res.StatusCode, raw: string(raw)}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &r.body); err != nil {
			return r, fmt.Errorf("%s %s: %d with a body that is not a JSON object: %q", method, path, res.StatusCode, raw)
		}
	}
	return r, nil
}

// create POSTs a resource and returns it; any goroutine may call it.
func (c *cluster) create(collection, key string, fields M) (M, error) {
	r, err := c.send(admin, "POST", "/v2.0/"+collection, M{key: fields})
	if err == nil && r.status != 201 {
		err = fmt.Errorf("POST /v2.0/%s: %d %s", collection, r.status, r.raw)
	}
	return r.obj(key), err
}

// do is send for the test's goroutine: a failure to talk is fatal.
func (c *cluster) do(token, method, path string, body any) reply {
	c.t.Helper()
	r, err := c.send(token, method, path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	return r
}

// as sends a request that must answer status.
func (c *cluster) as(token string, status int, method, path string, body any) reply {
	c.t.Helper()
	r := c.do(token, method, path, body)
	if r.status != status {
		c.t.Fatalf("%s %s %v: got %d, want %d: %s", method, path, body, r.status, status, r.raw)
	}
	return r
}

// must is as for the admin.
func (c *cluster) must(status int, method, path string, body any) reply {
	c.t.Helper()
	return c.as(admin, status, method, path, body)
}

// fails sends a request as the admin that must fail with status and, if
// typ is not "", that NeutronError type.
func (c *cluster) fails(status int, typ, method, path string, body any) reply {
	c.t.Helper()
	r := c.must(status, method, path, body)
	if typ != "" && r.errType() != typ {
		c.t.Fatalf("%s %s: error type %q, want %s: %s", method, path, r.errType(), typ, r.raw)
	}
	return r
}

// with is m plus the keys of extra (extra wins).
func with(m M, extra M) M {
	out := M{}
	for k, v := range m {
		out[k] = v
	}
	for k, v := range extra {
		out[k] = v
	}
	return out
}

// network creates a network of project (admin) and returns its id.
func (c *cluster) network(project, name string, fields M) string {
	c.t.Helper()
	b := with(M{"name": name, "project_id": project}, fields)
	return c.must(201, "POST", "/v2.0/networks", M{"network": b}).obj("network")["id"].(string)
}

// vxlan creates a vxlan network with a VNI and one IPv4 subnet (gateway
// the first address); it returns the network and subnet ids.
func (c *cluster) vxlan(project, name string, vni int, cidr string) (string, string) {
	c.t.Helper()
	n := c.network(project, name, M{"provider:network_type": "vxlan", "provider:segmentation_id": vni})
	return n, c.subnet(project, n, cidr, nil)
}

func (c *cluster) subnet(project, network, cidr string, fields M) string {
	c.t.Helper()
	ipv := 4
	if netip.MustParsePrefix(cidr).Addr().Is6() {
		ipv = 6
	}
	b := with(M{"network_id": network, "cidr": cidr, "ip_version": ipv, "project_id": project}, fields)
	return c.must(201, "POST", "/v2.0/subnets", M{"subnet": b}).obj("subnet")["id"].(string)
}

// port is a port as the scenarios use it.
type port struct {
	id, net, mac string
	ip           string // first IPv4 fixed IP, "" if none
	obj          M
}

func portOf(o M) port {
	p := port{obj: o}
	p.id, _ = o["id"].(string)
	p.net, _ = o["network_id"].(string)
	p.mac, _ = o["mac_address"].(string)
	ips, _ := o["fixed_ips"].([]any)
	for _, x := range ips {
		s, _ := x.(map[string]any)["ip_address"].(string)
		if a, err := netip.ParseAddr(s); err == nil && a.Is4() {
			p.ip = s
			break
		}
	}
	return p
}

// port creates a port of project p1 on network, a VM port
// (compute:nova) bound to host ("" unbound) unless fields say otherwise.
func (c *cluster) port(network, host string, fields M) port {
	c.t.Helper()
	b := with(M{"network_id": network, "project_id": "p1", "device_owner": "compute:nova", "device_id": "vm"}, fields)
	if host != "" {
		b["binding:host_id"] = host
	}
	return portOf(c.must(201, "POST", "/v2.0/ports", M{"port": b}).obj("port"))
}

// updatePort PUTs fields on a port.
func (c *cluster) updatePort(id string, fields M) port {
	c.t.Helper()
	return portOf(c.must(200, "PUT", "/v2.0/ports/"+id, M{"port": fields}).obj("port"))
}

func (c *cluster) deletePort(id string) {
	c.t.Helper()
	c.must(204, "DELETE", "/v2.0/ports/"+id, nil)
}

func (c *cluster) getPort(id string) M {
	c.t.Helper()
	return c.must(200, "GET", "/v2.0/ports/"+id, nil).obj("port")
}

func (c *cluster) router(project, name string, fields M) string {
	c.t.Helper()
	b := with(M{"name": name, "project_id": project}, fields)
	return c.must(201, "POST", "/v2.0/routers", M{"router": b}).obj("router")["id"].(string)
}

// addInterface adds an interface on subnet to router; it returns the
// interface port.
func (c *cluster) addInterface(router, subnet string) port {
	c.t.Helper()
	r := c.must(200, "PUT", "/v2.0/routers/"+router+"/add_router_interface", M{"subnet_id": subnet})
	return portOf(c.getPort(r.body["port_id"].(string)))
}

func (c *cluster) removeInterface(router, subnet string) {
	c.t.Helper()
	c.must(200, "PUT", "/v2.0/routers/"+router+"/remove_router_interface", M{"subnet_id": subnet})
}

// bgpvpn creates a BGPVPN of project (admin) and returns its id.
func (c *cluster) bgpvpn(project string, fields M) string {
	c.t.Helper()
	b := with(M{"project_id": project}, fields)
	return c.must(201, "POST", "/v2.0/bgpvpn/bgpvpns", M{"bgpvpn": b}).obj("bgpvpn")["id"].(string)
}

func (c *cluster) updateBGPVPN(id string, fields M) M {
	c.t.Helper()
	return c.must(200, "PUT", "/v2.0/bgpvpn/bgpvpns/"+id, M{"bgpvpn": fields}).obj("bgpvpn")
}

// assocPath is the collection of kind ("network", "router", "port")
// associations of a BGPVPN.
func assocPath(bgpvpn, kind string) string {
	return "/v2.0/bgpvpn/bgpvpns/" + bgpvpn + "/" + kind + "_associations"
}

// assoc creates a kind association of bgpvpn in project p1 and returns
// its id.
func (c *cluster) assoc(bgpvpn, kind string, fields M) string {
	c.t.Helper()
	key := kind + "_association"
	b := with(M{"project_id": "p1"}, fields)
	return c.must(201, "POST", assocPath(bgpvpn, kind), M{key: b}).obj(key)["id"].(string)
}

// netAssoc associates network to bgpvpn.
func (c *cluster) netAssoc(bgpvpn, network string) string {
	c.t.Helper()
	return c.assoc(bgpvpn, "network", M{"network_id": network})
}

func (c *cluster) deleteAssoc(bgpvpn, kind, id string) {
	c.t.Helper()
	c.must(204, "DELETE", assocPath(bgpvpn, kind)+"/"+id, nil)
}

// ids are the "id" of objects.
func ids(objs []M) []string {
	out := make([]string, len(objs))
	for i, o := range objs {
		out[i], _ = o["id"].(string)
	}
	return out
}

// fixture is §5's common fixture: network net1 of p1, vxlan VNI 101,
// subnet 192.0.2.0/24 with gateway 192.0.2.1 (TEST-NET-1 for the spec's
// 10.0.0.0/24).
type fixture struct{ net1, subnet1 string }

func (c *cluster) fixture() fixture {
	c.t.Helper()
	n, s := c.vxlan("p1", "net1", 101, "192.0.2.0/24")
	return fixture{net1: n, subnet1: s}
}

// Addresses of the fixture.
const gateway1 = "192.0.2.1"
