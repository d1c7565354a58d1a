package serverd

import (
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/bus"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/desired"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
)

// clock is a settable clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// TestAgents covers control-plane §7.5 (liveness from heartbeats feeds
// binding:vif_type) and the flavour each agent reports.
func TestAgents(t *testing.T) {
	c := newClock()
	a := NewAgents(desired.FlavourLinuxBridge, 0, c.Now)

	if vif, live := a.VIFType("h1"); live || vif != "" {
		t.Errorf("VIFType of a host never heard of = %q, %v; want not live", vif, live)
	}
	if f := a.Flavour("h1"); f != desired.FlavourLinuxBridge {
		t.Errorf("Flavour before any report = %v, want the default", f)
	}

	// A report without a flavour: live, default flavour, no change.
	if changed, err := a.Observe(bus.Status{Host: "h1"}); changed || err != nil {
		t.Errorf("Observe without flavour = %v, %v", changed, err)
	}
	if vif, live := a.VIFType("h1"); !live || vif != VIFTypeBridge {
		t.Errorf("VIFType after a report = %q, %v; want bridge, live", vif, live)
	}
	// The default flavour reported: no change of effective flavour.
	if changed, err := a.Observe(bus.Status{Host: "h1", Flavour: "linuxbridge"}); changed || err != nil {
		t.Errorf("Observe of the default flavour = %v, %v; want no change", changed, err)
	}
	// OVS: a change, once.
	if changed, err := a.Observe(bus.Status{Host: "h1", Flavour: "ovs"}); !changed || err != nil {
		t.Errorf("Observe ovs = %v, %v; want a change", changed, err)
	}
	if changed, _ := a.Observe(bus.Status{Host: "h1", Flavour: "ovs"}); changed {
		t.Error("the same flavour again counted as a change")
	}
	if vif, live := a.VIFType("h1"); !live || vif != VIFTypeOVS {
		t.Errorf("VIFType of an OVS host = %q, %v", vif, live)
	}
	// A report without flavour keeps the reported one.
	if changed, _ := a.Observe(bus.Status{Host: "h1"}); changed || a.Flavour("h1") != desired.FlavourOVS {
		t.Errorf("a report without flavour changed it: %v %v", changed, a.Flavour("h1"))
	}
	// An unknown flavour: complained about once, the known one kept.
	if changed, err := a.Observe(bus.Status{Host: "h1", Flavour: "hyperv"}); changed || err == nil {
		t.Errorf("Observe hyperv = %v, %v; want an error and no change", changed, err)
	}
	if _, err := a.Observe(bus.Status{Host: "h1", Flavour: "hyperv"}); err != nil {
		t.Errorf("the same unknown flavour complained about twice: %v", err)
	}
	if a.Flavour("h1") != desired.FlavourOVS {
		t.Errorf("flavour after an unknown one = %v", a.Flavour("h1"))
	}

	// Liveness: 30 s after the last report, not a nanosecond more.
	c.advance(DefaultLiveness)
	if _, live := a.VIFType("h1"); !live {
		t.Error("not live exactly DefaultLiveness after the report")
	}
	c.advance(time.Nanosecond)
	if vif, live := a.VIFType("h1"); live || vif != "" {
		t.Errorf("VIFType after liveness expired = %q, %v", vif, live)
	}
	info, ok := a.Info("h1")
	if !ok || info.Live || info.Flavour != desired.FlavourOVS || !info.Reported {
		t.Errorf("Info = %+v, %v", info, ok)
	}
	// The flavour outlives liveness (a host whose agent is down keeps its
	// desired state); the next report revives it.
	if a.Flavour("h1") != desired.FlavourOVS {
		t.Error("flavour lost with liveness")
	}
	a.Observe(bus.Status{Host: "h2", Flavour: "linuxbridge"})
	if _, live := a.VIFType("h2"); !live {
		t.Error("h2 not live after its report")
	}
	if got := a.Hosts(); !reflect.DeepEqual(got, []string{"h1", "h2"}) {
		t.Errorf("Hosts = %v", got)
	}

	// An OVS default.
	o := NewAgents(desired.FlavourOVS, time.Second, c.Now)
	o.Observe(bus.Status{Host: "h3"})
	if vif, live := o.VIFType("h3"); !live || vif != VIFTypeOVS {
		t.Errorf("VIFType with an OVS default = %q, %v", vif, live)
	}
	if changed, _ := o.Observe(bus.Status{Host: "h3", Flavour: "linuxbridge"}); !changed {
		t.Error("linuxbridge on an OVS default is no change")
	}
}

// TestPortStatusChanges covers control-plane §7.3: port status from the
// agent's applied set.
func TestPortStatusChanges(t *testing.T) {
	snap := model.NewSnapshot()
	add := func(id, host, status string) {
		snap.Ports[id] = &model.Port{Resource: model.Resource{ID: id}, HostID: host, Status: status}
	}
	add("p1", "h1", model.StatusDown)   // listed: becomes ACTIVE
	add("p2", "h1", model.StatusActive) // listed and ACTIVE: nothing
	add("p3", "h1", model.StatusActive) // not listed: DOWN
	add("p4", "h1", model.StatusDown)   // not listed and DOWN: nothing
	add("p5", "h2", model.StatusDown)   // another host's, even if listed
	add("p6", "", model.StatusDown)     // unbound
	got := PortStatusChanges(snap, "h1", []string{"p2", "p1", "p5", "gone"})
	want := []PortStatus{{"p1", model.StatusActive}, {"p3", model.StatusDown}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("PortStatusChanges = %v, want %v", got, want)
	}
	if got := PortStatusChanges(snap, "h9", []string{"p1"}); len(got) != 0 {
		t.Errorf("changes for a host without ports: %v", got)
	}
}

func TestKnownHosts(t *testing.T) {
	a := NewAgents(desired.FlavourLinuxBridge, 0, nil)
	a.Observe(bus.Status{Host: "h3"})
	a.Observe(bus.Status{Host: "h1"})
	snap := model.NewSnapshot()
	snap.Ports["p1"] = &model.Port{Resource: model.Resource{ID: "p1"}, HostID: "h1"}
	snap.Ports["p2"] = &model.Port{Resource: model.Resource{ID: "p2"}, HostID: "h2"}
	if got := knownHosts(a, snap); !reflect.DeepEqual(got, []string{"h1", "h2", "h3"}) {
		t.Errorf("knownHosts = %v", got)
	}
}
