//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// pingRunTimeout bounds one ping run; its -w deadline is shorter.
const pingRunTimeout = 15 * time.Second

// pingResult is one `ping -c 3` run from a VM to another.
type pingResult struct {
	from, to *vm
	sent     int
	received int
	avgRTT   string
	ttl      int       // of the first reply
	firstSeq int       // icmp_seq of the first reply
	first    time.Time // when the first reply came
	err      error
}

// What the demo reads of ping's output (with -D, each reply line starts
// with its time).
var (
	pingReply  = regexp.MustCompile(`(?m)^\[(\d+)\.(\d+)\] \d+ bytes from [^:]+: icmp_seq=(\d+) ttl=(\d+)`)
	pingCounts = regexp.MustCompile(`(\d+) packets transmitted, (\d+) (?:packets )?received`)
	pingRTT    = regexp.MustCompile(`= [\d.]+/([\d.]+)/`)
)

// pings runs a ping from the first VM of each pair to the second, all at
// once, prints a line per pair and records the failures; early says why
// echoes before the first reply may go unanswered. It returns when the
// last of the first replies came, and whether every pair got one.
func (d *demo) pings(ctx context.Context, pairs [][2]*vm, early string) (time.Time, bool) {
	results := make([]*pingResult, len(pairs))
	var wg sync.WaitGroup
	for i, p := range pairs {
		results[i] = &pingResult{from: p[0], to: p[1]}
		wg.Go(func() { results[i].run(ctx) })
	}
	wg.Wait()
	ok := 0
	var last time.Time
	for _, r := range results {
		line := fmt.Sprintf("%s (%s) → %s %s (%s): ", r.from.name, r.from.node.name, r.to.name, r.to.ip, r.to.node.name)
		switch {
		case r.err != nil:
			line += "FAILED: " + r.err.Error()
			d.fail("ping from %s to %s: %v", r.from.name, r.to.name, r.err)
		case r.received == 0:
			line += fmt.Sprintf("FAILED: %d sent, no reply", r.sent)
			d.fail("ping from %s to %s: no reply", r.from.name, r.to.name)
		default:
			ok++
			if r.first.After(last) {
				last = r.first
			}
			line += fmt.Sprintf("%d/%d replies, ttl %d, average round trip %s ms  OK", r.received, r.sent, r.ttl, r.avgRTT)
			if n := r.firstSeq - 1; n > 0 && r.sent-r.received == n {
				// ping stops at the third reply: the echoes it sent
				// unanswered are exactly those before the first reply.
				which := "echo 1"
				if n > 1 {
					which = fmt.Sprintf("echoes 1-%d", n)
				}
				line += fmt.Sprintf(" (%s %s)", which, early)
			}
		}
		d.say("%s", line)
	}
	d.say("%d of %d pings answered", ok, len(results))
	return last, ok == len(results)
}

// run pings r.to from inside r.from's VM: three echoes answered, 200 ms
// apart, or 10 s.
func (r *pingResult) run(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, pingRunTimeout)
	defer cancel()
	out, err := r.from.host.Exec(ctx, "ping", "-n", "-D", "-c", "3", "-i", "0.2", "-W", "1", "-w", "10", r.to.ip.String())
	m := pingCounts.FindSubmatch(out)
	if m == nil {
		if err == nil {
			err = errors.New("no summary in ping's output")
		}
		r.err = fmt.Errorf("%w: %s", err, strings.Join(strings.Fields(string(out)), " "))
		return
	}
	r.sent, _ = strconv.Atoi(string(m[1]))
	r.received, _ = strconv.Atoi(string(m[2]))
	if m := pingRTT.FindSubmatch(out); m != nil {
		r.avgRTT = string(m[1])
	}
	if m := pingReply.FindSubmatch(out); m != nil {
		sec, _ := strconv.ParseInt(string(m[1]), 10, 64)
		frac := string(m[2])
		usec, _ := strconv.ParseInt((frac + "000000")[:6], 10, 64)
		r.first = time.Unix(sec, usec*1000)
		r.firstSeq, _ = strconv.Atoi(string(m[3]))
		r.ttl, _ = strconv.Atoi(string(m[4]))
	}
}
