package labtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// SwitchBacking records "vm switch-backing disk=N vmN". The fake has no
// node graph; like QEMU it rewrites the header of a top (a writable
// layer: the VM's own) to name the shortcut, and leaves a frozen layer's
// file alone (QEMU cannot write it while it reads it).
func (v *VM) SwitchBacking(ctx context.Context, disk int, child, shortcut string) error {
	if err := v.call(fmt.Sprintf("switch-backing disk=%d", disk)); err != nil {
		return err
	}
	if err := v.running("switch backing"); err != nil {
		return err
	}
	st, err := os.Stat(child)
	if err != nil {
		return fmt.Errorf("switch backing of vm %q: %w", v.p.id, err)
	}
	if _, err := os.Stat(shortcut); err != nil {
		return fmt.Errorf("switch backing of vm %q: %w", v.p.id, err)
	}
	if st.Mode().Perm()&0o200 == 0 {
		return nil
	}
	name := shortcut
	if filepath.Dir(shortcut) == filepath.Dir(child) {
		name = filepath.Base(shortcut)
	}
	out, err := exec.CommandContext(ctx, "qemu-img", "rebase", "-u", "-f", "qcow2", "-F", "qcow2", "-b", name, child).CombinedOutput()
	if err != nil {
		return fmt.Errorf("switch backing of vm %q: qemu-img rebase: %v: %s", v.p.id, err, out)
	}
	return nil
}
