package ovs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/ovsjson"
)

// OwnerKey is the external_ids key that marks an OVS port as added by the
// driver (dataplanes §12); its value is OwnerTunnel for the tunnel ports
// and OwnerPrefix + the VRF's external id for a VM port.
const (
	OwnerKey    = "bagpipe-owner"
	OwnerTunnel = "ipvpn"
	OwnerPrefix = "ipvpn:"
)

// ours says whether an owner mark is the driver's.
func ours(owner string) bool { return owner == OwnerTunnel || strings.HasPrefix(owner, OwnerPrefix) }

// bridgeInfo is what the driver reads of its bridge.
type bridgeInfo struct {
	exists       bool
	protocols    []string
	datapathType string
	// externalIDs is the bridge's external_ids column.
	externalIDs map[string]string
}

// portInfo is what the driver reads of an OVS port and its (single)
// interface.
type portInfo struct {
	name string
	// inBridge: the port is one of the driver's bridge (it may exist in
	// another bridge).
	inBridge bool
	// ofport is the OpenFlow port number; -1 when OVS has none for it (not
	// yet, or the interface failed: see err).
	ofport  int
	mac     string
	typ     string
	options map[string]string
	err     string
	owner   string
}

// dbOp is one change of the OVS database; the ops of one apply call form
// one transaction.
type dbOp struct {
	kind dbOpKind
	name string
	// typ and options are a tunnel port's (addTunnel).
	typ     string
	options map[string]string
	// owner is the OwnerKey mark of an added port.
	owner     string
	protocols []string
	// key and value are a bridge external_ids entry (opSetBridgeKey,
	// opDelBridgeKey: value unused).
	key, value string
}

type dbOpKind int

const (
	// opAddPort adds a port (an existing interface) to the bridge.
	opAddPort dbOpKind = iota
	// opAddTunnel adds a tunnel port, or updates it in place when it is
	// already in the bridge (same ofport: no traffic lost).
	opAddTunnel
	// opDelPort removes a port from the bridge; an absent one is no error.
	opDelPort
	// opProtocols sets the bridge's OpenFlow versions.
	opProtocols
	// opSetBridgeKey sets external_ids:key=value on the bridge;
	// opDelBridgeKey removes the key (absent: no error).
	opSetBridgeKey
	opDelBridgeKey
)

// database is how the driver reads and changes the OVS database. The
// daemon uses vsctl; unit tests a fake.
type database interface {
	bridge(ctx context.Context) (bridgeInfo, error)
	// port reads the port name; false when no port has that name.
	port(ctx context.Context, name string) (portInfo, bool, error)
	// ownedPorts lists the ports of the bridge that carry an owner mark.
	ownedPorts(ctx context.Context) ([]portInfo, error)
	// apply runs ops as one transaction and waits until ovs-vswitchd has
	// applied it (so that new ports have their ofport).
	apply(ctx context.Context, ops ...dbOp) error
}

// vsctl reaches OVSDB through ovs-vsctl, one process per transaction or
// read (see the package doc for why).
type vsctl struct {
	bin        string
	db         string
	bridgeName string
	// timeout bounds one run; ovs-vsctl waits for ovs-vswitchd after a
	// change, forever without it.
	timeout time.Duration
}

// run runs ovs-vsctl with args (JSON output for list and find).
func (v *vsctl) run(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, v.timeout+time.Second)
	defer cancel()
	full := []string{"--timeout=" + strconv.Itoa(int(v.timeout/time.Second)), "--format=json"}
	if v.db != "" {
		full = append(full, "--db="+v.db)
	}
	full = append(full, args...)
	cmd := exec.CommandContext(ctx, v.bin, full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		msg = firstLine(msg)
		if !strings.HasPrefix(msg, "ovs-vsctl: ") {
			msg = "ovs-vsctl: " + msg
		}
		return nil, errors.New(msg)
	}
	return stdout.Bytes(), nil
}

func firstLine(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	return first
}

func (v *vsctl) bridge(ctx context.Context) (bridgeInfo, error) {
	out, err := v.run(ctx, "--columns=protocols,datapath_type,external_ids", "find", "Bridge", "name="+ovsjson.Quote(v.bridgeName))
	if err != nil {
		return bridgeInfo{}, err
	}
	tables, err := ovsjson.DecodeTables(out, 1)
	if err != nil {
		return bridgeInfo{}, err
	}
	rows := tables[0]
	if len(rows) == 0 {
		return bridgeInfo{}, nil
	}
	return bridgeInfo{exists: true, protocols: rows[0].Strings("protocols"), datapathType: rows[0].String("datapath_type"),
		externalIDs: rows[0].Map("external_ids")}, nil
}

func (v *vsctl) port(ctx context.Context, name string) (portInfo, bool, error) {
	out, err := v.run(ctx,
		"--", "--columns=ports", "find", "Bridge", "name="+ovsjson.Quote(v.bridgeName),
		"--", "--columns=_uuid,external_ids", "find", "Port", "name="+ovsjson.Quote(name),
		"--", "--columns=ofport,mac_in_use,type,options,error", "find", "Interface", "name="+ovsjson.Quote(name))
	if err != nil {
		return portInfo{}, false, err
	}
	tables, err := ovsjson.DecodeTables(out, 3)
	if err != nil {
		return portInfo{}, false, err
	}
	if len(tables[1]) == 0 {
		return portInfo{}, false, nil
	}
	p := portInfo{name: name, ofport: -1, owner: tables[1][0].Map("external_ids")[OwnerKey]}
	if len(tables[0]) > 0 {
		p.inBridge = slices.Contains(tables[0][0].Strings("ports"), tables[1][0].String("_uuid"))
	}
	if len(tables[2]) > 0 {
		i := tables[2][0]
		p.ofport = i.Int("ofport", -1)
		p.mac, p.typ, p.options = i.String("mac_in_use"), i.String("type"), i.Map("options")
		p.err = strings.Join(i.Strings("error"), "; ")
	}
	return p, true, nil
}

func (v *vsctl) ownedPorts(ctx context.Context) ([]portInfo, error) {
	out, err := v.run(ctx,
		"--", "--columns=ports", "find", "Bridge", "name="+ovsjson.Quote(v.bridgeName),
		"--", "--columns=_uuid,name,external_ids", "list", "Port")
	if err != nil {
		return nil, err
	}
	tables, err := ovsjson.DecodeTables(out, 2)
	if err != nil {
		return nil, err
	}
	if len(tables[0]) == 0 {
		return nil, nil
	}
	members := tables[0][0].Strings("ports")
	var ports []portInfo
	for _, r := range tables[1] {
		owner := r.Map("external_ids")[OwnerKey]
		if owner != "" && slices.Contains(members, r.String("_uuid")) {
			ports = append(ports, portInfo{name: r.String("name"), inBridge: true, ofport: -1, owner: owner})
		}
	}
	return ports, nil
}

func (v *vsctl) apply(ctx context.Context, ops ...dbOp) error {
	if len(ops) == 0 {
		return nil
	}
	var args []string
	br := v.bridgeName
	// external_ids of the bridge mean nothing to ovs-vswitchd: no need to
	// wait for it to apply them.
	if !slices.ContainsFunc(ops, func(op dbOp) bool { return op.kind != opSetBridgeKey && op.kind != opDelBridgeKey }) {
		args = append(args, "--no-wait")
	}
	for _, op := range ops {
		switch op.kind {
		case opAddPort:
			args = append(args, "--", "add-port", br, op.name)
			if op.owner != "" {
				args = append(args, "--", "set", "Port", op.name, "external_ids:"+ovsjson.Quote(OwnerKey)+"="+ovsjson.Quote(op.owner))
			}
		case opAddTunnel:
			args = append(args, "--", "--may-exist", "add-port", br, op.name,
				"--", "set", "Interface", op.name, "type="+ovsjson.Quote(op.typ), "options="+ovsjson.QuoteMap(op.options),
				"--", "set", "Port", op.name, "external_ids:"+ovsjson.Quote(OwnerKey)+"="+ovsjson.Quote(op.owner))
		case opDelPort:
			args = append(args, "--", "--if-exists", "del-port", br, op.name)
		case opProtocols:
			args = append(args, "--", "set", "Bridge", br, "protocols="+strings.Join(op.protocols, ","))
		case opSetBridgeKey:
			args = append(args, "--", "set", "Bridge", br, "external_ids:"+ovsjson.Quote(op.key)+"="+ovsjson.Quote(op.value))
		case opDelBridgeKey:
			args = append(args, "--", "remove", "Bridge", br, "external_ids", ovsjson.Quote(op.key))
		default:
			return fmt.Errorf("unknown OVSDB operation %d", op.kind)
		}
	}
	_, err := v.run(ctx, args...)
	return err
}
