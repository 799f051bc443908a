package archive

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"stagehand/internal/disk"
	"stagehand/internal/errdefs"
	"stagehand/internal/hostlink"
	"stagehand/internal/jobs"
	"stagehand/internal/lab/access"
	"stagehand/internal/lab/bundle"
	"stagehand/internal/store"
)

// StartRestore starts a job that makes configuration config from an
// archive by full clone: each archived disk becomes a new standalone
// writable base (decompressed) in the layers directory. VMs keep their
// names, hardware, networks and IP modes, get new MACs, and take their
// addresses again as the lab says (RestoreRecords). An archive with
// snapshots (manifest version 2) gives each disk's files back as layers of
// the same shape: the base and each snapshot's layer frozen, each a delta
// on the new layer of its backing file, the current top a writable delta;
// the snapshot records name them, with copies of their states. A VM
// archived saved is restored saved, with a copy of its state put where its
// next deploy resumes it once the restore is committed (PlaceSavedStates).
// A template the archive names that
// no longer exists is made again from the archive (hardware and boot
// files, no base disks). The archive is only read. A cancelled or failed
// job leaves nothing behind. The configuration gets its storage lease as
// storageLease says and goes where place says (RestoreRecords checks its
// quotas there), and the archive is marked used.
func (x *Archives) StartRestore(ctx context.Context, archive, config string, storageLease *time.Duration, place access.Placement) (jobs.Job, error) {
	if err := x.lab.CheckName("configuration", config); err != nil {
		return jobs.Job{}, err
	}
	if err := x.lab.CheckLeaseLength("storage", storageLease); err != nil {
		return jobs.Job{}, fmt.Errorf("restore archive %q as %q: %w", archive, config, err)
	}
	unlock := x.lab.Lock(archive, config)
	var m *bundle.Manifest
	var dir string
	var archiveID int64
	err := x.store.View(ctx, func(tx store.Tx) error {
		a, err := tx.Archives().Get(archive)
		if err != nil {
			return err
		}
		archiveID = a.ID
		if _, err := tx.Configs().Get(config); err == nil {
			return errdefs.Conflict("configuration %q already exists", config)
		} else if !errors.Is(err, errdefs.ErrNotFound) {
			return err
		}
		if m, err = bundle.Parse(a.Manifest); err != nil {
			return err
		}
		dir = x.DirOf(a)
		return CheckNetworksExist(tx, m)
	})
	if err != nil {
		unlock()
		return jobs.Job{}, fmt.Errorf("restore archive %q as %q: %w", archive, config, err)
	}
	// One new layer per archived disk file, a copy of each snapshot's
	// and each saved VM's state, and a copy of the boot files of every
	// template that may have to be made again (decided at commit).
	var created []string
	files := RestoreFiles{Layers: map[string]string{}, Boot: map[string]string{}, States: map[string]string{}, Saved: map[string]string{}, Hashes: map[string]LayerHash{}}
	for i, vm := range m.VMs {
		for j := range vm.Disks {
			for _, f := range m.DiskFiles(i, j) {
				files.Layers[f.Path] = x.lab.NewLayerPath()
				created = append(created, files.Layers[f.Path])
			}
		}
	}
	for _, sn := range m.Snapshots {
		for _, st := range sn.States {
			files.States[st.File.Path] = x.lab.NewStatePath()
			created = append(created, files.States[st.File.Path])
		}
	}
	for _, vm := range m.VMs {
		if vm.State != nil {
			files.Saved[vm.State.Path] = x.lab.NewStatePath()
			created = append(created, files.Saved[vm.State.Path])
		}
	}
	for _, t := range m.Templates {
		for _, f := range []*bundle.File{t.Kernel, t.Initrd} {
			if f != nil {
				files.Boot[f.Path] = x.lab.NewBootPath(filepath.Base(f.Path))
				created = append(created, files.Boot[f.Path], disk.TempPath(files.Boot[f.Path]))
			}
		}
	}
	op, err := x.lab.BeginOp(ctx, "restore", config, created)
	if err != nil {
		unlock()
		return jobs.Job{}, err
	}
	return x.jobs.StartFrom(ctx, "restore", config, func(ctx context.Context, progress func(done, total int64)) error {
		defer unlock()
		fail := func(err error) error {
			return x.lab.FailOp(op, fmt.Errorf("restore archive %q as %q: %w", archive, config, err))
		}
		var total, done int64
		for i, vm := range m.VMs {
			for j, d := range vm.Disks {
				total += d.VirtualSize * int64(len(m.DiskFiles(i, j)))
			}
		}
		progress(0, total)
		for i, vm := range m.VMs {
			for j, d := range vm.Disks {
				for _, f := range m.DiskFiles(i, j) {
					if err := x.restoreDiskFile(ctx, op, dir, f, f != &m.VMs[i].Disks[j].File, &files, func(n, _ int64) { progress(done+n, total) }); err != nil {
						return fail(fmt.Errorf("VM %q disk %d: %w", vm.Name, d.Index, err))
					}
					done += d.VirtualSize
				}
			}
		}
		if err := x.restoreStates(ctx, op, dir, m, files); err != nil {
			return fail(err)
		}
		for src, dst := range files.Boot {
			if err := x.lab.Step(ctx, op, "copy-boot-file"); err != nil {
				return fail(err)
			}
			if err := x.lab.CopyBootFile(ctx, filepath.Join(dir, src), x.abs(dst)); err != nil {
				return fail(err)
			}
		}
		if err := x.lab.Step(ctx, op, "commit"); err != nil {
			return fail(err)
		}
		err := x.lab.Update(ctx, func(tx store.Tx) error {
			unused, err := x.lab.RestoreRecords(tx, m, config, archiveID, files, storageLease, place)
			if err != nil {
				return err
			}
			return x.lab.Commit(tx, op, unused)
		})
		if err != nil {
			return fail(err)
		}
		x.lab.PlaceSavedStates(ctx, config, savedByVM(m, files))
		x.lab.FinishOp(op)
		x.log.Info("archive restored", "archive", archive, "config", config, "snapshots", len(m.Snapshots), "saved_vms", m.SavedVMs())
		x.lab.RecordRestore(ctx, config, archive)
		return nil
	}), nil
}

// RestoreFiles names the files a restore writes, by the archive file each
// comes from (manifest paths): a layer per disk file, a state per snapshot
// state, a copy per VM's saved state (Saved, under a temporary name until
// PlaceSavedStates), a copy per boot file (paths relative to the data
// dir); and the content hash of each frozen layer it wrote (Hashes), which
// the records keep as a clone's or a snapshot's.
type RestoreFiles struct {
	Layers, States, Saved, Boot map[string]string
	Hashes                      map[string]LayerHash
}

// restoreStates copies, from the archive directory dir, each snapshot's
// states and each saved VM's state to the new files files names, one
// journalled step each.
func (x *Archives) restoreStates(ctx context.Context, op *store.Op, dir string, m *bundle.Manifest, files RestoreFiles) error {
	copyState := func(step string, f *bundle.File, dst, what string) error {
		if err := x.lab.Step(ctx, op, step); err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(x.abs(dst)), 0o700); err != nil {
			return err
		}
		if err := copyFile(ctx, filepath.Join(dir, f.Path), x.abs(dst), 0o400); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	}
	for _, sn := range m.Snapshots {
		for _, st := range sn.States {
			if err := copyState("copy-state", &st.File, files.States[st.File.Path], fmt.Sprintf("snapshot %q: state of VM %q", sn.Name, st.VM)); err != nil {
				return err
			}
		}
	}
	for _, vm := range m.VMs {
		if vm.State != nil {
			if err := copyState("copy-saved-state", vm.State, files.Saved[vm.State.Path], fmt.Sprintf("VM %q: saved state", vm.Name)); err != nil {
				return err
			}
		}
	}
	return nil
}

// savedByVM names the copy of each saved VM's state a restore made, by
// VM name.
func savedByVM(m *bundle.Manifest, files RestoreFiles) map[string]string {
	out := map[string]string{}
	for _, vm := range m.VMs {
		if vm.State != nil {
			out[vm.Name] = files.Saved[vm.State.Path]
		}
	}
	return out
}

// LayerHash is a restored frozen layer's content hash (hex sha256) and
// size in bytes.
type LayerHash struct {
	SHA256 string
	Size   int64
}

// restoreDiskFile writes the new layer of archive file f (in the archive
// directory dir): a standalone one decompressed, a delta expanded onto the
// new layer of its backing file. A frozen one (a base or a snapshot's
// layer: anything but a disk's current top) is made read-only and hashed
// (files.Hashes).
func (x *Archives) restoreDiskFile(ctx context.Context, op *store.Op, dir string, f *bundle.File, frozen bool, files *RestoreFiles, progress func(done, total int64)) error {
	layers := files.Layers
	src, dst := filepath.Join(dir, f.Path), x.abs(layers[f.Path])
	if f.Backing == "" {
		if err := x.lab.Step(ctx, op, "convert"); err != nil {
			return err
		}
		if err := x.disks.Consolidate(ctx, src, dst, progress); err != nil {
			return err
		}
	} else {
		if err := x.lab.Step(ctx, op, "delta"); err != nil {
			return err
		}
		if err := x.disks.ExpandDelta(ctx, src, x.abs(layers[f.Backing]), dst, progress); err != nil {
			return err
		}
	}
	if !frozen {
		return nil
	}
	if err := x.disks.SetReadOnly(dst, true); err != nil {
		return err
	}
	sum, size, err := hostlink.HashFile(ctx, dst)
	if err != nil {
		return err
	}
	files.Hashes[f.Path] = LayerHash{SHA256: sum, Size: size}
	return nil
}
