package deploy

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"stagehand/internal/errdefs"
	"stagehand/internal/fence"
	"stagehand/internal/lab/events"
	"stagehand/internal/store"
)

// Egress allow-lists of fenced deployments (fence/egress.go has the rules):
// the list is kept on the configuration's record with its fence policy
// (store.Config.FenceAllow, canonical text), so a restarted daemon's
// Adopt writes the same rules; the refused count lives in the fence's
// nftables counter on the host that routes the fence, read when asked.

// ActionEgressRefused is the event that reports refused connections.
const ActionEgressRefused = "egress-refused"

// CheckAllow parses and checks the allow-list of a deploy of name (the
// fence package decides what an entry may be); it needs a fenced
// deployment whose policy lets something out. It returns the canonical
// text the configuration's record keeps.
func CheckAllow(name string, fenced bool, policy string, allow []string) (string, error) {
	if len(allow) == 0 {
		return "", nil
	}
	if !fenced {
		return "", errdefs.Invalid("deploy %q: an allow-list needs a fenced deployment (--fenced --fence-policy out)", name)
	}
	rules, err := fence.ParseAllowList(allow)
	if err != nil {
		return "", fmt.Errorf("deploy %q: %w", name, err)
	}
	p, err := fence.ParsePolicy(policy)
	if err != nil {
		return "", fmt.Errorf("deploy %q: %w", name, err)
	}
	if err := fence.CheckAllow(p, rules); err != nil {
		return "", fmt.Errorf("deploy %q: %w", name, err)
	}
	return fence.FormatAllowList(rules), nil
}

// AllowList splits a record's FenceAllow into its entries ("" is none).
func AllowList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// allowRules reads the allow-list c's record keeps, for its fence spec.
func allowRules(c *store.Config) ([]fence.AllowRule, error) {
	rules, err := fence.ParseAllowList(AllowList(c.FenceAllow))
	if err != nil {
		return nil, fmt.Errorf("configuration %q: stored allow-list: %w", c.Name, err)
	}
	return rules, nil
}

// EgressCounter reads a fence's refused count; *fence.Fences is one.
// A Fences without it (a test's fake) counts nothing.
type EgressCounter interface {
	EgressRefused(fenceID string) (uint64, error)
}

// EgressRefused is how many packets the allow-list of c's fence refused
// since it was deployed (a TCP connection attempt is one), read from the
// fence on this host. ok is false when c has no allow-list or its fence
// is not here to read.
func (d *Deployments) EgressRefused(c *store.Config) (n uint64, ok bool) {
	ec, can := d.fences.(EgressCounter)
	if !can || !c.Fenced || c.FenceAllow == "" || c.Host != d.hostName {
		return 0, false
	}
	n, err := ec.EgressRefused(d.host.fence(c.ID))
	if err != nil {
		d.log.Debug("egress: refused count", "config", c.Name, "err", err)
		return 0, false
	}
	return n, true
}

// egressReports remembers, per configuration ID, the refused count the
// last egress-refused event gave, so an event is written only when it
// grew. In memory: after a restart the first report gives the count since
// the deploy again (the event says it is a total).
type egressReports struct {
	mu       sync.Mutex
	reported map[int64]uint64
}

// grew records n as c's reported count and returns the previous one, and
// whether n is more.
func (r *egressReports) grew(id int64, n uint64) (uint64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reported == nil {
		r.reported = map[int64]uint64{}
	}
	prev := r.reported[id]
	if n <= prev {
		return prev, false
	}
	r.reported[id] = n
	return prev, true
}

func (r *egressReports) forget(id int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.reported, id)
}

// ReportEgress writes, for each fenced deployment with an allow-list on
// this host whose refused count grew since its last report, one
// egress-refused event with the count. The daemon calls it once a minute
// (so a guest retrying in a loop makes one event a minute, not one a
// packet) and Undeploy once more at the end.
func (d *Deployments) ReportEgress(ctx context.Context) {
	var cs []store.Config
	err := d.store.View(ctx, func(tx store.Tx) error {
		all, err := tx.Configs().List()
		for _, c := range all {
			if c.Fenced && c.FenceAllow != "" && c.Host == d.hostName && c.State == store.StateDeployed {
				cs = append(cs, c)
			}
		}
		return err
	})
	if err != nil {
		d.log.Warn("egress report: list configurations", "err", err)
		return
	}
	for _, c := range cs {
		d.reportEgress(ctx, &c)
	}
}

// reportEgress writes c's egress-refused event if its count grew.
func (d *Deployments) reportEgress(ctx context.Context, c *store.Config) {
	n, ok := d.EgressRefused(c)
	if !ok {
		return
	}
	prev, grew := d.egress.grew(c.ID, n)
	if !grew {
		return
	}
	d.lab.Record(ctx, events.Event{Object: ObjectConfig, Action: ActionEgressRefused, Subject: c.Name, Result: events.ResultOK,
		Detail: fmt.Sprintf("%d connection attempts refused by the allow-list since the last report, %d since deploy (allowed: %s)",
			n-prev, n, strings.ReplaceAll(c.FenceAllow, ",", ", "))})
}

// reportEgressAtUndeploy reports what the fence of plan's configuration
// refused since the last report, before the fence goes.
func (d *Deployments) reportEgressAtUndeploy(ctx context.Context, plan *deployPlan) {
	if plan.fence == nil {
		return
	}
	d.reportEgress(ctx, plan.config)
	d.egress.forget(plan.config.ID)
}
