package desired

import (
	"cmp"
	"slices"
)

// ProblemKind classifies a Problem.
type ProblemKind string

// Problem kinds.
const (
	// ProblemVNI: a vxlan network whose ML2 E-VPN route targets cannot all
	// be encoded (a VNI above 65535 with a 4-byte AS, or no valid VNI).
	// The route targets that cannot be encoded are left out; a network with
	// none left gets no ML2 E-VPN attachment.
	ProblemVNI ProblemKind = "vni"
	// ProblemVNIConflict: a network's l2 associations name different
	// BGPVPN vnis (D16); the one of the lowest association id is used.
	ProblemVNIConflict ProblemKind = "vni_conflict"
	// ProblemMissingReference: a resource names one that does not exist
	// (an association's BGPVPN, network, router or port, a route's
	// BGPVPN); the reference is ignored.
	ProblemMissingReference ProblemKind = "missing_reference"
	// ProblemUnsupportedRoute: a port association route or router extra
	// route that bagpipe-bgp cannot carry (routes of an l2 association, an
	// invalid prefix, route leaking from a port without IPv4, an extra
	// route whose prefix address clashes with another endpoint of its next
	// hop's MAC in the network VRF); the route is skipped.
	ProblemUnsupportedRoute ProblemKind = "unsupported_route"
	// ProblemDuplicateAttachment: two ports of a host produce the same
	// attachment key (vpn_instance_id, MAC, IP), e.g. two ports with one
	// MAC on a network; the one of the lowest port id is kept.
	ProblemDuplicateAttachment ProblemKind = "duplicate_attachment"
)

// Problem is an inconsistency met while computing; the computation goes on
// without the offending item.
type Problem struct {
	Kind ProblemKind
	// ID is the resource concerned (network, association, port).
	ID string
	// Host is set for problems seen on one host only.
	Host   string
	Detail string
}

func (p Problem) Error() string {
	s := string(p.Kind) + ": " + p.ID
	if p.Host != "" {
		s += " on host " + p.Host
	}
	return s + ": " + p.Detail
}

func compareProblems(a, b Problem) int {
	return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.ID, b.ID),
		cmp.Compare(a.Host, b.Host), cmp.Compare(a.Detail, b.Detail))
}

// sortProblems sorts and removes repeats, so the list is deterministic.
func sortProblems(ps []Problem) []Problem {
	slices.SortFunc(ps, compareProblems)
	return slices.Compact(ps)
}
