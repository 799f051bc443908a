package lab

import (
	"context"
	"fmt"

	"stagehand/internal/errdefs"
	"stagehand/internal/jobs"
	"stagehand/internal/lab/deploy"
	"stagehand/internal/lab/journal"
	"stagehand/internal/store"
)

// DiskChain lists the layers of one VM disk, top first, with their
// allocated size on the host.
func (s Configs) DiskChain(ctx context.Context, config, vmName string, disk int) ([]LayerView, error) {
	var chain []store.Layer
	var snapNames map[int64]string
	tmplNames := map[int64]string{}
	var runs map[int64]*ShortcutView
	err := s.store.View(ctx, func(tx store.Tx) error {
		d, err := findDisk(tx, config, vmName, disk)
		if err != nil {
			return err
		}
		idx, err := loadLayers(tx)
		if err != nil {
			return err
		}
		if chain, err = idx.chain(d.TopLayerID); err != nil {
			return err
		}
		if snapNames, err = snapshotLayerNames(tx, config); err != nil {
			return err
		}
		runs = shortcutRuns(idx, chain, s.abs)
		for _, l := range chain {
			if l.TemplateID != 0 {
				if t, err := tx.Templates().GetByID(l.TemplateID); err == nil {
					tmplNames[l.TemplateID] = t.Name
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]LayerView, 0, len(chain))
	for _, l := range chain {
		v := LayerView{ID: l.ID, Path: s.abs(l.Path), Frozen: l.Frozen, VirtualSize: l.VirtualSize, Template: tmplNames[l.TemplateID], Snapshot: snapNames[l.ID], Shortcut: runs[l.ID]}
		info, err := s.disks.Info(ctx, v.Path)
		if err != nil {
			return nil, fmt.Errorf("disk chain of %s/%s disk %d: %w", config, vmName, disk, err)
		}
		v.ActualSize = info.ActualSize
		out = append(out, v)
	}
	return out, nil
}

func findDisk(tx store.Tx, config, vmName string, index int) (*store.Disk, error) {
	c, err := tx.Configs().Get(config)
	if err != nil {
		return nil, err
	}
	vm, err := deploy.VMNamed(c, vmName)
	if err != nil {
		return nil, err
	}
	for i := range vm.Disks {
		if vm.Disks[i].Index == index {
			return &vm.Disks[i], nil
		}
	}
	return nil, errdefs.NotFound("VM %q of configuration %q has no disk %d", vmName, config, index)
}

// StartConsolidate starts a job that rewrites one disk's chain into a fresh
// standalone base, which becomes the disk's writable top. The old layers
// are then released like any others: those other disks still build on are
// kept. The configuration stays locked until the job ends.
func (s Configs) StartConsolidate(ctx context.Context, config, vmName string, disk int) (jobs.Job, error) {
	unlock := s.locks.lock(config)
	var top store.Layer
	var diskID int64
	err := s.store.View(ctx, func(tx store.Tx) error {
		if _, err := loadUndeployed(tx, config, "consolidate its disks"); err != nil {
			return err
		}
		d, err := findDisk(tx, config, vmName, disk)
		if err != nil {
			return err
		}
		diskID = d.ID
		l, err := tx.Layers().Get(d.TopLayerID)
		if err != nil {
			return err
		}
		top = *l
		return nil
	})
	if err != nil {
		unlock()
		return jobs.Job{}, fmt.Errorf("consolidate %s/%s disk %d: %w", config, vmName, disk, err)
	}
	base := newLayerPath()
	op, err := s.journal.Begin(ctx, "consolidate", config, []string{base}, nil)
	if err != nil {
		unlock()
		return jobs.Job{}, err
	}
	subject := fmt.Sprintf("%s/%s/%d", config, vmName, disk)
	return s.jobs.StartFrom(ctx, "consolidate", subject, func(ctx context.Context, progress func(done, total int64)) error {
		defer unlock()
		fail := func(err error) error {
			return s.journal.Fail(op, fmt.Errorf("consolidate %s: %w", subject, err))
		}
		if err := s.journal.Step(ctx, op, "consolidate"); err != nil {
			return fail(err)
		}
		if err := s.disks.Consolidate(ctx, s.abs(top.Path), s.abs(base), progress); err != nil {
			return fail(err)
		}
		if err := s.journal.Step(ctx, op, "commit"); err != nil {
			return fail(err)
		}
		err := s.update(ctx, func(tx store.Tx) error {
			if _, err := loadUndeployed(tx, config, "consolidate its disks"); err != nil {
				return err
			}
			l := &store.Layer{Path: base, VirtualSize: top.VirtualSize}
			if err := tx.Layers().Create(l); err != nil {
				return err
			}
			if err := tx.Configs().SetDiskTop(diskID, l.ID); err != nil {
				return err
			}
			removed, err := releaseLayers(tx, []int64{top.ID})
			if err != nil {
				return err
			}
			return journal.Commit(tx, op, removed)
		})
		if err != nil {
			return fail(err)
		}
		s.log.Info("disk consolidated", "config", config, "vm", vmName, "disk", disk, "released", len(op.RemoveFiles))
		s.events.record(ctx, ObjectConfig, "consolidate", config, fmt.Sprintf("VM %s disk %d", vmName, disk))
		return s.journal.Finish(op)
	}), nil
}
