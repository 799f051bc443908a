package deploy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"stagehand/internal/errdefs"
	"stagehand/internal/fence"
	"stagehand/internal/hypervisor"
	"stagehand/internal/ipam"
	"stagehand/internal/lab/journal"
	"stagehand/internal/revert"
	"stagehand/internal/seed"
	"stagehand/internal/store"
)

// runningVMs holds the QEMU handles of this daemon's running VMs, by the
// VM's store ID.
type runningVMs struct {
	mu sync.Mutex
	m  map[int64]*runningVM
}

type runningVM struct {
	vm VM
	// stopping is set when the lab itself ends the process (undeploy), so
	// the watcher does not report the exit as the guest's own.
	stopping atomic.Bool
	consoles vmConsoles
}

func (r *runningVMs) get(id int64) *runningVM {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m[id]
}

func (r *runningVMs) put(id int64, v *runningVM) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[int64]*runningVM{}
	}
	r.m[id] = v
}

func (r *runningVMs) drop(id int64, v *runningVM) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m[id] == v {
		delete(r.m, id)
	}
}

// vmPlan is everything needed to start one VM.
type vmPlan struct {
	vm   store.VM
	spec hypervisor.Spec
	nics []nicPlan
	seed *seed.Spec // nil: the template opted out (see seed.go)
}

type nicPlan struct {
	network string
	mac     string
	ip      netip.Addr
	tap     string
}

type segmentPlan struct {
	name    string
	gateway netip.Prefix
	dns     []netip.Addr
	dynamic fence.AddrRange
}

type deployPlan struct {
	config   *store.Config
	vms      []vmPlan
	segments []segmentPlan
	fence    *fence.FenceSpec // set for a fenced deployment
	// members are the other hosts of a spread deployment whose parts
	// this host, its home, starts and stops (spread.go).
	members []string
}

// planDeploy reads everything a deployment of c needs inside tx. accel is
// what its VMs start with; callers that start none (undeploy, re-adoption)
// pass "".
func (d *Deployments) planDeploy(tx store.Tx, c *store.Config, accel string) (*deployPlan, error) {
	idx, err := LayerIndex(tx)
	if err != nil {
		return nil, err
	}
	p := &deployPlan{config: c}
	if c.Fenced {
		spec, err := d.fenceSpec(tx, c)
		if err != nil {
			return nil, err
		}
		p.fence = &spec
	}
	segs := map[int64]bool{}
	for _, vm := range c.VMs {
		t, err := tx.Templates().GetByID(vm.TemplateID)
		if err != nil {
			return nil, fmt.Errorf("VM %q: template: %w", vm.Name, err)
		}
		vp := vmPlan{vm: vm, spec: hypervisor.Spec{
			ID: d.host.vm(vm.ID), CPUs: vm.CPUs, MemoryMiB: vm.MemoryMiB, Accel: accel,
			RunDir: d.host.runDir(vm.ID), Cmdline: t.Cmdline,
		}}
		if c.Fenced {
			vp.spec.Netns = fence.NamespaceName(d.host.fence(c.ID))
		}
		if t.Kernel != "" {
			vp.spec.Kernel = d.host.abs(t.Kernel)
		}
		if t.Initrd != "" {
			vp.spec.Initrd = d.host.abs(t.Initrd)
		}
		disks := append([]store.Disk(nil), vm.Disks...)
		sort.Slice(disks, func(i, j int) bool { return disks[i].Index < disks[j].Index })
		for _, dk := range disks {
			l, ok := idx[dk.TopLayerID]
			if !ok {
				return nil, fmt.Errorf("VM %q disk %d: top layer %d missing from the store", vm.Name, dk.Index, dk.TopLayerID)
			}
			vp.spec.Disks = append(vp.spec.Disks, d.host.abs(l.Path))
		}
		for _, n := range vm.NICs {
			nw, err := tx.Networks().GetByID(n.NetworkID)
			if err != nil {
				return nil, err
			}
			np := nicPlan{network: nw.Name, mac: n.MAC, ip: n.IP, tap: d.host.tap(n.ID)}
			vp.nics = append(vp.nics, np)
			vp.spec.NICs = append(vp.spec.NICs, hypervisor.NIC{Tap: np.tap, MAC: n.MAC})
			if !segs[nw.ID] {
				segs[nw.ID] = true
				sp := segmentPlan{name: nw.Name, gateway: netip.PrefixFrom(nw.Gateway, nw.Subnet.Bits()), dns: nw.DNS}
				if first, last, ok := ipam.DynamicRange(nw); ok {
					sp.dynamic = fence.AddrRange{First: first, Last: last}
				}
				p.segments = append(p.segments, sp)
			}
		}
		if err := planSeed(tx, c, vm, t, &vp); err != nil {
			return nil, err
		}
		if vm.State == VMStateSaved {
			if f := d.host.abs(StateFile(vm.ID)); fileExists(f) {
				vp.spec.IncomingStateFile = f
			}
		}
		p.vms = append(p.vms, vp)
	}
	if err := d.Parts().spreadPlan(tx, c, p); err != nil {
		return nil, err
	}
	return p, nil
}

// addressConflicts lists the addresses of c that a VM of another deployed,
// unfenced configuration uses on the same network.
func addressConflicts(tx store.Tx, c *store.Config) ([]string, error) {
	all, err := tx.Configs().List()
	if err != nil {
		return nil, err
	}
	type key struct {
		network int64
		ip      netip.Addr
	}
	inUse := map[key]string{}
	for _, o := range all {
		if o.ID == c.ID || o.Fenced || o.State == store.StateUndeployed {
			continue
		}
		for _, vm := range o.VMs {
			if vm.State == store.StateUndeployed || vm.State == VMStateSaved {
				continue
			}
			for _, n := range vm.NICs {
				if n.IP.IsValid() {
					inUse[key{n.NetworkID, n.IP}] = o.Name + "/" + vm.Name
				}
			}
		}
	}
	var out []string
	for _, vm := range c.VMs {
		for _, n := range vm.NICs {
			if holder, ok := inUse[key{n.NetworkID, n.IP}]; ok && n.IP.IsValid() {
				nw, err := tx.Networks().GetByID(n.NetworkID)
				if err != nil {
					return nil, err
				}
				out = append(out, fmt.Sprintf("%s (VM %s) on network %q is in use by %s", n.IP, vm.Name, nw.Name, holder))
			}
		}
	}
	return out, nil
}

// Deploy starts one QEMU process per VM of an undeployed configuration:
// its disks' top layers, its NICs as taps on the bridges of their networks
// with DHCP reservations (MAC → address), and resumes VMs with a saved
// state. An unfenced deploy is refused while another deployed
// configuration uses one of its addresses. If any step fails, everything
// done is undone and the configuration is undeployed with the error.
func (d *Deployments) Deploy(ctx context.Context, name string, opts Options) error {
	policy, err := CheckPolicy(name, opts.Fenced, opts.FencePolicy)
	if err != nil {
		return err
	}
	opts.FencePolicy = policy
	allow, err := CheckAllow(name, opts.Fenced, policy, opts.Allow)
	if err != nil {
		return err
	}
	if err := d.requireRuntime("deploy", name); err != nil {
		return err
	}
	// Before the lock: a deploy that waits for the probe holds nothing.
	accel, err := d.lab.WaitAccel(ctx, "deploy", name)
	if err != nil {
		return err
	}
	unlock := d.lab.Lock(name)
	defer unlock()

	var plan *deployPlan
	err = d.lab.Update(ctx, func(tx store.Tx) error {
		c, err := tx.Configs().Get(name)
		if err != nil {
			return err
		}
		if c.State != store.StateUndeployed {
			return errdefs.Conflict("configuration %q is %s; only an undeployed configuration can be deployed", name, c.State)
		}
		if err := d.lab.Deployable(c); err != nil {
			return err
		}
		if c.InstantOf != "" && !opts.Fenced {
			return errdefs.Invalid("configuration %q shares the saved memory state of %q: its guests resume with %q's MACs and addresses in memory, which would clash on the network with %q and its other copies; deploy it with --fenced",
				name, c.InstantOf, c.InstantOf, c.InstantOf)
		}
		if opts.Admit != nil {
			if err := opts.Admit(tx, c); err != nil {
				return err
			}
		}
		if opts.Fenced {
			// Inside its fence it keeps its addresses; outside it gets new
			// ones, so it conflicts with nobody.
			if err := d.external.allocate(tx, c); err != nil {
				return err
			}
			if err := d.Parts().allocateVNIs(tx, c); err != nil {
				return err
			}
		} else {
			conflicts, err := addressConflicts(tx, c)
			if err != nil {
				return err
			}
			if len(conflicts) > 0 {
				return errdefs.Conflict("duplicate addresses: %s; deploy it with --fenced, or give it new addresses with `stagehand config change-ips %s`",
					strings.Join(conflicts, "; "), name)
			}
		}
		c.State, c.LastError, c.Fenced, c.FencePolicy = store.StateDeploying, "", opts.Fenced, opts.FencePolicy
		c.FenceAllow = allow
		c.Host = d.hostName // where it runs, written before anything starts there
		if err := tx.Configs().Update(c); err != nil {
			return err
		}
		plan, err = d.planDeploy(tx, c, accel)
		return err
	})
	if err != nil {
		return fmt.Errorf("deploy %q: %w", name, err)
	}

	// Each step changes the host; rev undoes the steps done, newest
	// first, when a later one fails. It logs an undo that fails, and the
	// deploy's error reports it.
	rev := revert.New(d.log.With("op", "deploy", "config", name))
	defer rev.Fail()
	fail := func(err error) error {
		err = fmt.Errorf("deploy %q: %w", name, err)
		var incomplete []error
		if uerr := rev.Fail(); uerr != nil {
			incomplete = append(incomplete, uerr)
		}
		if uerr := d.setUndeployed(name, err.Error()); uerr != nil {
			incomplete = append(incomplete, uerr)
		}
		if uerr := errors.Join(incomplete...); uerr != nil {
			err = fmt.Errorf("%w; rollback incomplete: %v", err, uerr)
			d.log.Error("deploy failed; rollback incomplete, doctor or a restart finishes it", "config", name, "err", err)
		} else {
			d.log.Error("deploy failed and was rolled back", "config", name, "err", err)
		}
		d.recordFailure(ctx, "deploy", name, err)
		return err
	}
	started, err := d.bringUp(ctx, plan, rev)
	if err != nil {
		return fail(err)
	}
	if err := d.Parts().startMembers(ctx, plan, rev); err != nil {
		return fail(err)
	}
	if err := d.lab.Fault(ctx, "deploy", "commit"); err != nil {
		return fail(err)
	}
	err = d.lab.Update(ctx, func(tx store.Tx) error {
		c, err := tx.Configs().Get(name)
		if err != nil {
			return err
		}
		c.State = store.StateDeployed
		if err := tx.Configs().Update(c); err != nil {
			return err
		}
		for i := range c.VMs {
			c.VMs[i].State = VMStateRunning
			if err := tx.Configs().UpdateVM(&c.VMs[i]); err != nil {
				return err
			}
		}
		// The lab writes the lease and reads its view here, in the
		// transaction that makes the deployment real.
		if opts.Commit != nil {
			return opts.Commit(tx, c)
		}
		return nil
	})
	if err != nil {
		return fail(err)
	}
	rev.Success()
	d.keepStarted(plan, started)
	d.discardResumedOf(plan)
	d.log.Info("configuration deployed", "config", name, "vms", len(plan.vms), "accel", accel, "fenced", opts.Fenced)
	d.record(ctx, "deploy", name, deployDetail(opts))
	return nil
}

// bringUp does what makes plan run on this host (a deploy's, or a member
// host's part of a spread deploy: spread.go): its segments, its fence, the VMs' taps,
// their seeds and their processes. Each step's undo goes on rev; on error
// it returns the handles of the VMs that did start (their undo is on rev
// too).
func (d *Deployments) bringUp(ctx context.Context, plan *deployPlan, rev *revert.Reverter) ([]*runningVM, error) {
	undoCtx := context.WithoutCancel(ctx)
	for _, seg := range plan.segments {
		// A segment is shared and stays (as its bridge does): no undo.
		if err := d.lab.Fault(ctx, "deploy", "segment"); err != nil {
			return nil, err
		}
		if err := d.segs.EnsureSegment(ctx, seg.name, seg.gateway, seg.dns, seg.dynamic); err != nil {
			return nil, err
		}
	}
	if plan.fence != nil {
		if err := d.lab.Fault(ctx, "deploy", "fence"); err != nil {
			return nil, err
		}
		// A fence that fails halfway undoes itself (fence.Setup).
		spec := *plan.fence
		if _, err := d.fences.Setup(ctx, spec); err != nil {
			return nil, err
		}
		rev.Add("fence "+spec.ID, func() error { return d.fences.Teardown(undoCtx, spec) })
	}
	for _, vp := range plan.vms {
		for _, n := range vp.nics {
			if plan.fence != nil {
				// The fence's own DHCP serves the reservations inside; the
				// tap goes with the fence's namespace at teardown.
				if err := d.lab.Fault(ctx, "deploy", "tap"); err != nil {
					return nil, err
				}
				if err := d.fences.CreateTap(ctx, plan.fence.ID, n.tap, n.network); err != nil {
					return nil, fmt.Errorf("VM %q: %w", vp.vm.Name, err)
				}
				continue
			}
			// Unreserve and DeleteTap accept what is not there, so each
			// undo is added before its step: a step that fails halfway
			// is undone too.
			if n.ip.IsValid() {
				if err := d.lab.Fault(ctx, "deploy", "reserve"); err != nil {
					return nil, err
				}
				rev.Add("DHCP reservation "+n.mac, func() error { return d.segs.Unreserve(n.network, n.mac) })
				if err := d.segs.Reserve(n.network, n.mac, n.ip); err != nil {
					return nil, fmt.Errorf("VM %q: DHCP reservation: %w", vp.vm.Name, err)
				}
			}
			if err := d.lab.Fault(ctx, "deploy", "tap"); err != nil {
				return nil, err
			}
			rev.Add("tap "+n.tap, func() error { return d.segs.DeleteTap(undoCtx, n.tap) })
			if err := d.segs.CreateTap(ctx, n.tap, n.network); err != nil {
				return nil, fmt.Errorf("VM %q: %w", vp.vm.Name, err)
			}
		}
	}
	if err := d.lab.Fault(ctx, "deploy", "seed"); err != nil {
		return nil, err
	}
	// Written again at every deploy, from the store as it is now.
	rev.Add("seeds", func() error { return d.removeSeeds(plan) })
	for _, vp := range plan.vms {
		if err := writeSeed(ctx, vp); err != nil {
			return nil, err
		}
	}
	if err := d.lab.Fault(ctx, "deploy", "start"); err != nil {
		return nil, err
	}
	started, err := d.startVMs(ctx, plan.vms)
	for _, rv := range started {
		rev.Add(fmt.Sprintf("VM process %d", rv.vm.PID()), func() error {
			rv.stopping.Store(true)
			err := rv.vm.Kill(undoCtx)
			rv.vm.Close()
			return err
		})
	}
	return started, err
}

// keepStarted hands the started VMs of plan (in plan order) to the
// daemon: their handles and watchers.
func (d *Deployments) keepStarted(plan *deployPlan, started []*runningVM) {
	for i, vp := range plan.vms {
		d.vms.put(vp.vm.ID, started[i])
		d.watch(plan.config.Name, vp.vm, started[i])
	}
}

// discardResumedOf takes away the state files plan's VMs resumed from,
// once their deployment is committed (until then a rollback keeps them
// saved).
func (d *Deployments) discardResumedOf(plan *deployPlan) {
	for _, vp := range plan.vms {
		if vp.spec.IncomingStateFile != "" {
			d.discardResumed(plan.config.Name, vp.vm.Name, vp.spec.IncomingStateFile)
		}
	}
}

// discardResumed takes away the state file a VM resumed from: the state is
// in the running guest now, and a file left would be resumed again by the
// next deploy. A link shared with other copies is removed at once (it
// frees nothing). The last link's name goes at once (a rename) and its
// bytes are freed in the background: unlinking a state of hundreds of MiB
// takes tens of milliseconds the deploy's caller would wait for (three
// states: 110 ms of a 0.45 s instant deploy). A crash before the unlink
// leaves the renamed file, which Recover removes at the next start.
func (d *Deployments) discardResumed(config, vm, file string) {
	var st syscall.Stat_t
	if err := syscall.Stat(file, &st); err == nil && st.Nlink > 1 {
		if err := os.Remove(file); err != nil && !errors.Is(err, fs.ErrNotExist) {
			d.log.Error("remove resumed state file", "config", config, "vm", vm, "err", err)
		}
		return
	}
	gone := file + ResumedMark + journal.RandomHex(4)
	if err := os.Rename(file, gone); err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			d.log.Error("remove resumed state file", "config", config, "vm", vm, "err", err)
		}
		return
	}
	go func() {
		if err := os.Remove(gone); err != nil && !errors.Is(err, fs.ErrNotExist) {
			d.log.Error("remove resumed state file", "config", config, "vm", vm, "err", err)
		}
	}()
}

// startVMs starts every VM in parallel. It returns the handles in plan
// order; on error, the handles of those that did start (nil for others are
// left out) so the caller can stop them.
func (d *Deployments) startVMs(ctx context.Context, vms []vmPlan) ([]*runningVM, error) {
	out := make([]*runningVM, len(vms))
	errs := make([]error, len(vms))
	var wg sync.WaitGroup
	for i, vp := range vms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := d.hv.Start(ctx, vp.spec)
			if err != nil {
				errs[i] = fmt.Errorf("VM %q: %w", vp.vm.Name, err)
				return
			}
			out[i] = &runningVM{vm: v}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		var started []*runningVM
		for _, rv := range out {
			if rv != nil {
				started = append(started, rv)
			}
		}
		return started, err
	}
	return out, nil
}

// watch marks a VM stopped when its QEMU exits without the lab asking
// (the guest powered itself off, or the process died).
func (d *Deployments) watch(config string, vm store.VM, rv *runningVM) {
	go func() {
		rv.vm.Wait(context.Background())
		d.vms.drop(vm.ID, rv)
		rv.consoles.close()
		rv.vm.Close()
		if rv.stopping.Load() {
			return
		}
		d.log.Warn("VM exited on its own", "config", config, "vm", vm.Name)
		err := d.lab.Update(context.Background(), func(tx store.Tx) error {
			c, err := tx.Configs().GetByID(vm.ConfigID)
			if err != nil || c.State != store.StateDeployed {
				return err
			}
			for i := range c.VMs {
				if c.VMs[i].ID == vm.ID && c.VMs[i].State == VMStateRunning {
					c.VMs[i].State = VMStateStopped
					return tx.Configs().UpdateVM(&c.VMs[i])
				}
			}
			return nil
		})
		if err != nil {
			d.log.Error("record a VM that exited on its own", "config", config, "vm", vm.Name, "err", err)
		}
	}()
}

// setUndeployed records a failed deploy: the configuration is undeployed
// again, with the reason, and its external addresses are returned. If it
// fails, the configuration stays deploying, which the next start of the
// daemon finishes.
func (d *Deployments) setUndeployed(name, reason string) error {
	err := d.lab.Update(context.Background(), func(tx store.Tx) error {
		c, err := tx.Configs().Get(name)
		if err != nil {
			return err
		}
		if err := d.external.release(tx, c); err != nil {
			return err
		}
		c.State, c.LastError, c.Fenced, c.FencePolicy, c.FenceAllow = store.StateUndeployed, reason, false, "", ""
		return tx.Configs().Update(c)
	})
	if err != nil {
		return fmt.Errorf("mark %q undeployed: %w", name, err)
	}
	return nil
}

// Undeploy powers every VM off (ACPI, then forced after the shutdown
// timeout), or with saveState suspends each to a state file that the next
// Deploy resumes; then removes the taps and DHCP reservations. If a save
// fails, that VM keeps running and the configuration is marked failed with
// the reason: undeploy again to retry, or discard.
func (d *Deployments) Undeploy(ctx context.Context, name string, saveState bool, commit func(store.Tx, *store.Config) error) error {
	if err := d.requireRuntime("undeploy", name); err != nil {
		return err
	}
	unlock := d.lab.Lock(name)
	defer unlock()
	var plan *deployPlan
	err := d.lab.Update(ctx, func(tx store.Tx) error {
		c, err := tx.Configs().Get(name)
		if err != nil {
			return err
		}
		if c.State == store.StateUndeployed {
			return errdefs.Conflict("configuration %q is not deployed", name)
		}
		if plan, err = d.planDeploy(tx, c, ""); err != nil {
			return err
		}
		c.State = store.StateUndeploying
		return tx.Configs().Update(c)
	})
	if err != nil {
		return fmt.Errorf("undeploy %q: %w", name, err)
	}
	saved, errs := d.stopVMs(ctx, plan, saveState)
	// failed marks the configuration failed with err, keeping the states
	// already saved: an undeploy again retries, a discard gives up.
	failed := func(err error) error {
		err = fmt.Errorf("undeploy %q: %w", name, err)
		reason := err.Error()
		uerr := d.lab.Update(context.WithoutCancel(ctx), func(tx store.Tx) error {
			c, err := tx.Configs().Get(name)
			if err != nil {
				return err
			}
			if err := markSaved(tx, c, plan, saved); err != nil {
				return err
			}
			c.State, c.LastError = store.StateFailed, reason
			return tx.Configs().Update(c)
		})
		if uerr != nil {
			err = fmt.Errorf("%w; and marking it failed: %v", err, uerr)
		}
		d.log.Error("undeploy failed", "config", name, "err", err)
		return err
	}
	if err := errors.Join(errs...); err != nil {
		return failed(err)
	}
	if err := d.Parts().stopMembers(ctx, plan, saveState); err != nil {
		return failed(err)
	}
	if err := d.lab.Fault(ctx, "undeploy", "release"); err != nil {
		return failed(err)
	}
	d.reportEgressAtUndeploy(ctx, plan)
	d.releasePlumbing(ctx, plan)
	err = d.lab.Update(context.WithoutCancel(ctx), func(tx store.Tx) error {
		c, err := tx.Configs().Get(name)
		if err != nil {
			return err
		}
		if err := d.external.release(tx, c); err != nil {
			return err
		}
		c.State, c.LastError, c.Fenced, c.FencePolicy, c.FenceAllow = store.StateUndeployed, "", false, "", ""
		if err := tx.Configs().Update(c); err != nil {
			return err
		}
		for i := range c.VMs {
			keep := d.keepsState(c.VMs[i], plan, saved)
			c.VMs[i].State = store.StateUndeployed
			if keep {
				c.VMs[i].State = VMStateSaved
			}
			if err := tx.Configs().UpdateVM(&c.VMs[i]); err != nil {
				return err
			}
		}
		// The lab ends the lease and reads its view here.
		if commit != nil {
			return commit(tx, c)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("undeploy %q: %w", name, err)
	}
	d.log.Info("configuration undeployed", "config", name, "saved_state", saveState)
	d.record(ctx, "undeploy", name, undeployDetail(saveState))
	return nil
}

// stopVMs powers off (or with saveState suspends) the running VMs of
// plan, in parallel. It returns, in plan order, which saved their state
// and each VM's error.
func (d *Deployments) stopVMs(ctx context.Context, plan *deployPlan, saveState bool) (saved []bool, errs []error) {
	saved = make([]bool, len(plan.vms))
	errs = make([]error, len(plan.vms))
	var wg sync.WaitGroup
	for i, vp := range plan.vms {
		rv := d.vms.get(vp.vm.ID)
		if rv == nil {
			continue
		}
		step := "stop"
		if saveState {
			step = "save"
		}
		// In plan order, before the parallel part, so a test that fails
		// the k-th step knows which VM it hits.
		if err := d.lab.Fault(ctx, "undeploy", step); err != nil {
			errs[i] = fmt.Errorf("VM %q: %w", vp.vm.Name, err)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rv.stopping.Store(true)
			if saveState {
				f := d.host.abs(StateFile(vp.vm.ID))
				if err := rv.vm.SaveState(ctx, f); err != nil {
					rv.stopping.Store(false)
					errs[i] = fmt.Errorf("VM %q: save state: %w", vp.vm.Name, err)
					return
				}
				saved[i] = true
			} else if err := rv.vm.Shutdown(ctx, d.shutdownTimeout); err != nil {
				errs[i] = fmt.Errorf("VM %q: power off: %w", vp.vm.Name, err)
				return
			}
			d.vms.drop(vp.vm.ID, rv)
			rv.consoles.close()
		}()
	}
	wg.Wait()
	return saved, errs
}

// markSaved records, inside tx, the VMs of c that saved their state
// (saved is stopVMs's for plan) as saved: an undeploy's on its host, and a
// member host's part of a spread one (StopPart).
func markSaved(tx store.Tx, c *store.Config, plan *deployPlan, saved []bool) error {
	for i := range c.VMs {
		if wasSaved(plan, saved, c.VMs[i].ID) {
			c.VMs[i].State = VMStateSaved
			if err := tx.Configs().UpdateVM(&c.VMs[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

// keepsState says whether vm is saved once an undeploy of plan ends: it
// saved its state now (saved is stopVMs's), or a state saved by an
// earlier, failed undeploy is still here. A VM of another host's part of
// a spread deployment is saved when that host recorded it so (StopPart):
// its state file is there, and goes home with its tops.
func (d *Deployments) keepsState(vm store.VM, plan *deployPlan, saved []bool) bool {
	if vm.Host != "" && vm.Host != d.hostName {
		return vm.State == VMStateSaved
	}
	return wasSaved(plan, saved, vm.ID) || vm.State == VMStateSaved && d.HasSavedState(vm.ID)
}

// wasSaved says whether VM id of plan saved its state (saved is
// stopVMs's, nil when none did); a VM of another host's part did not.
func wasSaved(p *deployPlan, saved []bool, id int64) bool {
	for i, vp := range p.vms {
		if vp.vm.ID == id {
			return i < len(saved) && saved[i]
		}
	}
	return false
}

func indexOfVM(p *deployPlan, id int64) int {
	for i, vp := range p.vms {
		if vp.vm.ID == id {
			return i
		}
	}
	return 0
}

// releasePlumbing removes the taps and DHCP reservations of a deployment,
// or its whole fence.
func (d *Deployments) releasePlumbing(ctx context.Context, plan *deployPlan) {
	ctx = context.WithoutCancel(ctx)
	// The seeds go too: the next deploy writes them again.
	if err := d.removeSeeds(plan); err != nil {
		d.log.Warn("remove seeds", "config", plan.config.Name, "err", err)
	}
	if plan.fence != nil {
		if err := d.fences.Teardown(ctx, *plan.fence); err != nil {
			d.log.Warn("tear down fence", "fence", plan.fence.ID, "err", err)
		}
		return
	}
	for _, vp := range plan.vms {
		for _, n := range vp.nics {
			if err := d.segs.DeleteTap(ctx, n.tap); err != nil {
				d.log.Warn("delete tap", "tap", n.tap, "err", err)
			}
			if n.ip.IsValid() {
				if err := d.segs.Unreserve(n.network, n.mac); err != nil {
					d.log.Warn("remove DHCP reservation", "network", n.network, "mac", n.mac, "err", err)
				}
			}
		}
	}
}

// VMAction stops (ACPI power-off), starts or resets one VM of a deployed
// configuration.
func (d *Deployments) VMAction(ctx context.Context, config, vmName, action string) error {
	if err := d.requireRuntime("vm "+action, config); err != nil {
		return err
	}
	switch action {
	case VMActionStop, VMActionStart, VMActionReset:
	default:
		return errdefs.Invalid("unknown VM action %q: use stop, start or reset", action)
	}
	accel := ""
	if action == VMActionStart {
		var err error
		if accel, err = d.lab.WaitAccel(ctx, "vm start", config); err != nil {
			return err
		}
	}
	unlock := d.lab.Lock(config)
	defer unlock()
	var plan *deployPlan
	var vp vmPlan
	err := d.store.View(ctx, func(tx store.Tx) error {
		c, err := tx.Configs().Get(config)
		if err != nil {
			return err
		}
		if c.State != store.StateDeployed {
			return errdefs.Conflict("configuration %q is %s; VM actions need it deployed", config, c.State)
		}
		vm, err := VMNamed(c, vmName)
		if err != nil {
			return err
		}
		if err := d.Parts().runsHere(c, vm); err != nil {
			return err
		}
		if plan, err = d.planDeploy(tx, c, accel); err != nil {
			return err
		}
		vp = plan.vms[indexOfVM(plan, vm.ID)]
		return nil
	})
	if err != nil {
		return err
	}
	rv := d.vms.get(vp.vm.ID)
	switch {
	case action == VMActionStart && rv == nil:
		vp.spec.IncomingStateFile = ""
		if err := writeSeed(ctx, vp); err != nil {
			return fmt.Errorf("start VM %q of %q: %w", vmName, config, err)
		}
		v, err := d.hv.Start(ctx, vp.spec)
		if err != nil {
			return fmt.Errorf("start VM %q of %q: %w", vmName, config, err)
		}
		rv = &runningVM{vm: v}
		d.vms.put(vp.vm.ID, rv)
		d.watch(config, vp.vm, rv)
		if err := d.setVMState(ctx, vp.vm.ID, VMStateRunning); err != nil {
			return err
		}
	case rv == nil:
		return errdefs.Conflict("VM %q of %q is not running", vmName, config)
	case action == VMActionStart:
		if err := rv.vm.Continue(ctx); err != nil {
			return fmt.Errorf("continue VM %q of %q: %w", vmName, config, err)
		}
	case action == VMActionStop:
		if err := rv.vm.PowerDown(ctx); err != nil {
			return fmt.Errorf("stop VM %q of %q: %w", vmName, config, err)
		}
	case action == VMActionReset:
		if err := rv.vm.Reset(ctx); err != nil {
			return fmt.Errorf("reset VM %q of %q: %w", vmName, config, err)
		}
	}
	return nil
}

func (d *Deployments) setVMState(ctx context.Context, id int64, state string) error {
	return d.lab.Update(ctx, func(tx store.Tx) error {
		cs, err := tx.Configs().List()
		if err != nil {
			return err
		}
		for _, c := range cs {
			for i := range c.VMs {
				if c.VMs[i].ID == id {
					c.VMs[i].State = state
					return tx.Configs().UpdateVM(&c.VMs[i])
				}
			}
		}
		return errdefs.NotFound("VM %d not found", id)
	})
}

// VMNamed returns the VM of c called name, or a not-found error.
func VMNamed(c *store.Config, name string) (*store.VM, error) {
	for i := range c.VMs {
		if c.VMs[i].Name == name {
			return &c.VMs[i], nil
		}
	}
	return nil, errdefs.NotFound("configuration %q has no VM %q", c.Name, name)
}

// CheckPolicy checks a deployment's fence options and returns the policy
// in its canonical spelling ("" for an unfenced deployment).
func CheckPolicy(name string, fenced bool, policy string) (string, error) {
	if !fenced && policy != "" {
		return "", errdefs.Invalid("deploy %q: a fence policy needs a fenced deployment", name)
	}
	if !fenced {
		return policy, nil
	}
	p, err := fence.ParsePolicy(policy)
	if err != nil {
		return "", fmt.Errorf("deploy %q: %w", name, err)
	}
	return string(p), nil
}

// LayerIndex returns every layer by ID: one query, then chains are walked
// in memory.
func LayerIndex(tx store.Tx) (map[int64]store.Layer, error) {
	ls, err := tx.Layers().List()
	if err != nil {
		return nil, err
	}
	idx := make(map[int64]store.Layer, len(ls))
	for _, l := range ls {
		idx[l.ID] = l
	}
	return idx, nil
}
