package main

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"
)

// Edge and node styles, as the original drew them.
const (
	rtNodeStyle      = `color="orange",fontcolor="orange"`
	rtEdgeStyle      = `color="orange",fontcolor="orange",arrowhead=onormal`
	readvFromStyle   = `color="orange",fontcolor="orange",style=dashed,arrowhead=diamond,arrowtail=oinv,headclip=false,dir=both`
	readvToStyle     = `color="orange",fontcolor="orange",style=dashed,arrowhead=onormal,tailclip=false,dir=both,arrowtail=oinv`
	flowStyle        = `color="red",fontcolor="red",style=dotted`
	flowInterStyle   = `color="red",fontcolor="red",style=dotted,arrowhead=none,dir=both,arrowtail=oinv`
	flowActionStyle  = `color="red",fontcolor="red",style=dashed`
	portLinkStyle    = `style=dashed,dir=none,color="gray",weight=3`
	invisibleNode    = `label="",style=invis,height=0,width=0,fixedsize=true`
	shortIDMaxLength = 11
)

// graph is everything the tool draws.
type graph struct {
	servers   []string // command-line order, no duplicates
	instances []*instance
}

// sort fixes the order of everything printed: instances by server (in
// command-line order) then id, and each instance's lists. The looking
// glass's own orders are not stable (upstream builds RT lists from sets).
func (g *graph) sort() {
	slices.SortStableFunc(g.instances, func(a, b *instance) int {
		if c := cmp.Compare(g.serverRank(a.server), g.serverRank(b.server)); c != 0 {
			return c
		}
		return natCompare(a.id, b.id)
	})
	for _, in := range g.instances {
		for _, l := range [][]string{in.imports, in.exports, in.readvFrom, in.readvTo, in.redirectRTs, in.attrTo, in.ports} {
			slices.SortFunc(l, natCompare)
		}
	}
}

func (g *graph) serverRank(server string) int { return slices.Index(g.servers, server) }

// rtNodes are the node names of every route target drawn, sorted.
func (g *graph) rtNodes() []string {
	set := map[string]bool{}
	for _, in := range g.instances {
		for _, l := range [][]string{in.imports, in.exports, in.readvFrom, in.readvTo, in.redirectRTs, in.attrTo} {
			for _, rt := range l {
				set[normalize(rt)] = true
			}
		}
	}
	return sortedKeys(set)
}

// write prints the graph. Line shapes, indentation included, are the
// original's so that both outputs can be compared line by line.
func (g *graph) write(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	p(`digraph import_export {`)
	p(`   node [fontname="Helvetica"];`)
	p(`   edge [fontname="Helvetica"];`)
	p(`   nodesep=0.55;`)

	p(`   subgraph rts {`)
	p(`       rank=same;`)
	for _, rt := range g.rtNodes() {
		label := strings.ReplaceAll(quoteLabel(strings.ToUpper(rt)), "_", `\n`)
		p(`        %s [shape="circle",label="%s",%s];`, dotID(rt), label, rtNodeStyle)
	}
	p(`    }`)

	p(`    subgraph ipvpns {`)
	p(`        rank=same;`)
	for _, in := range g.instances {
		if in.kind == "VRF" {
			p(`        %s [label="{<0>VRF\n%s%s|<readv>}",shape="record"];`, dotID(vpnUID(in.server, in.id)), recordText(shortID(in.id)), serverSpec(in.server))
		}
	}
	p(`    }`)

	p(`    subgraph evpns {`)
	for _, in := range g.instances {
		if in.kind == "EVI" {
			p(`        %s [label="{<0>EVI\n%s%s}",shape="record"];`, dotID(vpnUID(in.server, in.id)), recordText(shortID(in.id)), serverSpec(in.server))
		}
	}
	p(`    }`)

	ports := map[port]bool{}
	for _, in := range g.instances {
		p(`    /* %s */`, commentText(in.server+":"+in.id))
		uid := vpnUID(in.server, in.id)
		for _, rt := range in.imports {
			p(`    %s -> %s:0 [%s];`, dotID(normalize(rt)), dotID(uid), rtEdgeStyle)
		}
		for _, rt := range in.exports {
			p(`    %s:0 -> %s [%s];`, dotID(uid), dotID(normalize(rt)), rtEdgeStyle)
		}
		readv := dotID(uid) + ":readv"
		for _, rt := range in.readvFrom {
			p(`    %s -> %s [label="",%s];`, dotID(normalize(rt)), readv, readvFromStyle)
		}
		for _, rt := range in.readvTo {
			p(`    %s -> %s [label="",%s];`, readv, dotID(normalize(rt)), readvToStyle)
		}
		if len(in.redirectRTs) > 0 {
			// Never drawn by the original (vpn-and-api §8 #24), so the
			// node name need not be its "<server>_<id>_attract", which is
			// not a Graphviz name when the server starts with a digit.
			inter := dotID("attract_" + normalize(in.server) + "__" + normalize(in.id))
			p(`    %s [label="",style=invis,height=0,width=0,fixedsize=true,rank=1];`, inter)
			p(`    %s -> %s [label="flow",%s];`, readv, inter, flowInterStyle)
			for _, rt := range in.redirectRTs {
				p(`    %s -> %s [label="",weight=50,%s];`, inter, dotID(normalize(rt)), flowStyle)
			}
			for _, rt := range in.attrTo {
				p(`    %s -> %s [label="action",%s,arrowhead=none,weight=20];`, inter, dotID(normalize(rt)), flowActionStyle)
			}
		}
		for _, name := range in.ports {
			pt := port{in.server, normalize(name)}
			p(`    %s -> %s [%s,weight=5];`, dotID(uid), dotID(pt.nodeID()), portLinkStyle)
			ports[pt] = true
		}
		if in.stitchedVRF != "" {
			p(`    %s -> %s [weight=500];`, dotID(uid), dotID(vpnUID(in.server, in.stitchedVRF)))
		}
	}

	sortedPorts := make([]port, 0, len(ports))
	for pt := range ports {
		sortedPorts = append(sortedPorts, pt)
	}
	byServerThenName := func(a, b port) int {
		if c := cmp.Compare(g.serverRank(a.server), g.serverRank(b.server)); c != 0 {
			return c
		}
		return natCompare(a.name, b.name)
	}
	slices.SortFunc(sortedPorts, byServerThenName)
	// A port named "to_<dest>_..." leads to a destination drawn as a square.
	dests := map[port]bool{}
	for _, pt := range sortedPorts {
		p(`    %s [%s];`, dotID(pt.nodeID()), invisibleNode)
		if rest, ok := strings.CutPrefix(pt.name, "to_"); ok {
			dest, _, _ := strings.Cut(rest, "_")
			d := port{pt.server, dest}
			p(`    %s -> %s [style=dashed,dir=none,color="gray",weight=5];`, dotID(pt.nodeID()), dotID(d.destID()))
			dests[d] = true
		}
	}
	sortedDests := make([]port, 0, len(dests))
	for d := range dests {
		sortedDests = append(sortedDests, d)
	}
	slices.SortFunc(sortedDests, byServerThenName)
	for _, d := range sortedDests {
		p(`    %s [label="%s\n[%s]",shape="square",color="gray"];`, dotID(d.destID()), quoteLabel(d.name), quoteLabel(d.server))
	}
	p(`}`)
}

// port is a port (or destination) node: its server and normalised name.
type port struct{ server, name string }

func (pt port) nodeID() string { return "port_" + normalize(pt.server) + "_" + pt.name }
func (pt port) destID() string { return "dest_" + normalize(pt.server) + "_" + normalize(pt.name) }

// normalize turns a route target, server or id into (most often) a
// Graphviz name: "target:64512:512" becomes "rt_64512_512".
func normalize(s string) string {
	s = strings.ReplaceAll(s, "target:", "rt:")
	return strings.NewReplacer(":", "_", "-", "_", ".", "_").Replace(s)
}

func vpnUID(server, id string) string { return "vpn_" + normalize(server) + "__" + normalize(id) }

// shortID keeps long ids readable in a node: "abcd..vwxyz".
func shortID(id string) string {
	if utf8.RuneCountInString(id) <= shortIDMaxLength {
		return id
	}
	r := []rune(id)
	return string(r[:4]) + ".." + string(r[len(r)-5:])
}

// serverSpec names the server in an instance node, unless it is localhost.
func serverSpec(server string) string {
	if server == defaultServer {
		return ""
	}
	return `\n[` + recordText(server) + `]`
}

// dotID returns name as is when it is a plain Graphviz name (what
// normalize gives for usual ids) and as a quoted string otherwise, so an id
// with a space or a slash does not break the graph as it did the
// original's.
func dotID(name string) string {
	plain := name != "" && (name[0] < '0' || name[0] > '9')
	for i := 0; plain && i < len(name); i++ {
		c := name[i]
		plain = c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
	}
	if plain {
		return name
	}
	return `"` + quoteLabel(name) + `"`
}

// quoteLabel escapes text for a double-quoted Graphviz string.
func quoteLabel(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`).Replace(s)
}

// commentText keeps text inside a one-line comment.
func commentText(s string) string {
	return strings.NewReplacer("*/", `*\/`, "\n", `\n`, "\r", `\r`).Replace(s)
}

// recordText escapes text for a field of a record label, where braces,
// bars and angle brackets are syntax.
func recordText(s string) string {
	return strings.NewReplacer(`"`, `\"`, `\`, `\\`, "{", `\{`, "}", `\}`, "|", `\|`, "<", `\<`, ">", `\>`, " ", `\ `, "\n", `\n`, "\r", `\r`).Replace(s)
}

func sortedKeys(set map[string]bool) []string {
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, natCompare)
	return keys
}

// natCompare orders strings with their runs of digits compared as numbers,
// so rt_64512_99 comes before rt_64512_100.
func natCompare(a, b string) int {
	for a != "" && b != "" {
		da, db := digitRun(a), digitRun(b)
		if da > 0 && db > 0 {
			na, nb := strings.TrimLeft(a[:da], "0"), strings.TrimLeft(b[:db], "0")
			if c := cmp.Compare(len(na), len(nb)); c != 0 {
				return c
			}
			if c := strings.Compare(na, nb); c != 0 {
				return c
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return cmp.Compare(a[0], b[0])
		}
		a, b = a[1:], b[1:]
	}
	if c := cmp.Compare(len(a), len(b)); c != 0 {
		return c
	}
	return 0
}

func digitRun(s string) int {
	i := 0
	for i < len(s) && '0' <= s[i] && s[i] <= '9' {
		i++
	}
	return i
}
