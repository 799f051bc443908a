package deploy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"stagehand/internal/store"
)

// Recover re-adopts, after a daemon restart, every VM of this host the
// store says is running: through its pidfile and QMP socket, without touching the
// guest. It starts the DHCP servers of the networks in use again. A VM
// whose QEMU is gone is marked failed and reported, not hidden. A deploy or
// undeploy that the restart interrupted is finished towards undeployed.
func (d *Deployments) Recover(ctx context.Context) error {
	d.removeResumedLeftovers()
	if d.hv == nil || d.segs == nil || d.fences == nil {
		return nil
	}
	var configs []store.Config
	if err := d.store.View(ctx, func(tx store.Tx) error {
		var err error
		configs, err = tx.Configs().List()
		return err
	}); err != nil {
		return err
	}
	var errs []error
	for _, c := range configs {
		if c.State == store.StateUndeployed {
			continue
		}
		if c.Host != "" && d.hostName != "" && c.Host != d.hostName && !d.Parts().hasPartHere(&c) {
			// Another host's: its QEMU runs there (or that host is down,
			// and its own daemon finds out when it returns). Marking it
			// lost from here would fail a configuration that runs fine.
			continue
		}
		if err := d.recoverConfig(ctx, c.Name); err != nil {
			errs = append(errs, fmt.Errorf("configuration %q: %w", c.Name, err))
		}
	}
	return errors.Join(errs...)
}

func (d *Deployments) recoverConfig(ctx context.Context, name string) error {
	unlock := d.lab.Lock(name)
	defer unlock()
	var plan *deployPlan
	if err := d.store.View(ctx, func(tx store.Tx) error {
		c, err := tx.Configs().Get(name)
		if err != nil {
			return err
		}
		plan, err = d.planDeploy(tx, c, "") // re-adoption starts no VM
		return err
	}); err != nil {
		return err
	}
	state := plan.config.State
	adopted := map[int64]*runningVM{}
	var lost []string
	for _, vp := range plan.vms {
		v, err := d.hv.Adopt(ctx, vp.spec.RunDir, vp.spec.ID)
		if err != nil {
			if vp.vm.State == VMStateRunning {
				lost = append(lost, fmt.Sprintf("VM %s: %v", vp.vm.Name, err))
			}
			continue
		}
		adopted[vp.vm.ID] = &runningVM{vm: v}
	}

	if state == store.StateDeploying || state == store.StateUndeploying {
		// Interrupted halfway: finish towards undeployed. VMs a
		// save-state undeploy already suspended keep their state file.
		// The home stops the other hosts' parts of a spread deployment
		// and records the outcome; a member only stops its own part.
		if err := d.Parts().stopMembers(ctx, plan, false); err != nil {
			d.log.Error("recover: stop the other hosts' parts of an interrupted operation", "config", name, "err", err)
		}
		for id, rv := range adopted {
			rv.stopping.Store(true)
			if err := rv.vm.Shutdown(ctx, d.shutdownTimeout); err != nil {
				d.log.Error("recover: power off a VM of an interrupted operation", "config", name, "vm_id", id, "err", err)
			}
			rv.vm.Close()
		}
		d.releasePlumbing(ctx, plan)
		if d.Parts().hasPartHere(plan.config) {
			return nil
		}
		reason := "deploy interrupted by a daemon restart; rolled back"
		if state == store.StateUndeploying {
			reason = ""
		}
		d.log.Warn("recover: finished an interrupted "+strings.TrimSuffix(state, "ing")+" towards undeployed", "config", name)
		return d.lab.Update(ctx, func(tx store.Tx) error {
			c, err := tx.Configs().Get(name)
			if err != nil {
				return err
			}
			if err := d.external.release(tx, c); err != nil {
				return err
			}
			c.State, c.LastError, c.Fenced, c.FencePolicy, c.FenceAllow = store.StateUndeployed, reason, false, "", ""
			if err := tx.Configs().Update(c); err != nil {
				return err
			}
			for i := range c.VMs {
				// A member's VM is saved when its host recorded it so
				// (keepsState); one of this host when its file is here.
				keep := d.keepsState(c.VMs[i], plan, nil) || d.HasSavedState(c.VMs[i].ID)
				c.VMs[i].State = store.StateUndeployed
				if keep {
					c.VMs[i].State = VMStateSaved
				}
				if err := tx.Configs().UpdateVM(&c.VMs[i]); err != nil {
					return err
				}
			}
			return nil
		})
	}

	// Deployed (or failed): keep what runs, serve DHCP again, report the lost.
	for _, seg := range plan.segments {
		if err := d.segs.EnsureSegment(ctx, seg.name, seg.gateway, seg.dns, seg.dynamic); err != nil {
			return err
		}
	}
	if plan.fence != nil {
		if _, err := d.fences.Adopt(ctx, *plan.fence); err != nil {
			lost = append(lost, fmt.Sprintf("fence %s: %v", plan.fence.ID, err))
		} else {
			d.log.Info("recover: re-adopted fence", "config", name, "fence", plan.fence.ID)
		}
	}
	for _, vp := range plan.vms {
		for _, n := range vp.nics {
			if n.ip.IsValid() && plan.fence == nil {
				if err := d.segs.Reserve(n.network, n.mac, n.ip); err != nil {
					return err
				}
			}
		}
		if rv := adopted[vp.vm.ID]; rv != nil {
			d.vms.put(vp.vm.ID, rv)
			d.watch(name, vp.vm, rv)
			d.log.Info("recover: re-adopted VM", "config", name, "vm", vp.vm.Name, "pid", rv.vm.PID())
		}
	}
	if len(lost) == 0 {
		return nil
	}
	reason := "lost while the daemon was down: " + strings.Join(lost, "; ")
	d.log.Error("recover: VMs are gone", "config", name, "detail", reason)
	return d.lab.Update(ctx, func(tx store.Tx) error {
		c, err := tx.Configs().Get(name)
		if err != nil {
			return err
		}
		for i := range c.VMs {
			if adopted[c.VMs[i].ID] == nil && c.VMs[i].State == VMStateRunning {
				c.VMs[i].State = store.StateFailed
				if err := tx.Configs().UpdateVM(&c.VMs[i]); err != nil {
					return err
				}
			}
		}
		c.State, c.LastError = store.StateFailed, reason
		return tx.Configs().Update(c)
	})
}

// removeResumedLeftovers removes the state files VMs had resumed from that
// a crash left before their background removal (discardResumed).
func (d *Deployments) removeResumedLeftovers() {
	left, _ := filepath.Glob(filepath.Join(d.host.abs(StateDir), "*"+ResumedMark+"*"))
	for _, f := range left {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			d.log.Error("remove resumed state file", "file", f, "err", err)
		}
	}
}
