package request

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
)

// rtItem is one element of an RT list before its syntax is checked: a
// string, or another scalar the original would also have tried (and
// failed) to read as an RT.
type rtItem struct {
	text     string // the string, or the Python rendering of the value
	isString bool
}

// splitRTs reads import_rt/export_rt: a list, or a string split on commas
// (regex ",+ *"). A value of another type, or a list holding lists or
// objects, is refused here, where the original failed with a 500 (it builds
// a set of the elements at this point).
func splitRTs(field string, raw json.RawMessage) ([]rtItem, error) {
	shapeErr := inputErr(field, "'"+field+"' must be a list of route targets or a comma-separated string")
	switch kind(raw) {
	case kindString:
		s, _ := asString(raw)
		var items []rtItem
		for _, p := range rtSplit.Split(s, -1) {
			items = append(items, rtItem{text: p, isString: true})
		}
		return items, nil
	case kindArray:
		var elems []json.RawMessage
		if err := json.Unmarshal(raw, &elems); err != nil {
			return nil, shapeErr
		}
		items := make([]rtItem, 0, len(elems))
		for _, e := range elems {
			switch kind(e) {
			case kindArray, kindObject:
				return nil, shapeErr
			case kindString:
				s, _ := asString(e)
				items = append(items, rtItem{text: s, isString: true})
			default:
				items = append(items, rtItem{text: pythonStr(e)})
			}
		}
		return items, nil
	}
	return nil, shapeErr
}

// rtList reads a list of RTs that must be a JSON list (readvertise,
// attract_traffic): any element that is not a string is malformed.
func rtList(field string, raw json.RawMessage) ([]bgp.RT, error) {
	if kind(raw) != kindArray {
		return nil, inputErr(field, "'"+field+"' must be a list of route targets")
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil {
		return nil, inputErr(field, "'"+field+"' must be a list of route targets")
	}
	items := make([]rtItem, 0, len(elems))
	for _, e := range elems {
		s, ok := asString(e)
		if !ok {
			s = pythonStr(e)
		}
		items = append(items, rtItem{text: s, isString: ok})
	}
	return convertRTs(field, items, false)
}

// convertRTs checks the syntax of each RT; empty strings are skipped.
// With dedupe, repeated RTs are dropped (first one kept).
func convertRTs(field string, items []rtItem, dedupe bool) ([]bgp.RT, error) {
	rts := make([]bgp.RT, 0, len(items))
	seen := make(map[bgp.RT]bool, len(items))
	for _, it := range items {
		if it.isString && it.text == "" {
			continue
		}
		rt, ok := parseAPIRT(it.text)
		if !it.isString || !ok {
			// The original answers 500 and logs "Malformed route target".
			return nil, inputErr(field, fmt.Sprintf("Malformed route target in '%s': '%s'", field, it.text))
		}
		if dedupe {
			if seen[rt] {
				continue
			}
			seen[rt] = true
		}
		rts = append(rts, rt)
	}
	return rts, nil
}

func objectFields(field string, raw json.RawMessage, what string) (fields, error) {
	var f fields
	if kind(raw) != kindObject || json.Unmarshal(raw, &f) != nil {
		return nil, inputErr(field, "'"+field+"' must be "+what)
	}
	return f, nil
}

// parseReadvertise reads a truthy "readvertise": both lists are required.
func parseReadvertise(raw json.RawMessage) (*Readvertise, error) {
	f, err := objectFields("readvertise", raw, "an object with 'from_rt' and 'to_rt' lists")
	if err != nil {
		return nil, err
	}
	r := &Readvertise{}
	for _, k := range []string{"from_rt", "to_rt"} {
		v, ok := f[k]
		if !ok {
			return nil, missing("readvertise/" + k)
		}
		rts, err := rtList("readvertise/"+k, v)
		if err != nil {
			return nil, err
		}
		if k == "from_rt" {
			r.FromRTs = rts
		} else {
			r.ToRTs = rts
		}
	}
	return r, nil
}

// parseAttractTraffic reads a truthy "attract_traffic". redirect_rts is
// required here (the original fails on it at every attach); the other
// checks the original makes only at instance creation are CheckCreation.
func parseAttractTraffic(raw json.RawMessage) (*AttractTraffic, error) {
	f, err := objectFields("attract_traffic", raw, "an object")
	if err != nil {
		return nil, err
	}
	at := &AttractTraffic{}
	v, ok := f["redirect_rts"]
	if !ok {
		return nil, missing("attract_traffic/redirect_rts")
	}
	if at.RedirectRTs, err = rtList("attract_traffic/redirect_rts", v); err != nil {
		return nil, err
	}
	if f.given("to_rt") {
		if at.ToRTs, err = rtList("attract_traffic/to_rt", f["to_rt"]); err != nil {
			return nil, err
		}
	}
	if v, ok := f["static_destination_prefixes"]; ok {
		at.HasStaticDestinationPrefixes = true
		if kind(v) != kindNull {
			const field = "attract_traffic/static_destination_prefixes"
			var elems []json.RawMessage
			if kind(v) != kindArray || json.Unmarshal(v, &elems) != nil {
				return nil, inputErr(field, "'"+field+"' must be a list of prefixes")
			}
			for _, e := range elems {
				s, isString := asString(e)
				p, ok := parseIPPrefix(s)
				if !isString || !ok {
					return nil, inputErr(field, fmt.Sprintf("'%s' holds an invalid prefix: %s", field, pythonStr(e)))
				}
				at.StaticDestinationPrefixes = append(at.StaticDestinationPrefixes, p)
				at.StaticDestinationStrings = append(at.StaticDestinationStrings, s)
			}
		}
	}
	if v, ok := f["classifier"]; ok && kind(v) != kindNull {
		if at.Classifier, err = parseClassifier(v); err != nil {
			return nil, err
		}
	}
	return at, nil
}

// snakeCase is the original's key translation for classifier keys: "_"
// before each run of capitals not at the start, then lower case
// (destinationPort -> destination_port; snake_case keys are unchanged).
func snakeCase(k string) string {
	var b strings.Builder
	for i := 0; i < len(k); i++ {
		c := k[i]
		upper := 'A' <= c && c <= 'Z'
		if upper && i > 0 && !('A' <= k[i-1] && k[i-1] <= 'Z') {
			b.WriteByte('_')
		}
		if upper {
			c += 'a' - 'A'
		}
		b.WriteByte(c)
	}
	return b.String()
}

// protocols are the IP protocol names the original's FlowSpec library
// knows (case-insensitive).
var protocols = map[string]uint8{
	"icmp": 1, "igmp": 2, "tcp": 6, "egp": 8, "udp": 17, "rsvp": 46, "gre": 47,
	"esp": 50, "ah": 51, "ospf": 89, "ipip": 94, "pim": 103, "sctp": 132,
}

func parseClassifier(raw json.RawMessage) (*Classifier, error) {
	const base = "attract_traffic/classifier"
	f, err := objectFields(base, raw, "an object")
	if err != nil {
		return nil, err
	}
	c := &Classifier{HasProtocol: true, Protocol: protocols["tcp"], Raw: raw}
	// Sorted, so that a body with several bad keys always gets the same
	// message.
	for _, key := range slices.Sorted(maps.Keys(f)) {
		v := f[key]
		field := base + "/" + key
		switch snakeCase(key) {
		case "source_prefix", "destination_prefix":
			if falsy(v) {
				continue
			}
			s, _ := asString(v)
			p, err := netip.ParsePrefix(s)
			if kind(v) != kindString || err != nil || p.Addr().Zone() != "" {
				return nil, inputErr(field, fmt.Sprintf("'%s' must be a prefix (address/length): %s", field, pythonStr(v)))
			}
			if snakeCase(key) == "source_prefix" {
				c.SourcePrefix = p
			} else {
				c.DestinationPrefix = p
			}
		case "source_port", "destination_port":
			if falsy(v) {
				continue
			}
			pr, ok := parsePortRange(v)
			if !ok {
				return nil, inputErr(field, fmt.Sprintf("'%s' must be a port or a range 'low:high': %s", field, pythonStr(v)))
			}
			if snakeCase(key) == "source_port" {
				c.SourcePort = pr
			} else {
				c.DestinationPort = pr
			}
		case "protocol":
			if falsy(v) {
				c.HasProtocol = false
				continue
			}
			s, isString := asString(v)
			n, known := protocols[strings.ToLower(s)]
			if !known {
				var num uint64
				if isString {
					num, known = pyUint(s, 255)
				} else {
					num, known = asUint(v, 255, false)
				}
				n = uint8(num)
			}
			if !known {
				return nil, inputErr(field, fmt.Sprintf("'%s' must be an IP protocol name or number: %s", field, pythonStr(v)))
			}
			c.Protocol = n
		default:
			return nil, inputErr(field, fmt.Sprintf("unknown key '%s' in '%s'", key, base))
		}
	}
	return c, nil
}

// parsePortRange reads "80", "1000:2000" or 80. A single port 0 is no
// match at all in the original (nil, true).
func parsePortRange(v json.RawMessage) (*PortRange, bool) {
	if n, ok := asUint(v, math.MaxUint16, false); ok {
		if n == 0 {
			return nil, true
		}
		return &PortRange{uint16(n), uint16(n)}, true
	}
	s, ok := asString(v)
	if !ok {
		return nil, false
	}
	lo, hi, isRange := strings.Cut(s, ":")
	l, ok := pyUint(lo, math.MaxUint16)
	if !ok {
		return nil, false
	}
	if !isRange {
		if l == 0 {
			return nil, true
		}
		return &PortRange{uint16(l), uint16(l)}, true
	}
	h, ok := pyUint(hi, math.MaxUint16)
	if !ok || h < l {
		return nil, false
	}
	return &PortRange{uint16(l), uint16(h)}, true
}

func parseFallback(raw json.RawMessage) (*Fallback, error) {
	f, err := objectFields("fallback", raw, "an object")
	if err != nil {
		return nil, err
	}
	fb := &Fallback{Canonical: canonicalJSON(raw)}
	for _, k := range []string{"src_mac", "dst_mac"} {
		v, ok := f[k]
		if !ok || kind(v) == kindNull {
			continue
		}
		s, _ := asString(v)
		mac, ok := parseMAC(s)
		if kind(v) != kindString || !ok {
			return nil, inputErr("fallback/"+k, fmt.Sprintf("'fallback/%s' must be a MAC address: %s", k, pythonStr(v)))
		}
		if k == "src_mac" {
			fb.SrcMAC = mac
		} else {
			fb.DstMAC = mac
		}
	}
	if v, ok := f["ovs_port_name"]; ok && kind(v) != kindNull {
		if fb.OVSPortName, ok = asString(v); !ok {
			return nil, inputErr("fallback/ovs_port_name", "'fallback/ovs_port_name' must be a string")
		}
	}
	if v, ok := f["ovs_port_number"]; ok && kind(v) != kindNull {
		n, ok := asUint(v, math.MaxUint32, false)
		if !ok {
			return nil, inputErr("fallback/ovs_port_number", "'fallback/ovs_port_number' must be an integer")
		}
		p := uint32(n)
		fb.OVSPortNumber = &p
	}
	return fb, nil
}

// localPortShapeMsg is the original's answer to a local_port without
// "linuxif" or "evpn".
const localPortShapeMsg = "Mandatory key is missing in local_port parameter (linuxif, or evpn)"

// checkLocalPortShape is the original's check: a string, or an object with
// "linuxif" or "evpn". Arrays and other values get the same message.
func checkLocalPortShape(raw json.RawMessage) error {
	switch kind(raw) {
	case kindString:
		return nil
	case kindObject:
		var f fields
		if json.Unmarshal(raw, &f) == nil && (f.has("linuxif") || f.has("evpn")) {
			return nil
		}
	}
	return inputErr("local_port", localPortShapeMsg)
}

// parseLocalPort reads the members of a local_port that passed
// checkLocalPortShape. For an attach, the port must be usable: a linuxif,
// or for ipvpn an evpn object naming the E-VPN to stitch.
func parseLocalPort(raw json.RawMessage, t VPNType, attach bool) (LocalPort, error) {
	var lp LocalPort
	if s, ok := asString(raw); ok {
		lp.LinuxIf = s
		lp.Raw, _ = json.Marshal(map[string]string{"linuxif": s})
	} else {
		lp.Raw = append(json.RawMessage(nil), raw...)
	}
	lp.identity = canonicalJSON(lp.Raw)
	var f fields
	if err := json.Unmarshal(lp.Raw, &f); err != nil {
		return lp, inputErr("local_port", localPortShapeMsg)
	}
	if v, ok := f["linuxif"]; ok && kind(v) != kindNull {
		if lp.LinuxIf, ok = asString(v); !ok {
			return lp, inputErr("local_port/linuxif", "'local_port/linuxif' must be a string")
		}
	}
	var err error
	if lp.VLAN, err = vlan(f, "local_port/vlan"); err != nil {
		return lp, err
	}
	if v, ok := f["ovs"]; ok && kind(v) != kindNull {
		if lp.OVS, err = parseOVSPort(v); err != nil {
			return lp, err
		}
	}
	if v, ok := f["evpn"]; ok && kind(v) != kindNull {
		ef, err := objectFields("local_port/evpn", v, "an object")
		if err != nil {
			return lp, err
		}
		lp.EVPN = &EVPNPort{}
		if id, ok := ef["id"]; ok && kind(id) != kindNull {
			if lp.EVPN.ID, ok = asString(id); !ok {
				return lp, inputErr("local_port/evpn/id", "'local_port/evpn/id' must be a string")
			}
		}
		if name, ok := ef["ovs_port_name"]; ok {
			lp.EVPN.HasOVSPortName = true
			if kind(name) != kindNull {
				if lp.EVPN.OVSPortName, ok = asString(name); !ok {
					return lp, inputErr("local_port/evpn/ovs_port_name", "'local_port/evpn/ovs_port_name' must be a string")
				}
			}
		}
	}
	if !attach {
		return lp, nil
	}
	if t == IPVPN && lp.EVPN != nil {
		// Stitching (vpn-and-api §3.7); the original fails these with 500.
		if lp.EVPN.ID == "" {
			return lp, inputErr("local_port/evpn/id", "Missing parameter: 'local_port/evpn/id'")
		}
		if lp.EVPN.HasOVSPortName && (lp.OVS == nil || !lp.OVS.Plugged || lp.OVS.PortName == "" && lp.OVS.PortNumber == nil) {
			return lp, inputErr("local_port/evpn/ovs_port_name", "Using ovs_port_name in EVPN/IPVPN attachment requires specifying the corresponding OVS port, which must also be pre-plugged")
		}
		return lp, nil
	}
	// An evpn attach ignores "evpn" and, like an ipvpn attach without it,
	// plugs "linuxif" (the original fails later with a 500 without it).
	if lp.LinuxIf == "" {
		return lp, inputErr("local_port/linuxif", "Mandatory key is missing in local_port parameter (linuxif)")
	}
	return lp, nil
}

func parseOVSPort(raw json.RawMessage) (*OVSPort, error) {
	f, err := objectFields("local_port/ovs", raw, "an object")
	if err != nil {
		return nil, err
	}
	o := &OVSPort{}
	if v, ok := f["plugged"]; ok && kind(v) != kindNull {
		if kind(v) != kindBool {
			return nil, inputErr("local_port/ovs/plugged", "'local_port/ovs/plugged' must be a boolean")
		}
		o.Plugged = isTrue(v)
	}
	for _, k := range []string{"port_name", "to_vm_port_name"} {
		v, ok := f[k]
		if !ok || kind(v) == kindNull {
			continue
		}
		s, ok := asString(v)
		if !ok {
			return nil, inputErr("local_port/ovs/"+k, "'local_port/ovs/"+k+"' must be a string")
		}
		if k == "port_name" {
			o.PortName = s
		} else {
			o.ToVMPortName = s
		}
	}
	for _, k := range []string{"port_number", "to_vm_port_number"} {
		v, ok := f[k]
		if !ok || kind(v) == kindNull {
			continue
		}
		n, ok := asUint(v, math.MaxUint32, true)
		if !ok {
			return nil, inputErr("local_port/ovs/"+k, "'local_port/ovs/"+k+"' must be an integer")
		}
		p := uint32(n)
		if k == "port_number" {
			o.PortNumber = &p
		} else {
			o.ToVMPortNumber = &p
		}
	}
	if o.VLAN, err = vlan(f, "local_port/ovs/vlan"); err != nil {
		return nil, err
	}
	return o, nil
}

// vlan reads an optional VLAN id (an integer or a string of digits).
func vlan(f fields, field string) (*uint16, error) {
	v, ok := f[field[strings.LastIndexByte(field, '/')+1:]]
	if !ok || kind(v) == kindNull {
		return nil, nil
	}
	n, ok := asUint(v, 4095, true)
	if !ok {
		return nil, inputErr(field, "'"+field+"' must be an integer between 0 and 4095")
	}
	id := uint16(n)
	return &id, nil
}

// canonicalJSON re-encodes a JSON value with sorted keys and integral
// numbers written as integers, so that values Python would find equal
// (dict key order, 42 and 42.0) get the same text.
func canonicalJSON(raw json.RawMessage) string {
	var v any
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	if dec.Decode(&v) != nil {
		return string(raw)
	}
	b, err := json.Marshal(normalizeNumbers(v))
	if err != nil {
		return string(raw)
	}
	return string(b)
}

func normalizeNumbers(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			t[k] = normalizeNumbers(x)
		}
	case []any:
		for i, x := range t {
			t[i] = normalizeNumbers(x)
		}
	case json.Number:
		if f, err := t.Float64(); err == nil && f == math.Trunc(f) && math.Abs(f) < 1<<53 {
			return json.Number(strconv.FormatInt(int64(f), 10))
		}
	}
	return v
}
