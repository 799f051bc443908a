package deploy

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"stagehand/internal/errdefs"
	"stagehand/internal/fence"
	"stagehand/internal/revert"
	"stagehand/internal/store"
)

// A spread deployment (`config deploy --fenced --spread`, issue 13) runs
// the VMs of one fenced configuration on several hosts: store.VM.Host
// names each VM's host ("" is the configuration's home). The home host
// runs the deploy as for one host, with the fence's router (outside
// links, NAT, policy, DHCP for every VM); each other host of the
// deployment, a member, runs its part: the fence's inside bridges, its
// VMs' taps, seeds and processes. One VXLAN per fenced network (its VNI
// from store.FenceVNIs, the same on every host) joins the inside bridges
// (fence.Span). The home starts the members' parts after its own and
// before the commit that marks the configuration deployed, and stops them
// at undeploy and on every rollback, through Members (the lab's host
// link). Unfenced networks do not span hosts: a spread deploy needs a
// fence (docs/decisions.md).

// Members reaches the member hosts of a spread deployment: StartPart asks
// host to start its part of configuration config (which must be
// deploying, with this host as its home); StopPart to stop its VMs
// (saving their states with saveState) and tear its part of the fence
// down. Both are idempotent.
type Members interface {
	StartPart(ctx context.Context, host, config string) error
	StopPart(ctx context.Context, host, config string, saveState bool) error
}

// Parts are the parts of spread deployments: a member's, which the home
// starts and stops, and the home's view of its members.
type Parts struct{ d *Deployments }

// Parts returns the deployments' spread parts.
func (d *Deployments) Parts() Parts { return Parts{d} }

// home is the host of c's router and of its VMs without a host: its
// recorded home, or this host for a configuration made before hosts were
// recorded.
func (ps Parts) home(c *store.Config) string {
	d := ps.d
	if c.Host == "" {
		return d.hostName
	}
	return c.Host
}

// vmHost is the host vm runs on when c is deployed.
func (ps Parts) vmHost(c *store.Config, vm store.VM) string {
	if vm.Host == "" {
		return ps.home(c)
	}
	return vm.Host
}

// SpreadHosts are the hosts of c's VMs, the home first, each once; more
// than one means c is (to be) deployed spread.
func SpreadHosts(c *store.Config, home string) []string {
	if c.Host != "" {
		home = c.Host
	}
	out := []string{home}
	for _, vm := range c.VMs {
		if vm.Host != "" && !slices.Contains(out, vm.Host) {
			out = append(out, vm.Host)
		}
	}
	return out
}

// spreadPlan narrows p, the plan of c, to this host's part when c's VMs
// are on several hosts: its VMs only, the fence spread with this host's
// underlay address, the others' as peers and the router on the home; on
// the home, p.members are the other hosts. A configuration on one host is
// left as it is.
func (ps Parts) spreadPlan(tx store.Tx, c *store.Config, p *deployPlan) error {
	d := ps.d
	hosts := SpreadHosts(c, d.hostName)
	if len(hosts) < 2 {
		return nil
	}
	if p.fence == nil {
		return errdefs.Conflict("configuration %q has VMs on hosts %s: only a fenced deployment spans hosts (deploy it with --fenced --spread)",
			c.Name, strings.Join(hosts[1:], ", "))
	}
	if d.fences == nil {
		return errdefs.Unavailable("configuration %q is spread over hosts, and this daemon runs no fences", c.Name)
	}
	me, home := d.hostName, ps.home(c)
	mine := p.vms[:0:0]
	for _, vp := range p.vms {
		if ps.vmHost(c, vp.vm) == me {
			mine = append(mine, vp)
		}
	}
	p.vms = mine
	if me == home {
		p.members = hosts[1:]
	} else {
		// The router alone has outside links: a member needs no segment.
		p.segments = nil
	}
	span := &fence.Span{Router: me == home, VNIs: map[string]uint32{}}
	for _, h := range hosts {
		addr, err := underlayOf(tx, h)
		if err != nil {
			return fmt.Errorf("configuration %q: %w", c.Name, err)
		}
		if h == me {
			span.Local = addr
		} else {
			span.Peers = append(span.Peers, addr)
		}
	}
	if !span.Local.IsValid() {
		return errdefs.Conflict("configuration %q: this host %q is none of its hosts (%s)", c.Name, me, strings.Join(hosts, ", "))
	}
	link, err := d.fences.UnderlayLink(span.Local)
	if err != nil {
		return fmt.Errorf("configuration %q: %w", c.Name, err)
	}
	span.Underlay = link
	vnis, err := tx.FenceVNIs().OfConfig(c.ID)
	if err != nil {
		return err
	}
	for _, v := range vnis {
		nw, err := tx.Networks().GetByID(v.NetworkID)
		if err != nil {
			return err
		}
		span.VNIs[nw.Name] = uint32(v.VNI)
	}
	spec := *p.fence
	spec.Span = span
	p.fence = &spec
	return nil
}

// underlayOf reads host's underlay address from the store.
func underlayOf(tx store.Tx, host string) (netip.Addr, error) {
	h, err := tx.Hosts().Get(host)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("host %q: %w", host, err)
	}
	a, err := netip.ParseAddr(h.Underlay)
	if err != nil {
		return netip.Addr{}, errdefs.Unavailable("host %q has no usable underlay address (%q): start it with --underlay", host, h.Underlay)
	}
	return a, nil
}

// allocateVNIs gives, inside tx, each network of c a VNI when c is
// spread; the external addresses' release frees them (fence.go).
func (ps Parts) allocateVNIs(tx store.Tx, c *store.Config) error {
	d := ps.d
	if len(SpreadHosts(c, d.hostName)) < 2 {
		return nil
	}
	for _, vm := range c.VMs {
		for _, n := range vm.NICs {
			if _, err := tx.FenceVNIs().Allocate(c.ID, n.NetworkID); err != nil {
				return fmt.Errorf("VXLAN identifier for configuration %q: %w", c.Name, err)
			}
		}
	}
	return nil
}

// runsHere refuses to act on a VM of c that runs on another host. The
// API forwards a request about one VM to the host that runs it (a
// member, for a VM of a spread deployment; api/forward.go), so one that
// reaches the wrong host came around the API's forwarding.
func (ps Parts) runsHere(c *store.Config, vm *store.VM) error {
	here := ps.d.hostName
	if here == "" {
		here = ps.home(c) // one host without a name: everything is here
	}
	if h := ps.vmHost(c, *vm); h != here {
		return runsElsewhere(c.Name, vm.Name, h, here)
	}
	return nil
}

// runsElsewhere is the error about VM vm of config that runs on host,
// not here.
func runsElsewhere(config, vm, host, here string) error {
	return errdefs.Unavailable("VM %q of %q runs on host %q, not on this host %q: send the request to any host's API, which forwards it to the VM's host",
		vm, config, host, here)
}

// hasPartHere says whether this host runs a part of c as a member.
func (ps Parts) hasPartHere(c *store.Config) bool {
	d := ps.d
	return d.hostName != "" && ps.home(c) != d.hostName && slices.ContainsFunc(c.VMs, func(vm store.VM) bool { return vm.Host == d.hostName })
}

// startMembers starts the members' parts of plan, after this host's.
// Each part's stop goes on rev before it starts: a part that fails
// halfway undoes itself, and stopping what is not there is nothing.
func (ps Parts) startMembers(ctx context.Context, plan *deployPlan, rev *revert.Reverter) error {
	d := ps.d
	undoCtx := context.WithoutCancel(ctx)
	for _, h := range plan.members {
		if err := d.lab.Fault(ctx, "deploy", "member"); err != nil {
			return err
		}
		if d.members == nil {
			return errdefs.Unavailable("host %q runs VMs of %q, and this daemon has no link to it", h, plan.config.Name)
		}
		rev.Add("part on host "+h, func() error { return d.members.StopPart(undoCtx, h, plan.config.Name, false) })
		if err := d.members.StartPart(ctx, h, plan.config.Name); err != nil {
			return fmt.Errorf("host %q: %w", h, err)
		}
	}
	return nil
}

// stopMembers stops the members' parts of plan, each saving its VMs'
// states with saveState.
func (ps Parts) stopMembers(ctx context.Context, plan *deployPlan, saveState bool) error {
	d := ps.d
	var errs []error
	for _, h := range plan.members {
		if err := d.lab.Fault(ctx, "undeploy", "member"); err != nil {
			errs = append(errs, fmt.Errorf("host %q: %w", h, err))
			continue
		}
		if d.members == nil {
			errs = append(errs, errdefs.Unavailable("host %q runs VMs of %q, and this daemon has no link to it", h, plan.config.Name))
			continue
		}
		if err := d.members.StopPart(ctx, h, plan.config.Name, saveState); err != nil {
			errs = append(errs, fmt.Errorf("host %q: %w", h, err))
		}
	}
	return errors.Join(errs...)
}

// memberPlan plans, for StartPart and StopPart, this host's part of the
// configuration name whose home from asks.
func (ps Parts) memberPlan(ctx context.Context, name, from, accel string, states ...string) (*deployPlan, error) {
	d := ps.d
	var plan *deployPlan
	err := d.store.View(ctx, func(tx store.Tx) error {
		c, err := tx.Configs().Get(name)
		if err != nil {
			return err
		}
		if home := ps.home(c); home != from || home == d.hostName {
			return errdefs.Conflict("configuration %q lives on host %q: only it starts or stops the parts on other hosts", name, home)
		}
		if !slices.Contains(states, c.State) {
			return errdefs.Conflict("configuration %q is %s", name, c.State)
		}
		plan, err = d.planDeploy(tx, c, accel)
		return err
	})
	return plan, err
}

// StartPart starts this host's part of the spread deployment of name,
// which its home from is deploying: the inside of the fence with its
// VXLANs, and this host's VMs. A failure undoes what it did.
func (ps Parts) StartPart(ctx context.Context, name, from string) error {
	d := ps.d
	if err := d.requireRuntime("deploy", name); err != nil {
		return err
	}
	accel, err := d.lab.WaitAccel(ctx, "deploy", name)
	if err != nil {
		return err
	}
	unlock := d.lab.Lock(name)
	defer unlock()
	plan, err := ps.memberPlan(ctx, name, from, accel, store.StateDeploying)
	if err != nil {
		return fmt.Errorf("deploy %q on host %q: %w", name, d.hostName, err)
	}
	rev := revert.New(d.log.With("op", "deploy-part", "config", name))
	started, err := d.bringUp(ctx, plan, rev)
	if err != nil {
		err = fmt.Errorf("deploy %q on host %q: %w", name, d.hostName, err)
		if uerr := rev.Fail(); uerr != nil {
			err = fmt.Errorf("%w; rollback incomplete: %v", err, uerr)
		}
		return err
	}
	rev.Success()
	// The states its VMs resumed from stay until the home commits the
	// deployment: a rollback after this answer leaves them saved, to be
	// resumed by the next deploy; StopPart removes them once the store
	// says they ran (dropResumed).
	d.keepStarted(plan, started)
	d.log.Info("started this host's part of a spread deployment", "config", name, "home", from, "vms", len(plan.vms))
	return nil
}

// StopPart powers off (with saveState suspends) this host's VMs of the
// spread deployment of name and tears its part of the fence down. The
// VMs that saved their states are recorded saved, as an undeploy on one
// host records them (markSaved); their state files stay here, and go
// home with their tops (lab's gather). If a save fails, that VM runs on
// and the part stays up: the home's undeploy again retries.
func (ps Parts) StopPart(ctx context.Context, name, from string, saveState bool) error {
	d := ps.d
	if err := d.requireRuntime("undeploy", name); err != nil {
		return err
	}
	unlock := d.lab.Lock(name)
	defer unlock()
	plan, err := ps.memberPlan(ctx, name, from, "", store.StateDeploying, store.StateDeployed, store.StateUndeploying, store.StateFailed)
	if err != nil {
		return fmt.Errorf("undeploy %q on host %q: %w", name, d.hostName, err)
	}
	ps.dropResumed(plan)
	saved, errs := d.stopVMs(ctx, plan, saveState)
	if slices.Contains(saved, true) {
		if err := d.lab.Update(context.WithoutCancel(ctx), func(tx store.Tx) error {
			c, err := tx.Configs().Get(name)
			if err != nil {
				return err
			}
			return markSaved(tx, c, plan, saved)
		}); err != nil {
			errs = append(errs, fmt.Errorf("record the saved VMs: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("undeploy %q on host %q: %w", name, d.hostName, err)
	}
	d.releasePlumbing(ctx, plan)
	d.log.Info("stopped this host's part of a spread deployment", "config", name, "home", from, "vms", len(plan.vms), "saved_state", saveState)
	return nil
}

// dropResumed removes the state files this host's VMs of plan resumed
// from (StartPart keeps them) once the store says the VMs ran: the
// deployment committed, so a file left would be resumed again. A VM
// still recorded saved (a deploy rolled back, or a state an earlier
// undeploy saved) keeps its file.
func (ps Parts) dropResumed(plan *deployPlan) {
	d := ps.d
	for _, vp := range plan.vms {
		if f := d.host.abs(StateFile(vp.vm.ID)); vp.vm.State != VMStateSaved && fileExists(f) {
			d.discardResumed(plan.config.Name, vp.vm.Name, f)
		}
	}
}
