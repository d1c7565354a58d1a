//go:build linux

package e2e

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/portsbinding"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"

	"github.com/bagpipe-go/bagpipe/internal/cptestbed"
)

// buildNATSServer builds the nats-server command of the module's
// dependency (github.com/nats-io/nats-server/v2, in go.mod, so in the
// module cache and go.sum: no network needed) for the tests that restart
// NATS on its own. Without a go command the test is skipped.
func buildNATSServer(t *testing.T) string {
	t.Helper()
	goTool := requireExec(t, "go", "building nats-server")
	bin := filepath.Join(t.TempDir(), "nats-server")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool, "build", "-o", bin, "github.com/nats-io/nats-server/v2")
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build nats-server: %v\n%s", err, out)
	}
	t.Logf("built nats-server in %v", time.Since(start).Round(time.Millisecond))
	return bin
}

// gopherClient is a gophercloud client of the server's API, through the
// server's namespace.
func gopherClient(srv *cptestbed.Server) *gophercloud.ServiceClient {
	return &gophercloud.ServiceClient{
		ProviderClient: &gophercloud.ProviderClient{HTTPClient: *srv.HTTP},
		Endpoint:       srv.APIURL + "/",
		ResourceBase:   srv.APIURL + "/v2.0/",
		Type:           "network",
	}
}

// churnPort is a port the churn created and has not deleted.
type churnPort struct {
	id   string
	node *cptestbed.Node
}

// churn creates and deletes ports through the API (gophercloud), bound to
// the testbed's nodes on its networks, at a steady rate, plugging and
// unplugging their taps as a hypervisor would. Failed calls (the server
// or its bus being down) are counted and the churn goes on; a call whose
// outcome is unknown is settled by syncTaps afterwards from what the API
// says.
type churn struct {
	tb       *cptestbed.Testbed
	cl       *gophercloud.ServiceClient
	networks []string
	// minLive and maxLive bound the ports the churn keeps; maxOps bounds
	// its calls; interval is the pause between two.
	minLive, maxLive, maxOps int
	interval                 time.Duration
	rng                      *rand.Rand // the churn's goroutine's only

	mu                       sync.Mutex // guards the fields below
	live                     []churnPort
	creates, deletes, failed int
	firstErr                 error
	tapErrs                  []error
}

// churnStats are one churn's counts.
type churnStats struct {
	creates, deletes, failed int
	elapsed                  time.Duration
	firstErr                 error
}

func (s churnStats) String() string {
	ops := s.creates + s.deletes + s.failed
	out := fmt.Sprintf("%d calls in %v (%.0f/s): %d creates, %d deletes, %d failed",
		ops, s.elapsed.Round(time.Millisecond), float64(ops)/s.elapsed.Seconds(), s.creates, s.deletes, s.failed)
	if s.firstErr != nil {
		out += fmt.Sprintf(" (first: %v)", s.firstErr)
	}
	return out
}

// run churns until stop is closed, maxOps calls are made or ctx ends,
// one call every interval.
func (c *churn) run(ctx context.Context, stop <-chan struct{}) churnStats {
	c.mu.Lock()
	c.creates, c.deletes, c.failed, c.firstErr = 0, 0, 0, nil
	c.mu.Unlock()
	tick := time.NewTicker(c.interval)
	defer tick.Stop()
	start := time.Now()
	for n := 0; n < c.maxOps; n++ {
		select {
		case <-ctx.Done():
			return c.stats(start)
		case <-stop:
			return c.stats(start)
		case <-tick.C:
		}
		c.step(ctx)
	}
	return c.stats(start)
}

func (c *churn) stats(start time.Time) churnStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return churnStats{creates: c.creates, deletes: c.deletes, failed: c.failed, elapsed: time.Since(start), firstErr: c.firstErr}
}

// step makes one call: a create below minLive ports, a delete above
// maxLive, else either.
func (c *churn) step(ctx context.Context) {
	c.mu.Lock()
	n := len(c.live)
	c.mu.Unlock()
	if n < c.minLive || n < c.maxLive && c.rng.IntN(2) == 0 {
		c.create(ctx)
		return
	}
	c.delete(ctx)
}

func (c *churn) create(ctx context.Context) {
	node := c.tb.Nodes[c.rng.IntN(len(c.tb.Nodes))]
	network := c.networks[c.rng.IntN(len(c.networks))]
	p, err := ports.Create(ctx, c.cl, portsbinding.CreateOptsExt{
		CreateOptsBuilder: ports.CreateOpts{NetworkID: network, DeviceOwner: "compute:nova"},
		HostID:            node.HostID,
	}).Extract()
	if err != nil {
		c.fail(fmt.Errorf("create a port on %s: %w", node.HostID, err))
		return
	}
	tapErr := cptestbed.AddTaps(node.Host, cptestbed.TapName(p.ID))
	c.mu.Lock()
	defer c.mu.Unlock()
	c.creates++
	c.live = append(c.live, churnPort{id: p.ID, node: node})
	if tapErr != nil {
		c.tapErrs = append(c.tapErrs, tapErr)
	}
}

func (c *churn) delete(ctx context.Context) {
	c.mu.Lock()
	i := c.rng.IntN(len(c.live))
	p := c.live[i]
	c.mu.Unlock()
	err := ports.Delete(ctx, c.cl, p.id).ExtractErr()
	if err != nil && !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		c.fail(fmt.Errorf("delete port %s: %w", p.id, err))
		return
	}
	tapErr := cptestbed.DelTaps(p.node.Host, cptestbed.TapName(p.id))
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deletes++
	c.live = slices.DeleteFunc(c.live, func(q churnPort) bool { return q.id == p.id })
	if tapErr != nil {
		c.tapErrs = append(c.tapErrs, tapErr)
	}
}

func (c *churn) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failed++
	if c.firstErr == nil {
		c.firstErr = err
	}
}

// syncTaps makes the nodes' taps and the churn's list of live ports those
// of the ports the API has, as a hypervisor would after calls whose
// outcome it did not learn (a create answered by no one may have been
// committed; a failed delete may have been). It returns how many taps it
// added and removed.
func (c *churn) syncTaps(ctx context.Context) (added, removed int, err error) {
	list, err := c.tb.API.Ports(ctx)
	if err != nil {
		return 0, 0, err
	}
	var live []churnPort
	want := map[*cptestbed.Node][]string{}
	for _, p := range list {
		if n := c.tb.Node(p.HostID); n != nil {
			want[n] = append(want[n], cptestbed.TapName(p.ID))
			live = append(live, churnPort{id: p.ID, node: n})
		}
	}
	var errs []error
	for _, n := range c.tb.Nodes {
		have, err := cptestbed.Taps(n.Host)
		if err != nil {
			return added, removed, err
		}
		var add, del []string
		for _, name := range want[n] {
			if !slices.Contains(have, name) {
				add = append(add, name)
			}
		}
		for _, name := range have {
			if !slices.Contains(want[n], name) {
				del = append(del, name)
			}
		}
		errs = append(errs, cptestbed.AddTaps(n.Host, add...), cptestbed.DelTaps(n.Host, del...))
		added += len(add)
		removed += len(del)
	}
	c.mu.Lock()
	c.live = live
	errs = append(errs, c.tapErrs...)
	c.tapErrs = nil
	c.mu.Unlock()
	return added, removed, errors.Join(errs...)
}

// convergencePoll is how often the convergence is checked: each check
// reads every node's looking glass and kernel, so not too often on two
// cores; it is the resolution of the convergence times.
const convergencePoll = 50 * time.Millisecond

// waitConverged waits until every node holds exactly what the API's
// ports ask for (cptestbed.Testbed.Check), within timeout, and returns
// when that was first seen; the error lists the last differences.
func waitConverged(ctx context.Context, tb *cptestbed.Testbed, timeout time.Duration) (time.Time, error) {
	want, _, err := tb.Want(ctx)
	if err != nil {
		return time.Time{}, err
	}
	var last error
	err = cptestbed.PollEvery(ctx, timeout, convergencePoll, func(ctx context.Context) error {
		err := tb.Check(ctx, want)
		if ctx.Err() == nil {
			last = err // not one cut short by the deadline
		}
		return err
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("not converged within %v; last differences:\n%v", timeout, last)
	}
	return time.Now(), nil
}
