package lab

import (
	"context"
	"errors"
	"fmt"
	"time"

	"stagehand/internal/auth"
	"stagehand/internal/errdefs"
	"stagehand/internal/jobs"
	"stagehand/internal/lab/access"
	"stagehand/internal/lab/journal"
	"stagehand/internal/seed"
	"stagehand/internal/store"
)

// clonePlan is what a clone does to one disk of one source VM.
type clonePlan struct {
	vm, disk int // indexes into the source's VMs and the VM's disks
	top      store.Layer
	// Linked clone.
	shortcut    bool   // top is empty: the clone builds on top's parent
	sourceDelta string // new top of the source (not with shortcut)
	cloneDelta  string // new top of the clone
	// fromSnapshot: top is a snapshot's frozen layer, the clone's
	// delta builds on it and the source is not touched.
	fromSnapshot bool
	// sha256 and size of top once frozen (not with shortcut): peers pull
	// it by that hash.
	sha256 string
	size   int64
	// Full clone.
	base string // new standalone base of the clone
}

// loadCloneSource checks that src can be cloned into dst and returns src.
func (s *core) loadCloneSource(ctx context.Context, src, dst string) (*store.Config, layerIndex, error) {
	if err := CheckName("configuration", dst); err != nil {
		return nil, nil, err
	}
	var c *store.Config
	var idx layerIndex
	err := s.store.View(ctx, func(tx store.Tx) error {
		var err error
		if c, err = tx.Configs().Get(src); err != nil {
			return err
		}
		if c.State != store.StateUndeployed {
			return errdefs.Conflict("configuration %q is %s: only an undeployed configuration can be cloned (its disks must be quiescent); undeploy it first", src, c.State)
		}
		if err := needNoConfig(tx, dst); err != nil {
			return err
		}
		idx, err = loadLayers(tx)
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("clone %q to %q: %w", src, dst, err)
	}
	return c, idx, nil
}

// LinkedClone makes dst from src by linked clone. For each disk with
// writable top T: T is frozen, and the source and the clone each get a new
// empty delta on T. If T holds no data and its parent is frozen, T is left
// as it is and the clone builds on the parent instead (the empty-delta
// shortcut), so repeated clones do not deepen chains. No guest data is read
// or copied. The clone keeps the source's networks, IP modes and addresses
// (joining their families) and gets new MACs, and its storage lease as
// opts says.
//
// With opts.WithState the clone shares src's saved memory state instead
// (cloneWithState): it keeps src's MACs and addresses and resumes, fenced.
func (s Configs) LinkedClone(ctx context.Context, src, dst string, opts CreateOptions) (*ConfigView, error) {
	clone := s.linkedClone
	if opts.WithState {
		clone = instantClones{s.core}.cloneWithState
	}
	v, err := clone(ctx, src, dst, store.KindConfig, opts, false)
	if err == nil {
		s.events.record(ctx, ObjectConfig, "clone", dst, "linked clone of "+src)
	}
	return v, err
}

// linkedClone makes dst of kind (store.KindConfig or KindLibrary) from src
// by linked clone, with its storage lease as opts says; useSource marks
// src used too (a checkout uses its library entry).
func (s *core) linkedClone(ctx context.Context, src, dst, kind string, opts CreateOptions, useSource bool) (*ConfigView, error) {
	if err := checkLeaseLength("storage", opts.StorageLease); err != nil {
		return nil, fmt.Errorf("clone %q to %q: %w", src, dst, err)
	}
	unlock := s.locks.lock(src, dst)
	defer unlock()
	c, idx, err := s.loadCloneSource(ctx, src, dst)
	if err != nil {
		return nil, err
	}
	var states, links map[int]string // VM index → src's state file, its link for the clone
	if opts.WithState {
		if states, err = (instantClones{s}).savedStates(c); err != nil {
			return nil, fmt.Errorf("clone %q to %q: %w", src, dst, err)
		}
		links = stateLinks(states)
	}
	place, err := s.placeClone(ctx, kind, opts, c)
	if err != nil {
		return nil, fmt.Errorf("clone %q to %q: %w", src, dst, err)
	}
	var plans []clonePlan
	var created, frozen []string
	for vi, vm := range c.VMs {
		for di, d := range vm.Disks {
			top := idx[d.TopLayerID]
			depth, err := idx.depth(top.ID)
			if err != nil {
				return nil, err
			}
			p := clonePlan{vm: vi, disk: di, top: top, cloneDelta: newLayerPath()}
			if top.ParentID != 0 && idx[top.ParentID].Frozen {
				hasData, err := s.disks.HasData(ctx, s.abs(top.Path))
				if err != nil {
					return nil, fmt.Errorf("clone %q: VM %q disk %d: %w", src, vm.Name, di, err)
				}
				p.shortcut = !hasData
			}
			if !p.shortcut {
				if depth+1 > s.chainLimit {
					return nil, errdefs.Conflict("clone %q: VM %q disk %d: chain would be %d layers deep, over the limit of %d; make a full clone, or consolidate that disk first",
						src, vm.Name, di, depth+1, s.chainLimit)
				}
				p.sourceDelta = newLayerPath()
				created = append(created, p.sourceDelta)
				frozen = append(frozen, top.Path)
			}
			created = append(created, p.cloneDelta)
			plans = append(plans, p)
		}
	}
	for _, l := range links {
		created = append(created, l)
	}

	op, err := s.journal.Begin(ctx, "clone", dst, created, frozen)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*ConfigView, error) {
		return nil, s.journal.Fail(op, fmt.Errorf("clone %q to %q: %w", src, dst, err))
	}
	for i := range plans {
		p := &plans[i]
		vm := c.VMs[p.vm]
		parent := s.abs(p.top.Path)
		if p.shortcut {
			parent = s.abs(idx[p.top.ParentID].Path)
		} else {
			if err := s.journal.Step(ctx, op, "freeze"); err != nil {
				return fail(err)
			}
			if err := s.disks.SetReadOnly(parent, true); err != nil {
				return fail(fmt.Errorf("VM %q disk %d: freeze: %w", vm.Name, p.disk, err))
			}
			if err := s.journal.Step(ctx, op, "hash"); err != nil {
				return fail(err)
			}
			if p.sha256, p.size, err = s.hashFrozen(ctx, p.top.Path); err != nil {
				return fail(fmt.Errorf("VM %q disk %d: %w", vm.Name, p.disk, err))
			}
			if err := s.journal.Step(ctx, op, "source-delta"); err != nil {
				return fail(err)
			}
			if err := s.disks.CreateDelta(ctx, parent, s.abs(p.sourceDelta)); err != nil {
				return fail(fmt.Errorf("VM %q disk %d: %w", vm.Name, p.disk, err))
			}
		}
		if err := s.journal.Step(ctx, op, "clone-delta"); err != nil {
			return fail(err)
		}
		if err := s.disks.CreateDelta(ctx, parent, s.abs(p.cloneDelta)); err != nil {
			return fail(fmt.Errorf("VM %q disk %d: %w", vm.Name, p.disk, err))
		}
	}
	if err := (instantClones{s}).linkStates(ctx, op, states, links); err != nil {
		return fail(err)
	}
	if err := s.journal.Step(ctx, op, "commit"); err != nil {
		return fail(err)
	}
	var view *ConfigView
	var made *store.Config
	err = s.update(ctx, func(tx store.Tx) error {
		clone, err := s.commitClone(tx, src, dst, kind, place, func(tx store.Tx, p clonePlan) (int64, error) {
			parentID := p.top.ID
			if p.shortcut {
				parentID = p.top.ParentID
			} else {
				top := p.top
				top.Frozen, top.SHA256, top.Size = true, p.sha256, p.size
				if err := tx.Layers().Update(&top); err != nil {
					return 0, err
				}
				if err := s.recordHeld(tx, top.ID); err != nil {
					return 0, err
				}
				sl := &store.Layer{Path: p.sourceDelta, ParentID: top.ID, VirtualSize: top.VirtualSize}
				if err := tx.Layers().Create(sl); err != nil {
					return 0, err
				}
				if err := tx.Configs().SetDiskTop(c.VMs[p.vm].Disks[p.disk].ID, sl.ID); err != nil {
					return 0, err
				}
			}
			return createLayer(tx, store.Layer{Path: p.cloneDelta, ParentID: parentID, VirtualSize: p.top.VirtualSize})
		}, plans, states != nil, opts.StorageLease)
		if err != nil {
			return err
		}
		made = clone
		if useSource {
			if err := s.leases.used(tx, configLease(c.ID)); err != nil {
				return err
			}
		}
		if err := journal.Commit(tx, op, nil); err != nil {
			return err
		}
		view, err = s.views.config(tx, clone)
		return err
	})
	if err != nil {
		return fail(err)
	}
	instantClones{s}.placeStates(made, links)
	s.journal.Finish(op)
	s.log.Info("linked clone made", "config", dst, "source", src, "disks", len(plans), "with_state", states != nil)
	return view, nil
}

// commitClone writes the clone's records inside tx: the same VMs, CPUs,
// memory, networks, IP modes and addresses as the source (the NICs join
// their source's address family), new MACs, and for each disk the top
// layer that diskTop records. It re-reads the source so that it works on
// the current records. The clone goes where place says, within its
// owner's and workspace's quotas.
//
// With instant (a clone that shares src's saved memory state) the clone
// keeps src's MACs, instance-ids and host names instead: its guests
// resume with them in memory (see instantVM). The clone's storage lease
// starts as storageLease says.
func (s *core) commitClone(tx store.Tx, src, dst, kind string, place access.Placement, diskTop func(store.Tx, clonePlan) (int64, error), plans []clonePlan, instant bool, storageLease *time.Duration) (*store.Config, error) {
	c, err := tx.Configs().Get(src)
	if err != nil {
		return nil, err
	}
	// A snapshot's layers are frozen: its source may run meanwhile.
	if c.State != store.StateUndeployed && (len(plans) == 0 || !plans[0].fromSnapshot) {
		return nil, errdefs.Conflict("configuration %q changed state to %s during the clone", src, c.State)
	}
	var diskBytes int64
	for _, p := range plans {
		diskBytes += p.top.VirtualSize
	}
	if err := storedQuota(tx, place, len(c.VMs), diskBytes); err != nil {
		return nil, err
	}
	clone := &store.Config{Name: dst, Kind: kind, Description: c.Description, Owner: c.Owner, State: store.StateUndeployed,
		WorkspaceID: place.WorkspaceID, OwnerID: place.OwnerID, Host: s.hostName}
	for _, vm := range c.VMs {
		// A copy is a new machine: a new instance-id, and the default
		// hostname of its own name (a set one is not copied either).
		nv := store.VM{Name: vm.Name, TemplateID: vm.TemplateID, CPUs: vm.CPUs, MemoryMiB: vm.MemoryMiB, State: store.StateUndeployed,
			InstanceID: seed.NewInstanceID()}
		nv.Disks = make([]store.Disk, len(vm.Disks))
		for _, n := range vm.NICs {
			n.ID, n.VMID, n.MAC = 0, 0, newMAC()
			nv.NICs = append(nv.NICs, n)
		}
		if instant {
			nv = instantVM(c, vm, nv)
		}
		clone.VMs = append(clone.VMs, nv)
	}
	if instant {
		clone.InstantOf = c.Name
	}
	for _, p := range plans {
		id, err := diskTop(tx, p)
		if err != nil {
			return nil, err
		}
		clone.VMs[p.vm].Disks[p.disk] = store.Disk{Index: c.VMs[p.vm].Disks[p.disk].Index, TopLayerID: id}
	}
	if err := tx.Configs().Create(clone); err != nil {
		return nil, err
	}
	if err := s.leases.started(tx, configLease(clone.ID), storageLease); err != nil {
		return nil, err
	}
	return clone, nil
}

// deltaOnTop is commitClone's diskTop for a clone whose every disk is a
// new delta (cloneDelta) on the plan's top.
func deltaOnTop(tx store.Tx, p clonePlan) (int64, error) {
	return createLayer(tx, store.Layer{Path: p.cloneDelta, ParentID: p.top.ID, VirtualSize: p.top.VirtualSize})
}

// createLayer records l and returns its id.
func createLayer(tx store.Tx, l store.Layer) (int64, error) {
	if err := tx.Layers().Create(&l); err != nil {
		return 0, err
	}
	return l.ID, nil
}

// cloneCheck checks a clone request's own words: the new name and the
// storage lease's length.
func cloneCheck(src, dst string, opts CreateOptions) error {
	if err := checkLeaseLength("storage", opts.StorageLease); err != nil {
		return fmt.Errorf("clone %q to %q: %w", src, dst, err)
	}
	return CheckName("configuration", dst)
}

// needNoConfig fails with a Conflict when configuration name exists.
func needNoConfig(tx store.Tx, name string) error {
	if _, err := tx.Configs().Get(name); err == nil {
		return errdefs.Conflict("configuration %q already exists", name)
	} else if !errors.Is(err, errdefs.ErrNotFound) {
		return err
	}
	return nil
}

// placeClone places a new clone of kind (store.KindConfig or KindLibrary)
// of c, in the workspace opts names or c's.
func (s *core) placeClone(ctx context.Context, kind string, opts CreateOptions, c *store.Config) (access.Placement, error) {
	action, objKind := auth.ConfigCreate, access.KindConfig
	if kind == store.KindLibrary {
		action, objKind = auth.LibraryCapture, access.KindLibrary
	}
	return s.placer.place(ctx, action, objKind, opts.Workspace, c.WorkspaceID)
}

// StartFullClone checks the request and starts a job that writes, for each
// disk of src, one consolidated standalone qcow2 base for dst. The source is
// only read; it stays locked (not deployable) until the job ends. A
// cancelled or failed job leaves nothing behind. dst gets its storage
// lease as opts says.
func (s Configs) StartFullClone(ctx context.Context, src, dst string, opts CreateOptions) (jobs.Job, error) {
	if err := checkLeaseLength("storage", opts.StorageLease); err != nil {
		return jobs.Job{}, fmt.Errorf("full clone %q to %q: %w", src, dst, err)
	}
	unlock := s.locks.lock(src, dst)
	c, idx, err := s.loadCloneSource(ctx, src, dst)
	if err != nil {
		unlock()
		return jobs.Job{}, err
	}
	place, err := s.placer.place(ctx, auth.ConfigCreate, access.KindConfig, opts.Workspace, c.WorkspaceID)
	if err != nil {
		unlock()
		return jobs.Job{}, fmt.Errorf("full clone %q to %q: %w", src, dst, err)
	}
	var plans []clonePlan
	var created []string
	for vi, vm := range c.VMs {
		for di, d := range vm.Disks {
			p := clonePlan{vm: vi, disk: di, top: idx[d.TopLayerID], base: newLayerPath()}
			plans = append(plans, p)
			created = append(created, p.base)
		}
	}
	op, err := s.journal.Begin(ctx, "full-clone", dst, created, nil)
	if err != nil {
		unlock()
		return jobs.Job{}, err
	}
	job := s.jobs.StartFrom(ctx, "full-clone", dst, func(ctx context.Context, progress func(done, total int64)) error {
		defer unlock()
		err := s.fullClone(ctx, op, src, dst, opts, place, plans, progress)
		if err != nil {
			return s.journal.Fail(op, fmt.Errorf("full clone %q to %q: %w", src, dst, err))
		}
		s.journal.Finish(op)
		s.log.Info("full clone made", "config", dst, "source", src, "disks", len(plans))
		s.events.record(ctx, ObjectConfig, "full-clone", dst, "full clone of "+src)
		return nil
	})
	return job, nil
}

func (s Configs) fullClone(ctx context.Context, op *store.Op, src, dst string, opts CreateOptions, place access.Placement, plans []clonePlan, progress func(done, total int64)) error {
	var total int64
	for _, p := range plans {
		total += p.top.VirtualSize
	}
	progress(0, total)
	var done int64
	sizes := make([]int64, len(plans))
	for i, p := range plans {
		if err := s.journal.Step(ctx, op, "consolidate"); err != nil {
			return err
		}
		err := s.disks.Consolidate(ctx, s.abs(p.top.Path), s.abs(p.base), func(d, _ int64) {
			progress(done+d, total)
		})
		if err != nil {
			return fmt.Errorf("disk %d: %w", p.disk, err)
		}
		done += p.top.VirtualSize
		sizes[i] = p.top.VirtualSize
		progress(done, total)
	}
	if err := s.journal.Step(ctx, op, "commit"); err != nil {
		return err
	}
	return s.update(ctx, func(tx store.Tx) error {
		_, err := s.commitClone(tx, src, dst, store.KindConfig, place, func(tx store.Tx, p clonePlan) (int64, error) {
			return createLayer(tx, store.Layer{Path: p.base, VirtualSize: p.top.VirtualSize})
		}, plans, false, opts.StorageLease)
		if err != nil {
			return err
		}
		return journal.Commit(tx, op, nil)
	})
}
