package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"stagehand/internal/errdefs"
	"stagehand/internal/fence"
	"stagehand/internal/hypervisor"
	"stagehand/internal/ipam"
	"stagehand/internal/revert"
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
}

func (s *Service) vmID(id int64) string { return fmt.Sprintf("sh-%s-vm%d", s.hostKey, id) }
func (s *Service) vmRunDir(id int64) string {
	return filepath.Join(s.dataDir, runDir, fmt.Sprintf("vm-%d", id))
}
func stateFileRel(id int64) string { return filepath.Join(stateDir, fmt.Sprintf("vm-%d.state", id)) }
func (s *Service) tapName(nicID int64) string {
	return fence.TapName(fmt.Sprintf("%s/nic-%d", s.hostKey, nicID))
}

func (s *Service) requireRuntime(what, name string) error {
	if s.hv == nil || s.segs == nil || s.fences == nil {
		return errdefs.Unavailable("%s %q: this daemon runs without a hypervisor and network plumbing", what, name)
	}
	return nil
}

// planDeploy reads everything a deployment of c needs inside tx. accel is
// what its VMs start with; callers that start none (undeploy, re-adoption)
// pass "".
func (s *Service) planDeploy(tx store.Tx, c *store.Config, accel string) (*deployPlan, error) {
	idx, err := loadLayers(tx)
	if err != nil {
		return nil, err
	}
	p := &deployPlan{config: c}
	if c.Fenced {
		spec, err := s.fenceSpec(tx, c)
		if err != nil {
			return nil, err
		}
		p.fence = &spec
	}
	segs := map[int64]bool{}
	for _, vm := range c.VMs {
		t, err := tx.GetTemplateByID(vm.TemplateID)
		if err != nil {
			return nil, fmt.Errorf("VM %q: template: %w", vm.Name, err)
		}
		vp := vmPlan{vm: vm, spec: hypervisor.Spec{
			ID: s.vmID(vm.ID), CPUs: vm.CPUs, MemoryMiB: vm.MemoryMiB, Accel: accel,
			RunDir: s.vmRunDir(vm.ID), Cmdline: t.Cmdline,
		}}
		if c.Fenced {
			vp.spec.Netns = fence.NamespaceName(s.fenceID(c.ID))
		}
		if t.Kernel != "" {
			vp.spec.Kernel = s.abs(t.Kernel)
		}
		if t.Initrd != "" {
			vp.spec.Initrd = s.abs(t.Initrd)
		}
		disks := append([]store.Disk(nil), vm.Disks...)
		sort.Slice(disks, func(i, j int) bool { return disks[i].Index < disks[j].Index })
		for _, d := range disks {
			l, ok := idx[d.TopLayerID]
			if !ok {
				return nil, fmt.Errorf("VM %q disk %d: top layer %d missing from the store", vm.Name, d.Index, d.TopLayerID)
			}
			vp.spec.Disks = append(vp.spec.Disks, s.abs(l.Path))
		}
		for _, n := range vm.NICs {
			nw, err := tx.GetNetworkByID(n.NetworkID)
			if err != nil {
				return nil, err
			}
			np := nicPlan{network: nw.Name, mac: n.MAC, ip: n.IP, tap: s.tapName(n.ID)}
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
		if vm.State == VMStateSaved {
			if f := s.abs(stateFileRel(vm.ID)); fileExists(f) {
				vp.spec.IncomingStateFile = f
			}
		}
		p.vms = append(p.vms, vp)
	}
	return p, nil
}

// addressConflicts lists the addresses of c that a VM of another deployed,
// unfenced configuration uses on the same network.
func addressConflicts(tx store.Tx, c *store.Config) ([]string, error) {
	all, err := tx.ListConfigs()
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
				nw, err := tx.GetNetworkByID(n.NetworkID)
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
func (s *Service) Deploy(ctx context.Context, name string, opts DeployOptions) (*ConfigView, error) {
	if !opts.Fenced && opts.FencePolicy != "" {
		return nil, errdefs.Invalid("deploy %q: a fence policy needs a fenced deployment", name)
	}
	if opts.Fenced {
		p, err := fence.ParsePolicy(opts.FencePolicy)
		if err != nil {
			return nil, fmt.Errorf("deploy %q: %w", name, err)
		}
		opts.FencePolicy = string(p)
	}
	if err := checkLeaseLength("deployment", opts.DeployLease); err != nil {
		return nil, fmt.Errorf("deploy %q: %w", name, err)
	}
	if err := s.requireRuntime("deploy", name); err != nil {
		return nil, err
	}
	// Before the lock: a deploy that waits for the probe holds nothing.
	accel, err := s.waitAccel(ctx, "deploy", name)
	if err != nil {
		return nil, err
	}
	unlock := s.locks.lock(name)
	defer unlock()

	var plan *deployPlan
	err = s.update(ctx, func(tx store.Tx) error {
		c, err := tx.GetConfig(name)
		if err != nil {
			return err
		}
		if c.State != store.StateUndeployed {
			return errdefs.Conflict("configuration %q is %s; only an undeployed configuration can be deployed", name, c.State)
		}
		if err := checkKind(c, store.KindConfig, "deploy it (check it out into a configuration first)"); err != nil {
			return err
		}
		if opts.Fenced {
			// Inside its fence it keeps its addresses; outside it gets new
			// ones, so it conflicts with nobody.
			if err := s.allocateExternal(tx, c); err != nil {
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
		if err := tx.UpdateConfig(c); err != nil {
			return err
		}
		plan, err = s.planDeploy(tx, c, accel)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("deploy %q: %w", name, err)
	}

	// Each step changes the host; rev undoes the steps done, newest
	// first, when a later one fails. It logs an undo that fails, and the
	// deploy's error reports it.
	rev := revert.New(s.log.With("op", "deploy", "config", name))
	defer rev.Fail()
	fail := func(err error) (*ConfigView, error) {
		err = fmt.Errorf("deploy %q: %w", name, err)
		var incomplete []error
		if uerr := rev.Fail(); uerr != nil {
			incomplete = append(incomplete, uerr)
		}
		if uerr := s.setUndeployed(name, err.Error()); uerr != nil {
			incomplete = append(incomplete, uerr)
		}
		if uerr := errors.Join(incomplete...); uerr != nil {
			err = fmt.Errorf("%w; rollback incomplete: %v", err, uerr)
			s.log.Error("deploy failed; rollback incomplete, doctor or a restart finishes it", "config", name, "err", err)
		} else {
			s.log.Error("deploy failed and was rolled back", "config", name, "err", err)
		}
		s.recordFailure(ctx, ObjectConfig, "deploy", name, err)
		return nil, err
	}
	undoCtx := context.WithoutCancel(ctx)
	for _, seg := range plan.segments {
		// A segment is shared and stays (as its bridge does): no undo.
		if err := s.fault(ctx, "deploy", "segment"); err != nil {
			return fail(err)
		}
		if err := s.segs.EnsureSegment(ctx, seg.name, seg.gateway, seg.dns, seg.dynamic); err != nil {
			return fail(err)
		}
	}
	if plan.fence != nil {
		if err := s.fault(ctx, "deploy", "fence"); err != nil {
			return fail(err)
		}
		// A fence that fails halfway undoes itself (fence.Setup).
		spec := *plan.fence
		if _, err := s.fences.Setup(ctx, spec); err != nil {
			return fail(err)
		}
		rev.Add("fence "+spec.ID, func() error { return s.fences.Teardown(undoCtx, spec) })
	}
	for _, vp := range plan.vms {
		for _, n := range vp.nics {
			if plan.fence != nil {
				// The fence's own DHCP serves the reservations inside; the
				// tap goes with the fence's namespace at teardown.
				if err := s.fault(ctx, "deploy", "tap"); err != nil {
					return fail(err)
				}
				if err := s.fences.CreateTap(ctx, plan.fence.ID, n.tap, n.network); err != nil {
					return fail(fmt.Errorf("VM %q: %w", vp.vm.Name, err))
				}
				continue
			}
			// Unreserve and DeleteTap accept what is not there, so each
			// undo is added before its step: a step that fails halfway
			// is undone too.
			if n.ip.IsValid() {
				if err := s.fault(ctx, "deploy", "reserve"); err != nil {
					return fail(err)
				}
				rev.Add("DHCP reservation "+n.mac, func() error { return s.segs.Unreserve(n.network, n.mac) })
				if err := s.segs.Reserve(n.network, n.mac, n.ip); err != nil {
					return fail(fmt.Errorf("VM %q: DHCP reservation: %w", vp.vm.Name, err))
				}
			}
			if err := s.fault(ctx, "deploy", "tap"); err != nil {
				return fail(err)
			}
			rev.Add("tap "+n.tap, func() error { return s.segs.DeleteTap(undoCtx, n.tap) })
			if err := s.segs.CreateTap(ctx, n.tap, n.network); err != nil {
				return fail(fmt.Errorf("VM %q: %w", vp.vm.Name, err))
			}
		}
	}
	if err := s.fault(ctx, "deploy", "start"); err != nil {
		return fail(err)
	}
	started, err := s.startVMs(ctx, plan.vms)
	for _, rv := range started {
		rev.Add(fmt.Sprintf("VM process %d", rv.vm.PID()), func() error {
			rv.stopping.Store(true)
			err := rv.vm.Kill(undoCtx)
			rv.vm.Close()
			return err
		})
	}
	if err != nil {
		return fail(err)
	}
	if err := s.fault(ctx, "deploy", "commit"); err != nil {
		return fail(err)
	}
	var view *ConfigView
	err = s.update(ctx, func(tx store.Tx) error {
		c, err := tx.GetConfig(name)
		if err != nil {
			return err
		}
		c.State = store.StateDeployed
		if err := tx.UpdateConfig(c); err != nil {
			return err
		}
		if err := s.leases.deployed(tx, c.ID, opts.DeployLease); err != nil {
			return err
		}
		for i := range c.VMs {
			c.VMs[i].State = VMStateRunning
			if err := tx.UpdateVM(&c.VMs[i]); err != nil {
				return err
			}
		}
		view, err = s.configView(tx, c)
		return err
	})
	if err != nil {
		return fail(err)
	}
	rev.Success()
	for i, vp := range plan.vms {
		s.vms.put(vp.vm.ID, started[i])
		s.watch(name, vp.vm, started[i])
		if vp.spec.IncomingStateFile != "" {
			// Resumed: the state is in the running guest now. A file left
			// would be resumed again by the next deploy: say so.
			if err := removeFile(vp.spec.IncomingStateFile); err != nil {
				s.log.Error("remove resumed state file", "config", name, "vm", vp.vm.Name, "err", err)
			}
		}
	}
	s.log.Info("configuration deployed", "config", name, "vms", len(plan.vms), "accel", accel, "fenced", opts.Fenced)
	s.record(ctx, ObjectConfig, "deploy", name, deployDetail(opts))
	return s.withRuntime(view), nil
}

// startVMs starts every VM in parallel. It returns the handles in plan
// order; on error, the handles of those that did start (nil for others are
// left out) so the caller can stop them.
func (s *Service) startVMs(ctx context.Context, vms []vmPlan) ([]*runningVM, error) {
	out := make([]*runningVM, len(vms))
	errs := make([]error, len(vms))
	var wg sync.WaitGroup
	for i, vp := range vms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := s.hv.Start(ctx, vp.spec)
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
func (s *Service) watch(config string, vm store.VM, rv *runningVM) {
	go func() {
		rv.vm.Wait(context.Background())
		s.vms.drop(vm.ID, rv)
		rv.vm.Close()
		if rv.stopping.Load() {
			return
		}
		s.log.Warn("VM exited on its own", "config", config, "vm", vm.Name)
		err := s.update(context.Background(), func(tx store.Tx) error {
			c, err := tx.GetConfigByID(vm.ConfigID)
			if err != nil || c.State != store.StateDeployed {
				return err
			}
			for i := range c.VMs {
				if c.VMs[i].ID == vm.ID && c.VMs[i].State == VMStateRunning {
					c.VMs[i].State = VMStateStopped
					return tx.UpdateVM(&c.VMs[i])
				}
			}
			return nil
		})
		if err != nil {
			s.log.Error("record a VM that exited on its own", "config", config, "vm", vm.Name, "err", err)
		}
	}()
}

// setUndeployed records a failed deploy: the configuration is undeployed
// again, with the reason, and its external addresses are returned. If it
// fails, the configuration stays deploying, which the next start of the
// daemon finishes.
func (s *Service) setUndeployed(name, reason string) error {
	err := s.update(context.Background(), func(tx store.Tx) error {
		c, err := tx.GetConfig(name)
		if err != nil {
			return err
		}
		if err := s.releaseExternal(tx, c); err != nil {
			return err
		}
		c.State, c.LastError, c.Fenced, c.FencePolicy = store.StateUndeployed, reason, false, ""
		return tx.UpdateConfig(c)
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
func (s *Service) Undeploy(ctx context.Context, name string, saveState bool) (*ConfigView, error) {
	if err := s.requireRuntime("undeploy", name); err != nil {
		return nil, err
	}
	unlock := s.locks.lock(name)
	defer unlock()
	var plan *deployPlan
	err := s.update(ctx, func(tx store.Tx) error {
		c, err := tx.GetConfig(name)
		if err != nil {
			return err
		}
		if c.State == store.StateUndeployed {
			return errdefs.Conflict("configuration %q is not deployed", name)
		}
		if plan, err = s.planDeploy(tx, c, ""); err != nil {
			return err
		}
		c.State = store.StateUndeploying
		return tx.UpdateConfig(c)
	})
	if err != nil {
		return nil, fmt.Errorf("undeploy %q: %w", name, err)
	}
	saved := make([]bool, len(plan.vms))
	errs := make([]error, len(plan.vms))
	var wg sync.WaitGroup
	for i, vp := range plan.vms {
		rv := s.vms.get(vp.vm.ID)
		if rv == nil {
			continue
		}
		step := "stop"
		if saveState {
			step = "save"
		}
		// In plan order, before the parallel part, so a test that fails
		// the k-th step knows which VM it hits.
		if err := s.fault(ctx, "undeploy", step); err != nil {
			errs[i] = fmt.Errorf("VM %q: %w", vp.vm.Name, err)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rv.stopping.Store(true)
			if saveState {
				f := s.abs(stateFileRel(vp.vm.ID))
				if err := rv.vm.SaveState(ctx, f); err != nil {
					rv.stopping.Store(false)
					errs[i] = fmt.Errorf("VM %q: save state: %w", vp.vm.Name, err)
					return
				}
				saved[i] = true
			} else if err := rv.vm.Shutdown(ctx, s.shutdownTimeout); err != nil {
				errs[i] = fmt.Errorf("VM %q: power off: %w", vp.vm.Name, err)
				return
			}
			s.vms.drop(vp.vm.ID, rv)
		}()
	}
	wg.Wait()
	// failed marks the configuration failed with err, keeping the states
	// already saved: an undeploy again retries, a discard gives up.
	failed := func(err error) (*ConfigView, error) {
		err = fmt.Errorf("undeploy %q: %w", name, err)
		reason := err.Error()
		uerr := s.update(context.WithoutCancel(ctx), func(tx store.Tx) error {
			c, err := tx.GetConfig(name)
			if err != nil {
				return err
			}
			for i := range c.VMs {
				if saved[indexOfVM(plan, c.VMs[i].ID)] {
					c.VMs[i].State = VMStateSaved
					if err := tx.UpdateVM(&c.VMs[i]); err != nil {
						return err
					}
				}
			}
			c.State, c.LastError = store.StateFailed, reason
			return tx.UpdateConfig(c)
		})
		if uerr != nil {
			err = fmt.Errorf("%w; and marking it failed: %v", err, uerr)
		}
		s.log.Error("undeploy failed", "config", name, "err", err)
		return nil, err
	}
	if err := errors.Join(errs...); err != nil {
		return failed(err)
	}
	if err := s.fault(ctx, "undeploy", "release"); err != nil {
		return failed(err)
	}
	s.releasePlumbing(ctx, plan)
	var view *ConfigView
	err = s.update(context.WithoutCancel(ctx), func(tx store.Tx) error {
		c, err := tx.GetConfig(name)
		if err != nil {
			return err
		}
		if err := s.releaseExternal(tx, c); err != nil {
			return err
		}
		c.State, c.LastError, c.Fenced, c.FencePolicy = store.StateUndeployed, "", false, ""
		if err := tx.UpdateConfig(c); err != nil {
			return err
		}
		if err := s.leases.undeployed(tx, c.ID); err != nil {
			return err
		}
		for i := range c.VMs {
			// A state saved by an earlier, failed undeploy counts too.
			keep := saved[indexOfVM(plan, c.VMs[i].ID)] ||
				c.VMs[i].State == VMStateSaved && fileExists(s.abs(stateFileRel(c.VMs[i].ID)))
			c.VMs[i].State = store.StateUndeployed
			if keep {
				c.VMs[i].State = VMStateSaved
			}
			if err := tx.UpdateVM(&c.VMs[i]); err != nil {
				return err
			}
		}
		view, err = s.configView(tx, c)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("undeploy %q: %w", name, err)
	}
	s.log.Info("configuration undeployed", "config", name, "saved_state", saveState)
	s.record(ctx, ObjectConfig, "undeploy", name, undeployDetail(saveState))
	return s.withRuntime(view), nil
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
func (s *Service) releasePlumbing(ctx context.Context, plan *deployPlan) {
	ctx = context.WithoutCancel(ctx)
	if plan.fence != nil {
		if err := s.fences.Teardown(ctx, *plan.fence); err != nil {
			s.log.Warn("tear down fence", "fence", plan.fence.ID, "err", err)
		}
		return
	}
	for _, vp := range plan.vms {
		for _, n := range vp.nics {
			if err := s.segs.DeleteTap(ctx, n.tap); err != nil {
				s.log.Warn("delete tap", "tap", n.tap, "err", err)
			}
			if n.ip.IsValid() {
				if err := s.segs.Unreserve(n.network, n.mac); err != nil {
					s.log.Warn("remove DHCP reservation", "network", n.network, "mac", n.mac, "err", err)
				}
			}
		}
	}
}

// VMAction stops (ACPI power-off), starts or resets one VM of a deployed
// configuration.
func (s *Service) VMAction(ctx context.Context, config, vmName, action string) (*ConfigView, error) {
	if err := s.requireRuntime("vm "+action, config); err != nil {
		return nil, err
	}
	switch action {
	case VMActionStop, VMActionStart, VMActionReset:
	default:
		return nil, errdefs.Invalid("unknown VM action %q: use stop, start or reset", action)
	}
	accel := ""
	if action == VMActionStart {
		var err error
		if accel, err = s.waitAccel(ctx, "vm start", config); err != nil {
			return nil, err
		}
	}
	unlock := s.locks.lock(config)
	defer unlock()
	var plan *deployPlan
	var vp vmPlan
	err := s.store.View(ctx, func(tx store.Tx) error {
		c, err := tx.GetConfig(config)
		if err != nil {
			return err
		}
		if c.State != store.StateDeployed {
			return errdefs.Conflict("configuration %q is %s; VM actions need it deployed", config, c.State)
		}
		vm, err := findVM(c, vmName)
		if err != nil {
			return err
		}
		if plan, err = s.planDeploy(tx, c, accel); err != nil {
			return err
		}
		vp = plan.vms[indexOfVM(plan, vm.ID)]
		return nil
	})
	if err != nil {
		return nil, err
	}
	rv := s.vms.get(vp.vm.ID)
	switch {
	case action == VMActionStart && rv == nil:
		vp.spec.IncomingStateFile = ""
		v, err := s.hv.Start(ctx, vp.spec)
		if err != nil {
			return nil, fmt.Errorf("start VM %q of %q: %w", vmName, config, err)
		}
		rv = &runningVM{vm: v}
		s.vms.put(vp.vm.ID, rv)
		s.watch(config, vp.vm, rv)
		if err := s.setVMState(ctx, vp.vm.ID, VMStateRunning); err != nil {
			return nil, err
		}
	case rv == nil:
		return nil, errdefs.Conflict("VM %q of %q is not running", vmName, config)
	case action == VMActionStart:
		if err := rv.vm.Continue(ctx); err != nil {
			return nil, fmt.Errorf("continue VM %q of %q: %w", vmName, config, err)
		}
	case action == VMActionStop:
		if err := rv.vm.PowerDown(ctx); err != nil {
			return nil, fmt.Errorf("stop VM %q of %q: %w", vmName, config, err)
		}
	case action == VMActionReset:
		if err := rv.vm.Reset(ctx); err != nil {
			return nil, fmt.Errorf("reset VM %q of %q: %w", vmName, config, err)
		}
	}
	return s.GetConfig(ctx, config)
}

func (s *Service) setVMState(ctx context.Context, id int64, state string) error {
	return s.update(ctx, func(tx store.Tx) error {
		cs, err := tx.ListConfigs()
		if err != nil {
			return err
		}
		for _, c := range cs {
			for i := range c.VMs {
				if c.VMs[i].ID == id {
					c.VMs[i].State = state
					return tx.UpdateVM(&c.VMs[i])
				}
			}
		}
		return errdefs.NotFound("VM %d not found", id)
	})
}

// VMConsole returns the unix socket of a running VM's serial console.
func (s *Service) VMConsole(ctx context.Context, config, vmName string) (string, error) {
	id, err := s.vmStoreID(ctx, config, vmName)
	if err != nil {
		return "", err
	}
	rv := s.vms.get(id)
	if rv == nil {
		return "", errdefs.Conflict("VM %q of %q is not running", vmName, config)
	}
	return rv.vm.ConsoleSocketPath(), nil
}

// VMLog returns the path of a VM's serial console log (kept across runs).
func (s *Service) VMLog(ctx context.Context, config, vmName string) (string, error) {
	id, err := s.vmStoreID(ctx, config, vmName)
	if err != nil {
		return "", err
	}
	p := hypervisor.Spec{RunDir: s.vmRunDir(id)}.SerialLogPath()
	if !fileExists(p) {
		return "", errdefs.NotFound("VM %q of %q has no console log yet (never deployed)", vmName, config)
	}
	return p, nil
}

func (s *Service) vmStoreID(ctx context.Context, config, vmName string) (int64, error) {
	var id int64
	err := s.store.View(ctx, func(tx store.Tx) error {
		c, err := tx.GetConfig(config)
		if err != nil {
			return err
		}
		vm, err := findVM(c, vmName)
		if err != nil {
			return err
		}
		id = vm.ID
		return nil
	})
	return id, err
}

// withRuntime adds what only the running daemon knows (PIDs, saved
// states) to a view.
func (s *Service) withRuntime(v *ConfigView) *ConfigView {
	if v == nil {
		return nil
	}
	for i := range v.VMs {
		vm := &v.VMs[i]
		if rv := s.vms.get(vm.id); rv != nil {
			vm.PID = rv.vm.PID()
		}
		vm.HasSavedState = fileExists(s.abs(stateFileRel(vm.id)))
	}
	return v
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
