package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// maxBody bounds what is read of one looking-glass answer; a ports map of
// a busy instance is a few hundred kilobytes.
const maxBody = 64 << 20

// lgReader reads looking-glass objects over HTTP.
type lgReader struct {
	client *http.Client
	port   int
	prefix string
}

// url is the address of a looking-glass object. Path elements (instance
// ids come from the daemon and may hold any character) are escaped; the
// original pasted them in as they were.
func (r *lgReader) url(server string, elems ...string) string {
	esc := make([]string, len(elems))
	for i, e := range elems {
		esc[i] = url.PathEscape(e)
	}
	return "http://" + net.JoinHostPort(server, strconv.Itoa(r.port)) + "/" +
		strings.Trim(r.prefix, "/") + "/" + strings.Join(esc, "/")
}

// get decodes the object at elems into v. A 404 leaves v untouched and is
// not an error: the looking glass answers so for items an instance does
// not have (gateway_port of a VRF, a null gateway_port of an EVI), which
// the original treated as empty too.
func (r *lgReader) get(ctx context.Context, v any, server string, elems ...string) error {
	target := r.url(server, elems...)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return fmt.Errorf("requesting %s: %w", target, err)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return fmt.Errorf("requesting %s: %w", target, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return fmt.Errorf("requesting %s: reading the answer: %w", target, err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("requesting %s: %s: %s", target, resp.Status, bytes.TrimSpace(body))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("requesting %s: unexpected answer: %w", target, err)
	}
	return nil
}

// instance is what the graph shows of one VPN instance.
type instance struct {
	server string
	id     string // external instance id
	kind   string // "VRF", "EVI": the first three letters of its name

	imports, exports    []string // route targets, "target:64512:512"
	readvFrom, readvTo  []string
	redirectRTs, attrTo []string // attract_traffic
	ports               []string // linuxif names
	stitchedVRF         string   // EVI only: external id of the VRF it is the gateway port of
}

// collect reads every instance of every server, in server order.
func collect(ctx context.Context, r *lgReader, servers []string) (*graph, error) {
	g := &graph{}
	seenServer := map[string]bool{}
	for _, server := range servers {
		if seenServer[server] {
			continue
		}
		seenServer[server] = true
		g.servers = append(g.servers, server)
		var list []struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		}
		if err := r.get(ctx, &list, server, "vpns", "instances"); err != nil {
			return nil, err
		}
		seenID := map[string]bool{}
		for _, e := range list {
			if seenID[e.ID] {
				continue
			}
			seenID[e.ID] = true
			in, err := readInstance(ctx, r, server, e.ID, firstRunes(e.Name, 3))
			if err != nil {
				return nil, err
			}
			g.instances = append(g.instances, in)
		}
	}
	g.sort()
	return g, nil
}

func readInstance(ctx context.Context, r *lgReader, server, id, kind string) (*instance, error) {
	in := &instance{server: server, id: id, kind: kind}
	base := []string{"vpns", "instances", id}
	at := func(elems ...string) []string { return append(append([]string{}, base...), elems...) }

	if err := r.get(ctx, &in.imports, server, at("route_targets", "import")...); err != nil {
		return nil, err
	}
	if err := r.get(ctx, &in.exports, server, at("route_targets", "export")...); err != nil {
		return nil, err
	}
	var readv struct {
		From []string `json:"from"`
		To   []string `json:"to"`
	}
	if err := r.get(ctx, &readv, server, at("readvertise")...); err != nil {
		return nil, err
	}
	in.readvFrom, in.readvTo = readv.From, readv.To
	// The original looked for attract_traffic inside readvertise, where it
	// never is (vpn-and-api §8 #24); it is an item of the instance.
	var attract struct {
		RedirectRTs []string `json:"redirect_rts"`
		To          []string `json:"to"`
	}
	if err := r.get(ctx, &attract, server, at("attract_traffic")...); err != nil {
		return nil, err
	}
	in.redirectRTs = attract.RedirectRTs
	if len(in.redirectRTs) > 0 {
		in.attrTo = attract.To
		if len(in.attrTo) == 0 {
			in.attrTo = in.readvTo
		}
	}
	var ports map[string]json.RawMessage
	if err := r.get(ctx, &ports, server, at("ports")...); err != nil {
		return nil, err
	}
	for p := range ports {
		in.ports = append(in.ports, p)
	}
	var vrf struct {
		ExternalInstanceID string `json:"external_instance_id"`
	}
	if err := r.get(ctx, &vrf, server, at("gateway_port", "ipvpn")...); err != nil {
		return nil, err
	}
	in.stitchedVRF = vrf.ExternalInstanceID
	return in, nil
}

// firstRunes is s[:n] in characters, as Python slices a str.
func firstRunes(s string, n int) string {
	for i := range s {
		if n == 0 {
			return s[:i]
		}
		n--
	}
	return s
}
