package hypervisor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// SnapshotDisks moves every disk of the VM onto a new writable top while
// the guest runs (or is paused): overlays[i] is an existing empty qcow2
// whose backing file is disk i's current top (disk.CreateDelta writes it
// beside the top, naming it relatively, as every delta does). One QMP
// transaction of blockdev-snapshot switches all the disks at one instant
// or none; the old tops are reopened read-only and stay in the chain.
//
// Each overlay is opened first by blockdev-add with both its nodes named
// (snapshotNodeNames), not by blockdev-snapshot-sync: that command names
// only the format node and lets QEMU generate the file node's name, and
// SwitchBacking cannot reopen a top whose file child it cannot name.
func (v *VM) SnapshotDisks(ctx context.Context, overlays []string) (err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("vm %q: snapshot %d disks: %w", v.id, len(overlays), err)
		}
	}()
	gen := time.Now().UnixNano() // unique in this process: names of the old tops stay taken
	var added []string
	defer func() {
		if err != nil {
			for _, node := range added {
				deleteNode(v, node)
			}
		}
	}()
	actions := make([]map[string]any, 0, len(overlays))
	for i, file := range overlays {
		if !filepath.IsAbs(file) {
			return fmt.Errorf("disk %d: overlay %q is not an absolute path", i, file)
		}
		dev, err := queryDisk(ctx, v, i)
		if err != nil {
			return fmt.Errorf("disk %d: %w", i, err)
		}
		node, fileNode := snapshotNodeNames(i, gen)
		// backing null: blockdev-snapshot attaches the old top as the
		// overlay's backing; the header already names it.
		if _, err := v.execute(ctx, "blockdev-add", map[string]any{
			"driver": "qcow2", "node-name": node, "discard": "unmap", "backing": nil,
			"file": map[string]any{"driver": "file", "filename": file, "node-name": fileNode},
		}); err != nil {
			return fmt.Errorf("disk %d: open overlay %q: %w", i, file, err)
		}
		added = append(added, node)
		actions = append(actions, map[string]any{
			"type": "blockdev-snapshot",
			"data": map[string]any{"node": dev.Inserted.NodeName, "overlay": node},
		})
	}
	if _, err := v.execute(ctx, "transaction", map[string]any{"actions": actions}); err != nil {
		return err
	}
	return nil
}

// WriteState writes the paused guest's whole state (memory, devices,
// clocks) to file and keeps the process: unlike SaveState it does not
// quit, so Continue resumes the guest where it was (QEMU allows cont after
// a completed migration and takes its disks back). The state matches the
// disks as they are at this instant, so it is only valid with layers
// frozen while the guest stays paused. On failure no file is left. The file
// is complete but not yet on stable storage: the caller continues the guest
// first and then calls SyncState before recording the state anywhere (an
// fsync of a state of hundreds of MiB took two thirds of a guest's pause).
func (v *VM) WriteState(ctx context.Context, file string) (err error) {
	if !filepath.IsAbs(file) {
		return fmt.Errorf("write state of vm %q: %q is not an absolute path", v.id, file)
	}
	began := time.Now()
	partial := file + ".partial"
	defer func() {
		if err != nil {
			os.Remove(partial)
			cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			v.execute(cctx, "migrate_cancel", nil) // nothing to cancel when it never started
			err = fmt.Errorf("write state of vm %q to %s: %w", v.id, file, err)
		}
	}()
	f, err := os.OpenFile(partial, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := v.execute(ctx, "migrate-set-parameters", map[string]any{"max-bandwidth": int64(1) << 40}); err != nil {
		return err
	}
	uri, err := v.migrationFile(ctx, "state-out", f)
	if err != nil {
		return err
	}
	if _, err := v.execute(ctx, "migrate", map[string]any{"uri": uri}); err != nil {
		return err
	}
	if err := waitMigration(ctx, v); err != nil {
		return err
	}
	if err := os.Rename(partial, file); err != nil {
		return err
	}
	v.log.Info("wrote state", "file", file, "elapsed", time.Since(began).Round(time.Millisecond))
	return nil
}

// SyncState puts a state WriteState wrote on stable storage: the file and
// its directory entry.
func SyncState(file string) error {
	if err := syncFile(file); err != nil {
		return fmt.Errorf("sync state %s: %w", file, err)
	}
	if err := syncFile(filepath.Dir(file)); err != nil {
		return fmt.Errorf("sync state %s: %w", file, err)
	}
	return nil
}
