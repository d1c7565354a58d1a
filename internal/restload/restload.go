// Package restload drives a bagpipe-bgp REST API the way the benchmark
// commands (bench-attach, bench-evpn) load it: from several concurrent
// callers, each waiting for its answer before sending its next request
// (a closed loop, as agents waiting for their answers do), through a
// client that keeps one connection alive per caller and opens them all
// before any clock starts.
package restload

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bagpipe-go/bagpipe/client"
	"github.com/bagpipe-go/bagpipe/internal/benchstat"
)

// requestTimeout bounds one request: far above any answer time measured,
// it only keeps a stuck node from stalling a run forever.
const requestTimeout = time.Minute

// NewClient is a client of the API at base (http://host:port) whose own
// transport keeps up to clients idle connections to it, one per
// concurrent caller, and uses no proxy. The caller closes the transport's
// idle connections when done.
func NewClient(base string, clients int) (*client.Client, *http.Transport, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.MaxIdleConns = clients
	tr.MaxIdleConnsPerHost = clients
	cl, err := client.New(base, client.WithHTTPClient(&http.Client{Transport: tr}), client.WithTimeout(requestTimeout))
	if err != nil {
		return nil, nil, err
	}
	return cl, tr, nil
}

// WarmUp opens the keep-alive connections before a clock starts: clients
// callers ping at the same time, twice each. It returns the first error.
func WarmUp(ctx context.Context, cl *client.Client, clients int) error {
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for range 2 {
				if _, err := cl.Ping(ctx); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// Send is one request of a pass, as client.Client's AttachRaw and
// DetachRaw send one.
type Send func(ctx context.Context, body []byte) (*client.Response, error)

// Phase is one pass of requests.
type Phase struct {
	// Elapsed is from releasing the callers to the last answer.
	Elapsed time.Duration
	// Latencies are each request's, from its sending to its answer,
	// sorted; a failed request's included when failures are tolerated.
	Latencies []time.Duration
	// Failed counts the failed requests when failures are tolerated, and
	// FirstErr is the first of them.
	Failed   int
	FirstErr error
}

// Rate is the requests answered per second.
func (p Phase) Rate() float64 { return benchstat.Rate(len(p.Latencies), p.Elapsed) }

// Quantile is the q-quantile of the latencies (nearest rank).
func (p Phase) Quantile(q float64) time.Duration { return benchstat.Quantile(p.Latencies, q) }

// Run sends every body through send from clients callers at once, each
// taking the next body when its previous answer is in. The first error
// (named "<name> #<index of the body>") stops the pass and is returned,
// unless tolerate: then failed requests are counted in the Phase.
func Run(ctx context.Context, send Send, name string, bodies [][]byte, clients int, tolerate bool) (Phase, error) {
	lat := make([]time.Duration, len(bodies))
	var next atomic.Int64
	var mu sync.Mutex
	var ph Phase
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	start := time.Now()
	for range min(clients, len(bodies)) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= len(bodies) {
					return
				}
				t0 := time.Now()
				_, err := send(ctx, bodies[i])
				lat[i] = time.Since(t0)
				if err == nil {
					continue
				}
				err = fmt.Errorf("%s #%d: %w", name, i, err)
				if !tolerate || ctx.Err() != nil {
					cancel(err)
					return
				}
				mu.Lock()
				ph.Failed++
				if ph.FirstErr == nil {
					ph.FirstErr = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	ph.Elapsed = time.Since(start)
	if err := context.Cause(ctx); err != nil {
		return Phase{}, err
	}
	slices.Sort(lat)
	ph.Latencies = lat
	return ph, nil
}
