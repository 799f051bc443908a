package lab

import (
	"context"
	"fmt"
	"io"

	"stagehand/internal/errdefs"
	"stagehand/internal/lab/deploy"
	"stagehand/internal/seed"
	"stagehand/internal/store"
)

// Guest identity (issue 15): every VM has a cloud-init instance-id, made
// with the VM and new for every copy of it (linked and full clone, library
// capture and checkout, clone from a snapshot, archive restore), never
// copied; and a hostname, VM-CONFIG unless set. The deployment puts both in
// the VM's NoCloud seed (lab/deploy/seed.go).

// checkHostname checks a hostname given for a VM ("" is the default).
func checkHostname(config, vm, name string) error {
	if name == "" {
		return nil
	}
	if err := seed.CheckHostname(name); err != nil {
		return fmt.Errorf("configuration %q VM %q: %w", config, vm, err)
	}
	return nil
}

// SetHostname sets a VM's hostname; "" goes back to the default,
// VM-CONFIG. The guest sees it at the configuration's next deploy, which
// writes a new seed.
func (s Configs) SetHostname(ctx context.Context, config, vmName, hostname string) (*ConfigView, error) {
	if err := checkHostname(config, vmName, hostname); err != nil {
		return nil, fmt.Errorf("set hostname: %w", err)
	}
	unlock := s.locks.lock(config)
	defer unlock()
	err := s.update(ctx, func(tx store.Tx) error {
		c, err := tx.Configs().Get(config)
		if err != nil {
			return err
		}
		if err := checkKind(c, store.KindConfig, "set a hostname"); err != nil {
			return err
		}
		vm, err := deploy.VMNamed(c, vmName)
		if err != nil {
			return err
		}
		vm.Hostname = hostname
		return tx.Configs().UpdateVM(vm)
	})
	if err != nil {
		return nil, fmt.Errorf("set hostname of %s/%s: %w", config, vmName, err)
	}
	s.events.record(ctx, ObjectConfig, "set-hostname", config, fmt.Sprintf("VM %s: %s", vmName, seed.Hostname(hostname, vmName, config)))
	return s.Get(ctx, config)
}

// readUserData returns a template's user-data, given inline or uploaded,
// checked as seed.CheckUserData does.
func readUserData(spec TemplateSpec) ([]byte, error) {
	b := spec.UserData
	switch u := spec.UserDataUpload; {
	case u != nil && len(b) > 0:
		return nil, errdefs.Invalid("give the user-data inline or as an upload, not both")
	case u != nil && u.Size > seed.MaxUserData:
		return nil, errdefs.Invalid("user-data %s is %d bytes, more than %d", u.Name, u.Size, seed.MaxUserData)
	case u != nil:
		var err error
		if b, err = io.ReadAll(io.NewSectionReader(u.file, 0, u.Size)); err != nil {
			return nil, fmt.Errorf("read user-data %s: %w", u.Name, err)
		}
	}
	if spec.NoSeed && len(b) > 0 {
		return nil, errdefs.Invalid("user-data goes into the seed, and the template has none (no-seed)")
	}
	if err := seed.CheckUserData(b); err != nil {
		return nil, err
	}
	if len(b) == 0 {
		return nil, nil
	}
	return b, nil
}
