package dummy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/bagpipe-go/bagpipe/internal/dataplane"
)

// Op names a contract method.
type Op string

// The recorded operations, named after the contract's methods.
const (
	OpValidateDirection       Op = "ValidateDirection"
	OpResetState              Op = "ResetState"
	OpInitialize              Op = "Initialize"
	OpNewInstance             Op = "NewInstance"
	OpVifPlugged              Op = "VifPlugged"
	OpVifUnplugged            Op = "VifUnplugged"
	OpCleanup                 Op = "Cleanup"
	OpSetupRemoteMAC          Op = "SetupRemoteMAC"
	OpRemoveRemoteMAC         Op = "RemoveRemoteMAC"
	OpAddBUMEndpoint          Op = "AddBUMEndpoint"
	OpRemoveBUMEndpoint       Op = "RemoveBUMEndpoint"
	OpSetGatewayPort          Op = "SetGatewayPort"
	OpGatewayPortDown         Op = "GatewayPortDown"
	OpUpdateFallback          Op = "UpdateFallback"
	OpSetupRemotePrefix       Op = "SetupRemotePrefix"
	OpRemoveRemotePrefix      Op = "RemoveRemotePrefix"
	OpAddTrafficClassifier    Op = "AddTrafficClassifier"
	OpRemoveTrafficClassifier Op = "RemoveTrafficClassifier"
)

// Call is one recorded call: the operation, the instance it was made on,
// and its arguments (only the fields of that operation are set; values are
// copies the driver owns).
type Call struct {
	Op Op
	// Instance is the internal instance id; 0 for driver-level calls.
	Instance uint32
	// ExternalID is the instance's external id; "" for driver-level calls.
	ExternalID string

	Config       *dataplane.InstanceConfig // NewInstance
	Port         *dataplane.Port           // VifPlugged, VifUnplugged
	LastEndpoint bool                      // VifUnplugged
	Prefix       *dataplane.RemotePrefix   // Setup/RemoveRemotePrefix
	MAC          *dataplane.RemoteMAC      // Setup/RemoveRemoteMAC
	BUM          *dataplane.BUMEndpoint    // Add/RemoveBUMEndpoint
	Fallback     *dataplane.Fallback       // UpdateFallback
	Classifier   *dataplane.Classifier     // Add/RemoveTrafficClassifier
	RedirectTo   uint32                    // AddTrafficClassifier
	Direction    dataplane.Direction       // ValidateDirection
	GatewayIf    string                    // SetGatewayPort, GatewayPortDown
	GatewayIP    netip.Addr                // SetGatewayPort

	// Err is what the call returned.
	Err error

	// vni makes labels show as "vni" (E-VPN with VXLAN).
	vni bool
}

// String renders the call on one line: the external id (instance calls),
// the operation, its arguments, and " -> error: ..." when it failed, e.g.
// "v1 VifPlugged 52:54:00:00:00:01 10.0.0.5 tap1 label 17 both".
func (c Call) String() string {
	if c.Instance == 0 {
		return c.text()
	}
	return c.ExternalID + " " + c.text()
}

// text is String without the external id.
func (c Call) text() string {
	var b strings.Builder
	b.WriteString(string(c.Op))
	arg := func(s string) { b.WriteByte(' '); b.WriteString(s) }
	switch c.Op {
	case OpValidateDirection:
		arg(string(c.Direction))
	case OpNewInstance:
		arg(instanceText(*c.Config))
	case OpVifPlugged:
		arg(portText(*c.Port))
	case OpVifUnplugged:
		arg(portText(*c.Port))
		arg(fmt.Sprintf("last=%t", c.LastEndpoint))
	case OpSetupRemotePrefix, OpRemoveRemotePrefix:
		arg(prefixText(*c.Prefix))
	case OpSetupRemoteMAC, OpRemoveRemoteMAC:
		arg(macText(*c.MAC, c.vni))
	case OpAddBUMEndpoint, OpRemoveBUMEndpoint:
		arg(bumText(*c.BUM, c.vni))
	case OpSetGatewayPort:
		arg(c.GatewayIf)
		arg(addrText(c.GatewayIP))
	case OpGatewayPortDown:
		arg(c.GatewayIf)
	case OpUpdateFallback:
		arg(fallbackText(*c.Fallback))
	case OpAddTrafficClassifier:
		arg(c.Classifier.String())
		arg(fmt.Sprintf("redirect %d", c.RedirectTo))
	case OpRemoveTrafficClassifier:
		arg(c.Classifier.String())
	}
	if c.Err != nil {
		arg("-> error: " + c.Err.Error())
	}
	return b.String()
}

func instanceText(c dataplane.InstanceConfig) string {
	s := fmt.Sprintf("id=%d label=%d", c.ID, c.Label)
	if gw, ok := c.Gateway(); ok {
		s += " gateway=" + gw.String()
	} else if c.GatewayIP.IsValid() {
		s += " gateway=" + c.GatewayIP.String()
	}
	if c.LinuxBridge != "" {
		s += " linuxbr=" + c.LinuxBridge
	}
	return s
}

func portText(p dataplane.Port) string {
	return fmt.Sprintf("%s %s %s label %d %s", p.MAC, addrText(p.IP), p.LocalPort, p.Label, p.Direction)
}

func prefixText(r dataplane.RemotePrefix) string {
	return fmt.Sprintf("%s via %s label %d encaps %s order %d", r.Prefix, addrText(r.NextHop), r.Label, encapsText(r.Encaps), r.LBOrder)
}

func macText(r dataplane.RemoteMAC, vni bool) string {
	return fmt.Sprintf("%s %s via %s %s %d encaps %s", r.MAC, addrText(r.IP), addrText(r.NextHop), labelWord(vni), r.Label, encapsText(r.Encaps))
}

func bumText(b dataplane.BUMEndpoint, vni bool) string {
	return fmt.Sprintf("%s %s %d encaps %s", addrText(b.NextHop), labelWord(vni), b.Label, encapsText(b.Encaps))
}

func fallbackText(f dataplane.Fallback) string {
	port := f.OVSPortName
	if port == "" {
		port = fmt.Sprint(f.OVSPortNumber)
	}
	return fmt.Sprintf("src %s dst %s port %s", f.SrcMAC, f.DstMAC, port)
}

func labelWord(vni bool) string {
	if vni {
		return "vni"
	}
	return "label"
}

func addrText(a netip.Addr) string {
	if !a.IsValid() {
		return "-"
	}
	return a.String()
}

// encapsText is "[Default MPLS]": the looking glass's names without
// "encap:".
func encapsText(es []dataplane.Encap) string {
	names := make([]string, len(es))
	for i, e := range es {
		names[i] = strings.TrimPrefix(dataplane.EncapName(e), "encap:")
	}
	return "[" + strings.Join(names, " ") + "]"
}

// clone copies the argument values the caller might still change (MAC and
// encapsulation slices).
func (c Call) clone() Call {
	if c.Port != nil {
		p := *c.Port
		p.MAC = slices.Clone(p.MAC)
		p.LocalPort = cloneLocalPort(p.LocalPort)
		c.Port = &p
	}
	if c.Prefix != nil {
		r := *c.Prefix
		r.Encaps = slices.Clone(r.Encaps)
		c.Prefix = &r
	}
	if c.MAC != nil {
		r := *c.MAC
		r.MAC = slices.Clone(r.MAC)
		r.Encaps = slices.Clone(r.Encaps)
		c.MAC = &r
	}
	if c.BUM != nil {
		b := *c.BUM
		b.Encaps = slices.Clone(b.Encaps)
		c.BUM = &b
	}
	if c.Fallback != nil {
		f := *c.Fallback
		f.SrcMAC = slices.Clone(f.SrcMAC)
		f.DstMAC = slices.Clone(f.DstMAC)
		c.Fallback = &f
	}
	if c.Config != nil {
		cfg := *c.Config
		c.Config = &cfg
	}
	if c.Classifier != nil {
		cl := *c.Classifier
		c.Classifier = &cl
	}
	return c
}

func cloneLocalPort(l dataplane.LocalPort) dataplane.LocalPort {
	if l.OVS != nil {
		o := *l.OVS
		l.OVS = &o
	}
	if l.EVPN != nil {
		e := *l.EVPN
		l.EVPN = &e
	}
	return l
}
