package deploy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"

	"stagehand/internal/seed"
	"stagehand/internal/store"
)

// SeedFile is the name of a VM's cloud-init NoCloud seed in its run
// directory. Each deploy writes it again from the store (instance-id,
// hostname, addresses, the template's user-data), so a changed hostname or
// address shows at the next boot; undeploy removes it.
const SeedFile = "seed.iso"

// planSeed adds vm's seed to its plan, unless its template opted out: the
// spec to write and the image as a read-only drive after its disks.
func planSeed(tx store.Tx, c *store.Config, vm store.VM, t *store.Template, vp *vmPlan) error {
	if t.NoSeed {
		return nil
	}
	s := seed.Spec{InstanceID: vm.InstanceID, Hostname: seed.Hostname(vm.Hostname, vm.Name, c.Name), UserData: t.UserData}
	for _, n := range vm.NICs {
		sn := seed.NIC{MAC: n.MAC, Mode: seed.ModeDHCP}
		// Pool and DHCP NICs ask DHCP, which answers a pool NIC with
		// its reservation; a manual NIC sets its address itself.
		if n.IPMode == store.IPModeManual && n.IP.IsValid() {
			nw, err := tx.Networks().GetByID(n.NetworkID)
			if err != nil {
				return fmt.Errorf("VM %q seed: %w", vm.Name, err)
			}
			sn.Mode, sn.Addr, sn.DNS = seed.ModeStatic, netip.PrefixFrom(n.IP, nw.Subnet.Bits()), nw.DNS
			if nw.Gateway != n.IP {
				sn.Gateway = nw.Gateway
			}
		}
		s.NICs = append(s.NICs, sn)
	}
	// Checked when written (writeSeed), not here: undeploy and recovery
	// plan too, and must never be stopped by a seed.
	vp.seed = &s
	vp.spec.ReadOnlyDrives = append(vp.spec.ReadOnlyDrives, filepath.Join(vp.spec.RunDir, SeedFile))
	return nil
}

// writeSeed writes vp's seed (mode 0600) into its run directory.
func writeSeed(ctx context.Context, vp vmPlan) error {
	if vp.seed == nil {
		return nil
	}
	if err := os.MkdirAll(vp.spec.RunDir, 0o700); err != nil {
		return fmt.Errorf("VM %q seed: %w", vp.vm.Name, err)
	}
	if err := seed.Build(ctx, filepath.Join(vp.spec.RunDir, SeedFile), *vp.seed); err != nil {
		return fmt.Errorf("VM %q: %w", vp.vm.Name, err)
	}
	return nil
}

// removeSeeds removes the seeds of a deployment's VMs; a missing one is
// fine (a template that opted out, a deploy that failed before it).
func (d *Deployments) removeSeeds(plan *deployPlan) error {
	var errs []error
	for _, vp := range plan.vms {
		err := os.Remove(filepath.Join(vp.spec.RunDir, SeedFile))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("VM %q: remove seed: %w", vp.vm.Name, err))
		}
	}
	return errors.Join(errs...)
}
