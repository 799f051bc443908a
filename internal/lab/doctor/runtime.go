package doctor

import (
	"fmt"

	"stagehand/internal/store"
)

// ProblemStateDiffers is a configuration of this host whose recorded state
// is not what the daemon found running: recorded deployed with a VM whose
// QEMU is gone (the restart's re-adoption found none and marked it
// failed, or it died since), or recorded undeployed with a VM running.
// Never repaired: the doctor reports, and restarting or stopping guests is
// the operator's decision (deploy, undeploy).
const ProblemStateDiffers = "state-differs"

// vmRunning is the VM state of a running guest (lab/deploy's).
const vmRunning = "running"

// checkRuntime compares the state recorded for each configuration whose
// home is this host with the QEMU processes this daemon runs.
func (d *run) checkRuntime() error {
	for i := range d.configs {
		c := &d.configs[i]
		if c.Kind == store.KindLibrary || d.dr.cfg.Lab.Busy(c.Name) {
			continue // a library entry never runs; an operation is changing it
		}
		if d.dr.cfg.Host != "" && c.Host != "" && c.Host != d.dr.cfg.Host {
			continue // another host's: its doctor looks
		}
		for _, vm := range c.VMs {
			pid := d.dr.cfg.Lab.PID(vm.ID)
			var detail string
			switch {
			case (c.State == store.StateDeployed || c.State == store.StateFailed) && vm.State == vmRunning && pid == 0:
				detail = fmt.Sprintf("recorded %s with VM %s running, but no QEMU process runs it", c.State, vm.Name)
			case c.State == store.StateFailed && vm.State == store.StateFailed:
				detail = fmt.Sprintf("recorded deployed, but VM %s was not running when this daemon looked", vm.Name)
				if c.LastError != "" {
					detail += ": " + c.LastError
				}
			case c.State == store.StateUndeployed && pid != 0:
				detail = fmt.Sprintf("recorded undeployed, but VM %s runs (QEMU pid %d)", vm.Name, pid)
			default:
				continue
			}
			d.add(Problem{Kind: ProblemStateDiffers, Subject: c.Name, Detail: detail + "; nothing was restarted or stopped: deploy or undeploy it"})
		}
	}
	return nil
}
