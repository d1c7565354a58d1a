package serverd

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/bus"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/desired"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
)

// VIF types of binding:vif_type per flavour, as Neutron's Linux bridge and
// Open vSwitch mechanism drivers set them.
const (
	VIFTypeBridge = "bridge"
	VIFTypeOVS    = "ovs"
)

// Agents is what the server knows of the compute hosts' agents, from
// their status reports: when each last reported (liveness) and the
// flavour it says it plugs ports with. It is kept in memory only: after a
// restart, agents are known again at their next heartbeat. Safe for
// concurrent use.
type Agents struct {
	defaultFlavour desired.Flavour
	liveness       time.Duration
	now            func() time.Time

	mu    sync.RWMutex
	hosts map[string]*agentRecord
}

// agentRecord is one host's agent.
type agentRecord struct {
	// seen is when the last report arrived, by the server's clock: the
	// agent's own timestamp would make liveness depend on clock skew.
	seen time.Time
	// flavour is the reported flavour; reported says one was.
	flavour  desired.Flavour
	reported bool
	// bad is the last unknown flavour reported, so that it is
	// complained about once, not at every heartbeat.
	bad string
}

// AgentInfo is a snapshot of one agent's record.
type AgentInfo struct {
	LastSeen time.Time
	Live     bool
	// Flavour is the effective flavour: the reported one, else the
	// default.
	Flavour  desired.Flavour
	Reported bool
}

// NewAgents returns an empty registry: hosts get defaultFlavour until their
// agent says otherwise, and count as live for liveness after each report
// (0: DefaultLiveness). now nil means time.Now.
func NewAgents(defaultFlavour desired.Flavour, liveness time.Duration, now func() time.Time) *Agents {
	if liveness <= 0 {
		liveness = DefaultLiveness
	}
	if now == nil {
		now = time.Now
	}
	return &Agents{defaultFlavour: defaultFlavour, liveness: liveness, now: now, hosts: map[string]*agentRecord{}}
}

// Observe records a status report. It says whether the host's effective
// flavour changed (its desired state must then be recomputed), and returns
// an error, with the report otherwise recorded, the first time the agent
// reports a flavour the server does not know (the previous one, else the
// default, is kept).
func (a *Agents) Observe(st bus.Status) (flavourChanged bool, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	r := a.hosts[st.Host]
	if r == nil {
		r = &agentRecord{}
		a.hosts[st.Host] = r
	}
	r.seen = a.now()
	if st.Flavour == "" {
		return false, nil
	}
	f, err := ParseFlavour(st.Flavour)
	if err != nil {
		if st.Flavour == r.bad {
			return false, nil
		}
		r.bad = st.Flavour
		return false, fmt.Errorf("agent of %s: %w", st.Host, err)
	}
	before := a.flavourLocked(r)
	r.flavour, r.reported, r.bad = f, true, ""
	return before != f, nil
}

func (a *Agents) flavourLocked(r *agentRecord) desired.Flavour {
	if r == nil || !r.reported {
		return a.defaultFlavour
	}
	return r.flavour
}

// Flavour is host's effective flavour (desired.Config.Flavour): the one
// its agent reported last, else the default. A flavour outlives the
// agent's liveness: a host whose agent is down keeps its desired state.
func (a *Agents) Flavour(host string) desired.Flavour {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.flavourLocked(a.hosts[host])
}

// VIFType is neutronapi.Hooks.AgentVIFType: whether host has a live agent,
// and the binding:vif_type of its flavour.
func (a *Agents) VIFType(host string) (string, bool) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	r := a.hosts[host]
	if r == nil || a.now().Sub(r.seen) > a.liveness {
		return "", false
	}
	if a.flavourLocked(r) == desired.FlavourOVS {
		return VIFTypeOVS, true
	}
	return VIFTypeBridge, true
}

// Info returns host's record; false when its agent never reported.
func (a *Agents) Info(host string) (AgentInfo, bool) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	r := a.hosts[host]
	if r == nil {
		return AgentInfo{}, false
	}
	return AgentInfo{
		LastSeen: r.seen,
		Live:     a.now().Sub(r.seen) <= a.liveness,
		Flavour:  a.flavourLocked(r),
		Reported: r.reported,
	}, true
}

// Hosts lists, sorted, the hosts whose agent ever reported since start.
func (a *Agents) Hosts() []string {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return slices.Sorted(maps.Keys(a.hosts))
}

// PortStatus is one port's new status.
type PortStatus struct {
	PortID, Status string
}

// PortStatusChanges are the status changes a host's report implies
// (control-plane §7.3): every port bound to host is ACTIVE when the agent
// lists it as programmed, DOWN otherwise; only ports whose status differs
// from snap's are returned, sorted by id. Ports bound elsewhere are not
// the reporting agent's business, whatever it lists.
func PortStatusChanges(snap *model.Snapshot, host string, active []string) []PortStatus {
	on := make(map[string]bool, len(active))
	for _, id := range active {
		on[id] = true
	}
	var out []PortStatus
	for id, p := range snap.Ports {
		if p.HostID != host {
			continue
		}
		want := model.StatusDown
		if on[id] {
			want = model.StatusActive
		}
		if p.Status != want {
			out = append(out, PortStatus{PortID: id, Status: want})
		}
	}
	slices.SortFunc(out, func(x, y PortStatus) int { return strings.Compare(x.PortID, y.PortID) })
	return out
}
