package ovs

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeDB is an in-memory OVS database for unit tests: one bridge, ports
// with ofports handed out in sequence.
type fakeDB struct {
	mu           sync.Mutex
	bridgeExists bool
	protocols    []string
	ports        map[string]*portInfo
	nextOfport   int
	// noDevice are interfaces that do not exist: adding them gives a port
	// without ofport, as OVS does.
	noDevice map[string]bool
	// txs are the transactions applied.
	txs [][]dbOp
	// failApply fails the next apply calls while it is > 0.
	failApply int
	// externalIDs is the bridge's external_ids column.
	externalIDs map[string]string
}

func newFakeDB() *fakeDB {
	db := &fakeDB{bridgeExists: true, ports: map[string]*portInfo{}, nextOfport: 1, noDevice: map[string]bool{}, externalIDs: map[string]string{}}
	db.ports["br-mpls"] = &portInfo{name: "br-mpls", inBridge: true, ofport: 65534, mac: "02:00:00:00:00:fe", typ: "internal"}
	return db
}

// addPort puts a port in the bridge as its owner (not the driver) would.
func (db *fakeDB) addPort(name string) int {
	db.mu.Lock()
	defer db.mu.Unlock()
	n := db.nextOfport
	db.nextOfport++
	db.ports[name] = &portInfo{name: name, inBridge: true, ofport: n, mac: fmt.Sprintf("02:00:00:00:ff:%02x", n)}
	return n
}

func (db *fakeDB) bridge(ctx context.Context) (bridgeInfo, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	return bridgeInfo{exists: db.bridgeExists, protocols: slices.Clone(db.protocols), datapathType: "netdev", externalIDs: maps.Clone(db.externalIDs)}, nil
}

func (db *fakeDB) port(ctx context.Context, name string) (portInfo, bool, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	p, ok := db.ports[name]
	if !ok {
		return portInfo{}, false, nil
	}
	c := *p
	c.options = maps.Clone(p.options)
	return c, true, nil
}

func (db *fakeDB) ownedPorts(ctx context.Context) ([]portInfo, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	var out []portInfo
	for _, name := range slices.Sorted(maps.Keys(db.ports)) {
		if p := db.ports[name]; p.owner != "" && p.inBridge {
			out = append(out, *p)
		}
	}
	return out, nil
}

func (db *fakeDB) apply(ctx context.Context, ops ...dbOp) error {
	if len(ops) == 0 {
		return nil
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.failApply > 0 {
		db.failApply--
		return errors.New("ovs-vsctl: injected failure")
	}
	db.txs = append(db.txs, slices.Clone(ops))
	for _, op := range ops {
		switch op.kind {
		case opAddPort:
			if _, ok := db.ports[op.name]; ok {
				return fmt.Errorf("ovs-vsctl: cannot create a port named %s because a port named %s already exists", op.name, op.name)
			}
			p := &portInfo{name: op.name, inBridge: true, ofport: db.nextOfport, owner: op.owner}
			if db.noDevice[op.name] {
				p.ofport, p.err = -1, "could not open network device "+op.name+" (No such device)"
			} else {
				db.nextOfport++
			}
			db.ports[op.name] = p
		case opAddTunnel:
			p, ok := db.ports[op.name]
			if !ok {
				p = &portInfo{name: op.name, inBridge: true, ofport: db.nextOfport}
				db.nextOfport++
				db.ports[op.name] = p
			}
			p.typ, p.options, p.owner = op.typ, maps.Clone(op.options), op.owner
		case opDelPort:
			delete(db.ports, op.name)
		case opProtocols:
			db.protocols = slices.Clone(op.protocols)
		case opSetBridgeKey:
			db.externalIDs[op.key] = op.value
		case opDelBridgeKey:
			delete(db.externalIDs, op.key)
		default:
			return fmt.Errorf("fake: OVSDB operation %d not simulated", op.kind)
		}
	}
	return nil
}

func (db *fakeDB) has(name string) bool {
	db.mu.Lock()
	defer db.mu.Unlock()
	_, ok := db.ports[name]
	return ok
}

// fakeOF is an in-memory OpenFlow bridge for unit tests: it applies the
// driver's bundle lines (the subset of the syntax the driver writes)
// atomically and records them.
type fakeOF struct {
	mu      sync.Mutex
	bundles [][]string
	flows   map[flowKey]flow
	groups  map[uint32]string
	// fail, when set, decides whether a bundle fails (setFail while the
	// driver may be writing).
	fail func(lines []string) error
	// failNext fails the next bundles with failErr while it is > 0.
	failNext int
	failErr  error
	closed   bool
	// attempts counts the bundles asked for, failed ones included; sizes
	// are their line counts, in order.
	attempts int
	sizes    []int
	// armed: the next bundle call waits until held is closed; entered
	// receives a value when it does.
	armed   bool
	held    chan struct{}
	entered chan struct{}
}

// hold makes the next bundle call wait until release (which t's clean-up
// calls, so that a failed test does not leave it waiting); entered then
// reports that it waits.
func (o *fakeOF) hold(t testing.TB) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.armed = true
	o.held = make(chan struct{})
	o.entered = make(chan struct{}, 1)
	t.Cleanup(o.release)
}

// waitHeld waits (bounded) until a bundle call is held.
func (o *fakeOF) waitHeld(t testing.TB) {
	t.Helper()
	o.mu.Lock()
	entered := o.entered
	o.mu.Unlock()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("no bundle call held")
	}
}

func newFakeOF() *fakeOF {
	return &fakeOF{flows: map[flowKey]flow{}, groups: map[uint32]string{}}
}

// setFail sets fail.
func (o *fakeOF) setFail(f func(lines []string) error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.fail = f
}

// failNextBundles fails the next n bundles with err.
func (o *fakeOF) failNextBundles(n int, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.failNext, o.failErr = n, err
}

// restart empties the tables, as a restarted ovs-vswitchd starts.
func (o *fakeOF) restart() {
	o.mu.Lock()
	defer o.mu.Unlock()
	clear(o.flows)
	clear(o.groups)
}

// attemptCount is attempts, read under the lock.
func (o *fakeOF) attemptCount() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.attempts
}

// attemptSizes returns the line counts of the bundles asked for since the
// last call.
func (o *fakeOF) attemptSizes() []int {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := o.sizes
	o.sizes = nil
	return s
}

// release lets the held bundle call go on.
func (o *fakeOF) release() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.held != nil {
		close(o.held)
		o.held = nil
	}
}

func (o *fakeOF) bundle(ctx context.Context, lines []string) error {
	if len(lines) == 0 {
		return nil
	}
	o.mu.Lock()
	o.attempts++
	o.sizes = append(o.sizes, len(lines))
	if o.armed {
		o.armed = false // only one call is held
		held, entered := o.held, o.entered
		o.mu.Unlock()
		entered <- struct{}{}
		<-held
		o.mu.Lock()
	}
	defer o.mu.Unlock()
	if o.failNext > 0 {
		o.failNext--
		return o.failErr
	}
	if o.fail != nil {
		if err := o.fail(lines); err != nil {
			return err
		}
	}
	flows, groups := maps.Clone(o.flows), maps.Clone(o.groups)
	for _, l := range lines {
		if err := applyLine(flows, groups, l); err != nil {
			return fmt.Errorf("fake bundle: %q: %w", l, err)
		}
	}
	o.flows, o.groups = flows, groups
	o.bundles = append(o.bundles, slices.Clone(lines))
	return nil
}

// applyLine applies one bundle line to flows and groups.
func applyLine(flows map[flowKey]flow, groups map[uint32]string, l string) error {
	verb, rest, _ := strings.Cut(l, " ")
	op, spec, _ := strings.Cut(rest, " ")
	switch verb + " " + op {
	case "flow add":
		head, actions, ok := strings.Cut(spec, " actions=")
		if !ok {
			return errors.New("no actions")
		}
		f, err := parseHead(head)
		if err != nil {
			return err
		}
		if strings.Contains(actions, "group:") {
			id, _ := strconv.ParseUint(actions[strings.Index(actions, "group:")+6:], 10, 32)
			if _, ok := groups[uint32(id)]; !ok {
				return fmt.Errorf("OFPBAC_BAD_OUT_GROUP: group %d does not exist", id)
			}
		}
		f.actions = actions
		flows[f.key()] = f
	case "flow delete_strict":
		f, err := parseHead(spec)
		if err != nil {
			return err
		}
		if old, ok := flows[f.key()]; ok && old.cookie == f.cookie {
			delete(flows, f.key())
		}
	case "flow delete":
		cs, ok := strings.CutPrefix(spec, "cookie=")
		if !ok {
			return errors.New("only cookie deletes are simulated")
		}
		c, m, _ := strings.Cut(cs, "/")
		cookie, err1 := strconv.ParseUint(c, 0, 64)
		mask, err2 := strconv.ParseUint(m, 0, 64)
		if err := errors.Join(err1, err2); err != nil {
			return err
		}
		for k, f := range flows {
			if f.cookie&mask == cookie&mask {
				delete(flows, k)
			}
		}
	case "group add_or_mod":
		id, err := groupID(spec)
		if err != nil {
			return err
		}
		groups[id] = spec
	case "group delete":
		id, err := groupID(spec)
		if err != nil {
			return err
		}
		delete(groups, id)
		// OVS removes the flows that output to a deleted group.
		for k, f := range flows {
			if f.actions == fmt.Sprintf("group:%d", id) {
				delete(flows, k)
			}
		}
	default:
		return fmt.Errorf("unknown command %q", verb+" "+op)
	}
	return nil
}

// parseHead reads "table=T,cookie=C[/M],priority=P[,match]".
func parseHead(s string) (flow, error) {
	parts := strings.SplitN(s, ",", 4)
	if len(parts) < 3 {
		return flow{}, fmt.Errorf("bad flow %q", s)
	}
	var f flow
	t, err1 := strconv.ParseUint(strings.TrimPrefix(parts[0], "table="), 10, 8)
	c, _, _ := strings.Cut(strings.TrimPrefix(parts[1], "cookie="), "/")
	cookie, err2 := strconv.ParseUint(c, 0, 64)
	p, err3 := strconv.Atoi(strings.TrimPrefix(parts[2], "priority="))
	if err := errors.Join(err1, err2, err3); err != nil {
		return flow{}, fmt.Errorf("bad flow %q: %w", s, err)
	}
	f.table, f.cookie, f.priority = uint8(t), cookie, p
	if len(parts) == 4 {
		f.match = parts[3]
	}
	return f, nil
}

func groupID(spec string) (uint32, error) {
	s, ok := strings.CutPrefix(spec, "group_id=")
	if !ok {
		return 0, fmt.Errorf("bad group %q", spec)
	}
	s, _, _ = strings.Cut(s, ",")
	n, err := strconv.ParseUint(s, 10, 32)
	return uint32(n), err
}

func (o *fakeOF) dump(ctx context.Context, cmd string, args ...string) (string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var b strings.Builder
	switch cmd {
	case "dump-groups":
		b.WriteString("OFPST_GROUP_DESC reply (OF1.5) (xid=0x2):\n")
		for _, id := range slices.Sorted(maps.Keys(o.groups)) {
			b.WriteString(" " + o.groups[id] + "\n")
		}
	case "dump-flows":
		// As ovs-ofctl --no-stats prints them: no zero cookie, no table 0.
		b.WriteString("OFPST_FLOW reply (OF1.5) (xid=0x2):\n")
		var lines []string
		for _, f := range o.flows {
			var parts []string
			if f.cookie != 0 {
				parts = append(parts, fmt.Sprintf("cookie=%#x", f.cookie))
			}
			if f.table != 0 {
				parts = append(parts, fmt.Sprintf("table=%d", f.table))
			}
			m := fmt.Sprintf("priority=%d", f.priority)
			if f.match != "" {
				m += "," + f.match
			}
			lines = append(lines, " "+strings.Join(append(parts, m), ", ")+" actions="+f.actions)
		}
		slices.Sort(lines)
		b.WriteString(strings.Join(lines, "\n") + "\n")
	default:
		return "", fmt.Errorf("fake: %s not simulated", cmd)
	}
	return b.String(), nil
}

func (o *fakeOF) close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed = true
}

func (o *fakeOF) flowLinesLocked() []string {
	var out []string
	for _, f := range o.flows {
		out = append(out, f.String())
	}
	slices.Sort(out)
	return out
}

// flowLines are the bridge's flows, sorted, as flow.String shows them.
func (o *fakeOF) flowLines() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.flowLinesLocked()
}

// groupLines are the bridge's groups, by id.
func (o *fakeOF) groupLines() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []string
	for _, id := range slices.Sorted(maps.Keys(o.groups)) {
		out = append(out, o.groups[id])
	}
	return out
}

// took returns the bundles recorded since the last call.
func (o *fakeOF) took() [][]string {
	o.mu.Lock()
	defer o.mu.Unlock()
	b := o.bundles
	o.bundles = nil
	return b
}

// addForeign adds a flow as another controller would.
func (o *fakeOF) addForeign(f flow) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.flows[f.key()] = f
}

// fakeNeighbours answers next-hop MACs from a table.
type fakeNeighbours struct {
	mu   sync.Mutex
	macs map[netip.Addr]net.HardwareAddr
	mtus map[string]int
}

func (n *fakeNeighbours) resolve(ctx context.Context, ip netip.Addr) (net.HardwareAddr, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if mac, ok := n.macs[ip]; ok {
		return mac, nil
	}
	return nil, fmt.Errorf("next hop %s: no MAC address: %w", ip, errNoNeighbour)
}

func (n *fakeNeighbours) setMTU(name string, mtu int) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.mtus == nil {
		n.mtus = map[string]int{}
	}
	n.mtus[name] = mtu
	return nil
}

func (n *fakeNeighbours) close() {}
