package vpn

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
	"github.com/bagpipe-go/bagpipe/internal/dataplane"
	"github.com/bagpipe-go/bagpipe/internal/engine"
	"github.com/bagpipe-go/bagpipe/internal/logring"
	"github.com/bagpipe-go/bagpipe/internal/vpn/ident"
)

// maxRetries bounds how often an operation is sent again after the
// instance it found stopped under it (its last endpoint went meanwhile).
// Each retry finds the instance gone or a newer one, so a few suffice.
const maxRetries = 64

// Config builds a Manager.
type Config struct {
	// Engine is the route table manager instances register with.
	Engine *engine.Engine
	// Drivers are the dataplane drivers by VPN type. The manager wraps each
	// in dataplane.NewLazy: its state is reset and initialised just before
	// its first instance (adopted at AdoptDataplanes for a driver that
	// keeps the previous run's labels).
	Drivers map[dataplane.VPNType]dataplane.Driver
	// LocalAddress is the BGP local address: route distinguishers are
	// built from it, and it is the originator and next hop of the E-VPN
	// inclusive multicast routes. Must be IPv4.
	LocalAddress netip.Addr
	// Hostname salts the tie-break between equal routes for dataplanes
	// without ECMP, so that PEs do not all pick the same route; "" means
	// os.Hostname().
	Hostname string
	Logger   *slog.Logger
	// DriverLogs are, by VPN type, buffers for the WARNING+ records about
	// each driver, which the looking glass shows as the driver's logs; the
	// manager creates the missing ones. A caller passes its own to have the
	// driver's own logger feed the same list (see logring.NewHandler).
	DriverLogs map[dataplane.VPNType]*logring.Buffer
}

// Manager owns the VPN instances and the process-wide identifiers. All its
// methods are safe for concurrent use.
type Manager struct {
	eng     *engine.Engine
	drivers map[dataplane.VPNType]dataplane.Driver
	// driverLogs keep each driver's WARNING+ records; never cleared, as
	// the drivers live as long as the manager.
	driverLogs map[dataplane.VPNType]*logring.Buffer
	local      netip.Addr
	hostname   string
	log        *slog.Logger

	labels *ident.Allocator
	rds    *ident.RDAllocator
	ids    *ident.Counter

	// stop is closed by Close; it ends kept, the goroutines that free the
	// labels of the previous run nobody claimed back (AdoptDataplanes).
	stop chan struct{}
	kept sync.WaitGroup

	mu sync.Mutex // guards all following fields
	// instances by external id. An instance is in the map from its creation
	// until its goroutine has torn it down.
	instances map[string]*instance
	vnis      map[uint32]*instance // instances with a forced VNI
	// redirectUsers are, per redirect instance external id, the names of
	// the VRFs whose dataplane redirects traffic into it (§3.9).
	redirectUsers map[string]map[string]struct{}
	closed        bool
	adopted       bool // AdoptDataplanes ran
}

// New builds a manager. It starts no goroutine: instances start theirs,
// and AdoptDataplanes one per driver whose labels it keeps.
func New(cfg Config) (*Manager, error) {
	if cfg.Engine == nil {
		return nil, errors.New("vpn manager: no engine")
	}
	rds, err := ident.NewRDAllocator(cfg.LocalAddress)
	if err != nil {
		return nil, fmt.Errorf("vpn manager: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	host := cfg.Hostname
	if host == "" {
		host, _ = os.Hostname()
	}
	drivers := make(map[dataplane.VPNType]dataplane.Driver, len(cfg.Drivers))
	driverLogs := make(map[dataplane.VPNType]*logring.Buffer, len(cfg.Drivers))
	for t, d := range cfg.Drivers {
		if d == nil {
			continue
		}
		if d.Type() != t {
			return nil, fmt.Errorf("vpn manager: driver for %s serves %s", t, d.Type())
		}
		buf := cfg.DriverLogs[t]
		if buf == nil {
			buf = logring.NewBuffer(logring.DefaultSize)
		}
		driverLogs[t] = buf
		// The lazy wrapper's warnings (a failed reset) are about the
		// driver: they go to its list as well as to the manager's log.
		// The VPN type is the looking glass object's id already.
		dlog := slog.New(logring.NewHandler(log.Handler(), buf, logring.Options{Omit: []string{"vpn_type"}}))
		drivers[t] = dataplane.NewLazy(d, dlog)
	}
	return &Manager{
		eng:           cfg.Engine,
		drivers:       drivers,
		driverLogs:    driverLogs,
		local:         cfg.LocalAddress,
		hostname:      host,
		log:           log,
		labels:        ident.NewLabelAllocator(),
		rds:           rds,
		ids:           ident.NewInstanceIDCounter(),
		instances:     map[string]*instance{},
		vnis:          map[uint32]*instance{},
		redirectUsers: map[string]map[string]struct{}{},
		stop:          make(chan struct{}),
	}, nil
}

// AdoptDataplanes has the drivers that keep the previous run's dataplane
// (dataplane.LabelKeeper, with preserve_dataplane) adopt it now, and
// reserves the labels its entries still deliver to endpoints (dataplanes
// §12: label allocations kept across a restart). Until the driver lets
// them go (BGP settled plus its grace period, when it sweeps what did not
// come back), no new endpoint gets one of them, and an endpoint attached
// again with the same instance and MAC gets its own back: its flows stay
// as they were, and traffic remote nodes still send with an old label
// never reaches another endpoint, possibly another tenant's. The daemon
// calls it once at start-up, before the first attach; later calls do
// nothing. A driver whose adoption fails keeps no label (it adopts again
// before its first instance); the error names it.
func (m *Manager) AdoptDataplanes(ctx context.Context) error {
	m.mu.Lock()
	closed, adopted := m.closed, m.adopted
	m.adopted = true
	m.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if adopted {
		return nil
	}
	types := slices.Sorted(maps.Keys(m.drivers))
	var errs []error
	for _, t := range types {
		l, ok := m.drivers[t].(*dataplane.Lazy)
		if !ok {
			continue
		}
		k, ok, err := l.AdoptEarly(ctx)
		if !ok {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		m.keepLabels(t, k)
	}
	return errors.Join(errs...)
}

// keepLabels reserves k's inherited labels for their endpoints until k
// releases them.
func (m *Manager) keepLabels(t dataplane.VPNType, k dataplane.LabelKeeper) {
	var ids []uint32
	for _, il := range k.InheritedLabels() {
		owner := ""
		if il.InstanceExternalID != "" && len(il.MAC) == 6 {
			owner = labelOwner(t, il.InstanceExternalID, il.MAC)
		}
		desc := fmt.Sprintf("Kept for endpoint %s of %s until BGP has settled (label of the previous run)",
			il.MAC, cmp.Or(il.InstanceExternalID, "an unknown instance"))
		err := m.labels.Reserve(il.Label, owner, desc)
		if errors.Is(err, ident.ErrInUse) && owner != "" {
			// Two labels for one endpoint (the dataplane left an old
			// one): the other is only kept from new endpoints.
			err = m.labels.Reserve(il.Label, "", desc)
		}
		if err != nil {
			m.log.Warn("label of the previous run not kept", "vpn_type", string(t), "label", il.Label,
				"external_instance_id", il.InstanceExternalID, "mac", il.MAC.String(), "error", err)
			continue
		}
		ids = append(ids, il.Label)
	}
	if len(ids) == 0 {
		return
	}
	m.log.Info("labels of the previous run kept for their endpoints", "vpn_type", string(t), "labels", len(ids))
	done := k.InheritedLabelsReleased()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		m.labels.EndReservations(ids)
		return
	}
	m.kept.Go(func() {
		select {
		case <-done:
		case <-m.stop:
			// Closing: the instances have given their labels back.
			m.labels.EndReservations(ids)
			return
		}
		freed := m.labels.EndReservations(ids)
		m.log.Info("labels of the previous run released", "vpn_type", string(t), "freed", len(freed), "claimed_back", len(ids)-len(freed))
	})
}

// labelOwner names, for the label allocator's reservations, the endpoints
// of MAC mac in instance ext of type t: the VPN layer gives them one
// label.
func labelOwner(t dataplane.VPNType, ext string, mac net.HardwareAddr) string {
	return string(t) + "\x00" + ext + "\x00" + mac.String()
}

// portLabel allocates the label of the endpoints of a MAC in instance ext
// of type t (see labelOwner): the one the previous run gave them when the
// dataplane kept it (AdoptDataplanes), else a new one; kept says which.
func (m *Manager) portLabel(t dataplane.VPNType, ext string, mac net.HardwareAddr, description string) (label uint32, kept bool, err error) {
	if l, ok := m.labels.Claim(labelOwner(t, ext, mac), description); ok {
		return l, true, nil
	}
	l, err := m.labels.Allocate(description)
	return l, false, err
}

// Attach plugs an endpoint into the instance p.ExternalID, creating the
// instance if needed (vpn-and-api §3.2–§3.4). It returns once the endpoint
// is plugged and its route handed to the engine, or with nothing changed.
func (m *Manager) Attach(ctx context.Context, p AttachParams) error {
	if p.Type != dataplane.EVPN && p.Type != dataplane.IPVPN {
		return inputErrorf("unknown vpn_type: %s", p.Type)
	}
	if len(p.MAC) != 6 {
		return inputErrorf("MAC address %s is not valid", macText(p.MAC, p.MACString))
	}
	for range maxRetries {
		o := newOp(ctx, true, func(ctx context.Context, in *instance) error { return in.attach(ctx, p) })
		in, created, err := m.getOrCreate(p, o)
		if err != nil {
			return err
		}
		if created {
			err = o.wait(ctx)
		} else {
			err = in.do(ctx, o)
		}
		if !errors.Is(err, errStopped) {
			return err
		}
	}
	return fmt.Errorf("attach to vpn %s: instance kept stopping under the request", p.ExternalID)
}

// Detach unplugs one endpoint, or with no IP every endpoint of the MAC
// (§3.6); the instance goes with its last endpoint.
func (m *Manager) Detach(ctx context.Context, p DetachParams) error {
	for range maxRetries {
		m.mu.Lock()
		closed, in := m.closed, m.instances[p.ExternalID]
		m.mu.Unlock()
		if closed {
			return ErrClosed
		}
		if in == nil || !in.published.Load() {
			return notFound(p.ExternalID)
		}
		err := in.do(ctx, newOp(ctx, true, func(ctx context.Context, in *instance) error { return in.detach(ctx, p) }))
		if !errors.Is(err, errStopped) {
			return err
		}
	}
	return fmt.Errorf("detach from vpn %s: instance kept stopping under the request", p.ExternalID)
}

// getOrCreate returns the instance for p.ExternalID, or creates it with o as
// the first operation its goroutine runs (created is then true). A new
// instance is not visible to detach and the looking glass until o succeeds.
func (m *Manager) getOrCreate(p AttachParams, o *op) (in *instance, created bool, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, false, ErrClosed
	}
	if in := m.instances[p.ExternalID]; in != nil {
		if in.typ != p.Type {
			// The original answered 500; it is the client's mistake (§8 #10).
			return nil, false, inputErrorf("Found an existing vpn_instance with external id %s but a different type (asked %s vs. already having %s)",
				p.ExternalID, p.Type, in.typ)
		}
		return in, false, nil
	}
	if p.Type == dataplane.IPVPN {
		// Checked before anything is allocated (§8 #2).
		if err := checkVRFCreation(p); err != nil {
			return nil, false, err
		}
	}
	if p.VNI != 0 && m.vnis[p.VNI] != nil {
		return nil, false, inputErrorf("A VPN instance using vni %d already exists.", p.VNI)
	}
	drv := m.drivers[p.Type]
	if drv == nil {
		return nil, false, fmt.Errorf("no dataplane driver for vpn type %s", p.Type)
	}
	id, err := m.ids.Next()
	if err != nil {
		return nil, false, fmt.Errorf("create VPN instance %s: %w", p.ExternalID, err)
	}
	in = newInstance(m, drv, id, p, o)
	m.instances[p.ExternalID] = in
	if p.VNI != 0 {
		m.vnis[p.VNI] = in
	}
	in.start()
	return in, true, nil
}

// retireIfUnused decides, on in's goroutine, whether in stops: true when no
// VRF redirects traffic into it. It is then retiring: a redirect lookup
// waits for its end rather than use it.
func (m *Manager) retireIfUnused(in *instance) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.instances[in.ext] == in && len(m.redirectUsers[in.ext]) > 0 && !m.closed {
		return false
	}
	in.retiring = true
	return true
}

// lookup returns the published instance with external id ext, nil when
// there is none.
func (m *Manager) lookup(ext string) *instance {
	m.mu.Lock()
	defer m.mu.Unlock()
	in := m.instances[ext]
	if in == nil || in.retiring || !in.published.Load() {
		return nil
	}
	return in
}

// redirectExternalID names the instance FlowSpec routes redirecting to rt
// lead to (§3.9), e.g. redirect-to-ipvpn-64512_41.
func redirectExternalID(rt bgp.RT) string {
	return "redirect-to-" + string(dataplane.IPVPN) + "-" + strings.ReplaceAll(rt.Value(), ":", "_")
}

// redirectFor registers user as a user of the redirect instance of rt,
// creating that instance if needed (import rt, no export, gateway
// 127.0.0.1, prefix length 24, receiving routes at once), and returns its
// internal id for the dataplane. Called from user's goroutine; it does not
// wait for the instance's creation, only for the end of a retiring one.
func (m *Manager) redirectFor(ctx context.Context, rt bgp.RT, user *instance) (uint32, error) {
	ext := redirectExternalID(rt)
	for range maxRetries {
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			return 0, ErrClosed
		}
		in := m.instances[ext]
		if in != nil && in.retiring {
			m.mu.Unlock()
			select {
			case <-in.done:
				continue
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}
		if in != nil && in.typ != dataplane.IPVPN {
			m.mu.Unlock()
			return 0, fmt.Errorf("redirect instance %s: an instance of type %s has that id", ext, in.typ)
		}
		if in == nil {
			var err error
			if in, err = m.createRedirectLocked(ext, rt); err != nil {
				m.mu.Unlock()
				return 0, err
			}
		}
		users := m.redirectUsers[ext]
		if users == nil {
			users = map[string]struct{}{}
			m.redirectUsers[ext] = users
		}
		users[user.name] = struct{}{}
		m.mu.Unlock()
		return in.id, nil
	}
	return 0, fmt.Errorf("redirect instance %s kept stopping", ext)
}

// createRedirectLocked creates and starts a redirect instance; m.mu held.
func (m *Manager) createRedirectLocked(ext string, rt bgp.RT) (*instance, error) {
	drv := m.drivers[dataplane.IPVPN]
	if drv == nil {
		return nil, fmt.Errorf("no dataplane driver for vpn type %s", dataplane.IPVPN)
	}
	id, err := m.ids.Next()
	if err != nil {
		return nil, fmt.Errorf("create VPN instance %s: %w", ext, err)
	}
	p := AttachParams{
		Type:       dataplane.IPVPN,
		ExternalID: ext,
		ImportRTs:  []bgp.RT{rt},
		GatewayIP:  netip.AddrFrom4([4]byte{127, 0, 0, 1}),
	}
	in := newInstance(m, drv, id, p, nil)
	in.prefixLen = 24
	// Its first operation creates it without endpoint; it then lives as
	// long as it has users (or endpoints, should an attach name it).
	in.first = newOp(in.runCtx, false, func(ctx context.Context, in *instance) error {
		if err := in.init(ctx, p); err != nil {
			in.log.Error("redirect instance creation failed", "error", err)
			in.stopping = true
			return err
		}
		in.started = true
		in.published.Store(true)
		return nil
	})
	m.instances[ext] = in
	in.start()
	return in, nil
}

// releaseRedirect removes user from the users of rt's redirect instance;
// the instance stops once it has neither user nor endpoint. It never
// waits for that instance.
func (m *Manager) releaseRedirect(rt bgp.RT, user *instance) {
	ext := redirectExternalID(rt)
	m.mu.Lock()
	defer m.mu.Unlock()
	users := m.redirectUsers[ext]
	delete(users, user.name)
	if len(users) > 0 {
		return
	}
	delete(m.redirectUsers, ext)
	if in := m.instances[ext]; in != nil {
		select {
		case in.kick <- struct{}{}:
		default: // a kick is pending already
		}
	}
}

// forget removes a stopped instance from the maps; called by its goroutine
// at the end of its teardown.
func (m *Manager) forget(in *instance) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.instances[in.ext] == in {
		delete(m.instances, in.ext)
	}
	if in.vni != 0 && m.vnis[in.vni] == in {
		delete(m.vnis, in.vni)
	}
}

// Instances returns a snapshot of every instance, in creation order. An
// instance still being created (its first attach running) is left out.
func (m *Manager) Instances(ctx context.Context) ([]InstanceInfo, error) {
	m.mu.Lock()
	insts := make([]*instance, 0, len(m.instances))
	for _, in := range m.instances {
		if in.published.Load() {
			insts = append(insts, in)
		}
	}
	m.mu.Unlock()
	slices.SortFunc(insts, func(a, b *instance) int { return cmp.Compare(a.id, b.id) })
	out := make([]InstanceInfo, 0, len(insts))
	for _, in := range insts {
		info, err := in.info(ctx)
		if errors.Is(err, errStopped) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

// Instance returns the snapshot of one instance; false when there is none.
func (m *Manager) Instance(ctx context.Context, externalID string) (InstanceInfo, bool, error) {
	m.mu.Lock()
	in := m.instances[externalID]
	m.mu.Unlock()
	if in == nil || !in.published.Load() {
		return InstanceInfo{}, false, nil
	}
	info, err := in.info(ctx)
	if errors.Is(err, errStopped) {
		return InstanceInfo{}, false, nil
	}
	if err != nil {
		return InstanceInfo{}, false, err
	}
	return info, true, nil
}

// Labels returns the allocated labels with their descriptions, the looking
// glass's /vpns/dataplane/ids.
func (m *Manager) Labels() map[uint32]string { return m.labels.Snapshot() }

// Drivers returns the dataplane drivers by VPN type (as wrapped by New).
func (m *Manager) Drivers() map[dataplane.VPNType]dataplane.Driver {
	out := make(map[dataplane.VPNType]dataplane.Driver, len(m.drivers))
	for t, d := range m.drivers {
		out[t] = d
	}
	return out
}

// DriverLogs returns the WARNING+ records about the driver of type t,
// newest first (the looking glass's /vpns/dataplane/drivers/<type>/logs);
// nil when there is no such driver.
func (m *Manager) DriverLogs(t dataplane.VPNType) []logring.Record {
	buf := m.driverLogs[t]
	if buf == nil {
		return nil
	}
	return buf.Records()
}

// Close stops every instance (their dataplanes are cleaned up, their routes
// withdrawn) and refuses later attaches and detaches. It returns once all
// instance goroutines have ended, or with ctx's error. Idempotent.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	first := !m.closed
	m.closed = true
	insts := make([]*instance, 0, len(m.instances))
	for _, in := range m.instances {
		insts = append(insts, in)
	}
	m.mu.Unlock()
	var errs []error
	for _, in := range insts {
		if err := in.stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop %s: %w", in.name, err))
		}
	}
	if first {
		close(m.stop)
	}
	m.kept.Wait()
	return errors.Join(errs...)
}
