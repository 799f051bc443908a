package archive

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"stagehand/internal/disk"
	"stagehand/internal/errdefs"
	"stagehand/internal/jobs"
	"stagehand/internal/lab/access"
	"stagehand/internal/lab/bundle"
	"stagehand/internal/store"
)

// StartRestore starts a job that makes configuration config from an
// archive by full clone: each archived disk becomes a new standalone
// writable base (decompressed) in the layers directory. VMs keep their
// names, hardware, networks and IP modes, get new MACs, and take their
// addresses again as the lab says (RestoreRecords). A template the archive names that
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
	// One new layer per disk, and a copy of the boot files of every
	// template that may have to be made again (decided at commit).
	var created []string
	layers := map[string]string{} // manifest file path -> new layer path
	bootCopies := map[string]string{}
	for _, vm := range m.VMs {
		for _, d := range vm.Disks {
			layers[d.File.Path] = x.lab.NewLayerPath()
			created = append(created, layers[d.File.Path])
		}
	}
	for _, t := range m.Templates {
		for _, f := range []*bundle.File{t.Kernel, t.Initrd} {
			if f != nil {
				bootCopies[f.Path] = x.lab.NewBootPath(filepath.Base(f.Path))
				created = append(created, bootCopies[f.Path], disk.TempPath(bootCopies[f.Path]))
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
		for _, vm := range m.VMs {
			for _, d := range vm.Disks {
				total += d.VirtualSize
			}
		}
		progress(0, total)
		for _, vm := range m.VMs {
			for _, d := range vm.Disks {
				if err := x.lab.Step(ctx, op, "convert"); err != nil {
					return fail(err)
				}
				err := x.disks.Consolidate(ctx, filepath.Join(dir, d.File.Path), x.abs(layers[d.File.Path]), func(n, _ int64) { progress(done+n, total) })
				if err != nil {
					return fail(fmt.Errorf("VM %q disk %d: %w", vm.Name, d.Index, err))
				}
				done += d.VirtualSize
			}
		}
		for src, dst := range bootCopies {
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
			unused, err := x.lab.RestoreRecords(tx, m, config, archiveID, layers, bootCopies, storageLease, place)
			if err != nil {
				return err
			}
			return x.lab.Commit(tx, op, unused)
		})
		if err != nil {
			return fail(err)
		}
		x.lab.FinishOp(op)
		x.log.Info("archive restored", "archive", archive, "config", config)
		x.lab.RecordRestore(ctx, config, archive)
		return nil
	}), nil
}
