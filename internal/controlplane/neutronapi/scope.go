package neutronapi

import (
	"crypto/rand"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
)

// Project scoping (control-plane §2.1, §7.6): an admin sees and changes
// everything; anyone else sees their project's resources (plus shared and
// external networks and their subnets, and every port on a network they
// own) and changes only their project's. What a caller cannot see is
// "not found", as in Neutron.

func owns(p Principal, project string) bool { return p.IsAdmin() || project == p.ProjectID }

func canSeeNetwork(p Principal, n *model.Network) bool {
	return owns(p, n.ProjectID) || n.Shared || n.External
}

func canSeeSubnet(s *model.Snapshot, p Principal, sn *model.Subnet) bool {
	if owns(p, sn.ProjectID) {
		return true
	}
	n := s.Networks[sn.NetworkID]
	return n != nil && (n.Shared || n.External)
}

// canSeePort: the compute service (role "service") sees every port, to
// bind it; otherwise ports follow their project or their network's.
func canSeePort(s *model.Snapshot, p Principal, pt *model.Port) bool {
	if owns(p, pt.ProjectID) || p.isService() {
		return true
	}
	n := s.Networks[pt.NetworkID]
	return n != nil && n.ProjectID == p.ProjectID
}

// ownerProject is the project of a resource a request creates: the
// caller's, or (admins only) the project_id/tenant_id of the body.
func ownerProject(p Principal, at *attrs) string {
	proj, hasProj := at.str("project_id", maxStringLen)
	ten, hasTen := at.str("tenant_id", maxStringLen)
	if at.err != nil {
		return ""
	}
	switch {
	case hasProj && hasTen && proj != ten:
		at.fail(badRequest("project_id and tenant_id do not match"))
		return ""
	case !hasProj && hasTen:
		proj = ten
	case !hasProj:
		return p.ProjectID
	}
	if proj == "" {
		at.fail(invalidInput("project_id", "'' is too short"))
		return ""
	}
	if proj != p.ProjectID && !p.IsAdmin() {
		at.fail(badRequest("only an admin may create a resource for another project"))
		return ""
	}
	return proj
}

// projectFields are the project attributes every resource accepts on
// POST.
func withProject(m map[string]fieldSpec) map[string]fieldSpec {
	m["project_id"] = fieldSpec{post: true}
	m["tenant_id"] = fieldSpec{post: true}
	return m
}

// checkRevision implements If-Match: revision_number=N (gophercloud sends
// it when UpdateOpts.RevisionNumber is set): 412 when the resource has
// moved on.
func checkRevision(r *http.Request, current int) error {
	h := r.Header.Get("If-Match")
	if h == "" {
		return nil
	}
	for part := range strings.SplitSeq(h, ",") {
		v, found := strings.CutPrefix(strings.TrimSpace(part), "revision_number=")
		if !found {
			continue
		}
		want, err := strconv.Atoi(v)
		if err != nil {
			return badRequest("If-Match: bad revision_number %q", v)
		}
		if want != current {
			return newError(http.StatusPreconditionFailed, "RevisionNumberConstraintFailed",
				"If-Match wants revision %d; the resource is at %d", want, current)
		}
	}
	return nil
}

// newID is a random (version 4) UUID.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand documents it)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// timestamp is Neutron's format: RFC 3339, UTC, whole seconds, "Z".
func timestamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05Z") }

// standard adds the attributes every core resource carries.
func standard(m map[string]any, r *model.Resource) map[string]any {
	m["id"] = r.ID
	m["name"] = r.Name
	m["description"] = r.Description
	m["project_id"] = r.ProjectID
	m["tenant_id"] = r.ProjectID
	m["tags"] = strList(r.Tags)
	m["created_at"] = timestamp(r.CreatedAt)
	m["updated_at"] = timestamp(r.UpdatedAt)
	m["revision_number"] = r.Revision
	return m
}

// strList renders a list that must be [] rather than null.
func strList(v []string) []string {
	if v == nil {
		return []string{}
	}
	return v
}

// nullStr renders "" as null.
func nullStr(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// sortedBy returns the values of m ordered by key(v), then id.
func sortedBy[T any](m map[string]*T, keep func(*T) bool, key func(*T) (time.Time, string)) []*T {
	var out []*T
	for _, v := range m {
		if keep == nil || keep(v) {
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		ti, ii := key(out[i])
		tj, ij := key(out[j])
		if !ti.Equal(tj) {
			return ti.Before(tj)
		}
		return ii < ij
	})
	return out
}

// resourceFields are the attributes of Resource a client may set.
func resourceFields(m map[string]fieldSpec) map[string]fieldSpec {
	m["name"] = fieldSpec{post: true, put: true}
	m["description"] = fieldSpec{post: true, put: true}
	m["tags"] = fieldSpec{post: true}
	for _, ro := range []string{"id", "created_at", "updated_at", "revision_number"} {
		m[ro] = fieldSpec{}
	}
	return withProject(m)
}

// readResource reads name, description and tags into r.
func readResource(at *attrs, r *model.Resource) {
	if v, ok := at.str("name", maxStringLen); ok {
		r.Name = v
	}
	if v, ok := at.str("description", maxStringLen); ok {
		r.Description = v
	}
	if v, ok := at.strings("tags", maxStringLen, false, false); ok {
		r.Tags = v
	}
}

// newResource is a resource created now by a request.
func newResource(at *attrs, p Principal, now time.Time) model.Resource {
	r := model.Resource{ID: newID(), ProjectID: ownerProject(p, at), CreatedAt: now, UpdatedAt: now}
	readResource(at, &r)
	return r
}
