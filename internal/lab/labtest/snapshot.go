package labtest

import (
	"context"
	"fmt"
	"os"
)

// The live snapshot seam (the lab asks a running VM for it; *hypervisor.VM
// is the real one).

// Pause records "vm pause vmN".
func (v *VM) Pause(ctx context.Context) error {
	if err := v.call("pause"); err != nil {
		return err
	}
	return v.running("pause")
}

// SnapshotDisks records "vm snapshot-disks vmN n=K". Like QEMU in
// "existing" mode it requires every overlay to exist; it switches
// nothing (the fake has no open files).
func (v *VM) SnapshotDisks(ctx context.Context, overlays []string) error {
	if err := v.call(fmt.Sprintf("snapshot-disks n=%d", len(overlays))); err != nil {
		return err
	}
	if err := v.running("snapshot disks"); err != nil {
		return err
	}
	for _, f := range overlays {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("snapshot vm %q: %w", v.p.id, err)
		}
	}
	return nil
}

// WriteState records "vm write-state vmN" and writes a small state file;
// the process keeps running.
func (v *VM) WriteState(ctx context.Context, file string) error {
	if err := v.call("write-state"); err != nil {
		return err
	}
	if err := v.running("write state"); err != nil {
		return err
	}
	if err := os.WriteFile(file, []byte("labtest state of "+v.p.id+"\n"), 0o600); err != nil {
		return fmt.Errorf("write state of vm %q: %w", v.p.id, err)
	}
	return nil
}
