package lab

import (
	"context"
	"fmt"
	"time"

	"stagehand/internal/auth"
	"stagehand/internal/errdefs"
	"stagehand/internal/lab/access"
	"stagehand/internal/lab/deploy"
	"stagehand/internal/lab/lease"
	"stagehand/internal/store"
)

// The resource cleanup view: configurations, library entries and archives
// whose storage lease ran out, or that nobody used for a number of days,
// each with the space deleting it would really free. Layers are shared, so
// that is not the size of its chains: a layer is freed only when every
// disk and child that keeps it goes too, exactly as releaseLayers decides
// at deletion. The view simulates that rule on the layer tree (lease.Space),
// for each item alone and for all the deletable items together (which can
// free more than the sum: two clones sharing a frozen layer each free
// nothing of it alone, both together free it).

// CleanupOptions are the options of Cleanup.
type CleanupOptions struct {
	// IdleDays lists also what has not been used (deployed, undeployed,
	// checked out, restored, exported) for this many days; 0 lists only
	// what expired.
	IdleDays int
	// Apply deletes every deletable item; with DryRun it only says what
	// it would delete.
	Apply  bool
	DryRun bool
}

// CleanupItem is one candidate of the cleanup view.
type CleanupItem struct {
	Object  string // ObjectConfig, ObjectLibrary or ObjectArchive
	Name    string
	State   string // configurations: their state
	Reasons []string
	Lease   LeaseView
	// IdleSince is the last use (or creation when never used).
	IdleSince time.Time
	// Frees is the bytes deleting this item alone would free.
	Frees int64
	// Deletable is false for what cleanup never deletes (a configuration
	// that is not undeployed); Kept says why.
	Deletable bool
	Kept      string
	Deleted   bool
	Error     string
}

// CleanupReport is the cleanup view, and what --apply did.
type CleanupReport struct {
	Items []CleanupItem
	// Frees is the bytes deleting every deletable item together frees.
	Frees   int64
	Applied bool
	// Freed is the bytes the deletions freed (Frees when all succeeded).
	Freed  int64
	Policy string
	Grace  time.Duration
}

// Cleanup lists the expired and idle configurations, library entries and
// archives with the space each would free; with Apply (and not DryRun) it
// deletes the deletable ones. A deployed configuration is never deleted.
func (s Leases) Cleanup(ctx context.Context, opts CleanupOptions) (*CleanupReport, error) {
	if opts.IdleDays < 0 {
		return nil, errdefs.Invalid("cleanup: idle days %d is negative", opts.IdleDays)
	}
	// The view lists what the caller may see, in the workspaces where
	// their role has cleanup.read (and what is shared with them); --apply
	// deletes what the caller may delete, decided item by item. The space
	// model is the whole layer tree, since what a deletion frees depends
	// on every disk.
	sc, err := s.access.ScopeFor(ctx, auth.CleanupRead)
	if err != nil {
		return nil, fmt.Errorf("cleanup: %w", err)
	}
	var model *lease.Space
	var items []CleanupItem
	now := s.now()
	err = s.store.View(ctx, func(tx store.Tx) error {
		var err error
		if model, err = s.loadSpace(tx); err != nil {
			return err
		}
		items, err = s.cleanupCandidates(tx, sc, now, opts.IdleDays)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("cleanup: %w", err)
	}
	for i := range items {
		it := &items[i]
		if !it.Deletable {
			continue
		}
		if err := s.access.Check(ctx, deleteAction[it.Object], access.Ref{Kind: it.Object, Name: it.Name}); err != nil {
			it.Deletable, it.Kept = false, "not yours to delete: "+err.Error()
		}
	}
	rep := &CleanupReport{Policy: s.life.policy.Cleanup, Grace: s.life.policy.Grace}
	var all []CleanupItem
	for i := range items {
		it := &items[i]
		if it.Frees, err = frees(ctx, s.core, model, []CleanupItem{*it}); err != nil {
			return nil, fmt.Errorf("cleanup: %w", err)
		}
		if it.Deletable {
			all = append(all, *it)
		}
	}
	if rep.Frees, err = frees(ctx, s.core, model, all); err != nil {
		return nil, fmt.Errorf("cleanup: %w", err)
	}
	rep.Items = items
	if !opts.Apply || opts.DryRun {
		return rep, nil
	}
	rep.Applied = true
	var deleted []CleanupItem
	for i := range rep.Items {
		it := &rep.Items[i]
		if !it.Deletable {
			continue
		}
		if err := s.deleteObject(ctx, it.Object, it.Name); err != nil {
			it.Error = err.Error()
			continue
		}
		it.Deleted = true
		deleted = append(deleted, *it)
	}
	if rep.Freed, err = frees(ctx, s.core, model, deleted); err != nil {
		return nil, fmt.Errorf("cleanup: %w", err)
	}
	return rep, nil
}

// deleteAction is the action deleting a cleanup item of each object kind
// needs.
var deleteAction = map[string]auth.Action{
	ObjectConfig: auth.ConfigDelete, ObjectLibrary: auth.LibraryDelete, ObjectArchive: auth.ArchiveDelete,
}

// cleanupCandidates lists what is expired or idle among what sc shows.
func (s Leases) cleanupCandidates(tx store.Tx, sc access.Scope, now time.Time, idleDays int) ([]CleanupItem, error) {
	leases, err := tx.Leases().List()
	if err != nil {
		return nil, err
	}
	byConfig, byArchive := map[int64]*store.Lease{}, map[int64]*store.Lease{}
	for i := range leases {
		if leases[i].ConfigID != 0 {
			byConfig[leases[i].ConfigID] = &leases[i]
		} else {
			byArchive[leases[i].ArchiveID] = &leases[i]
		}
	}
	idleFor := time.Duration(idleDays) * 24 * time.Hour
	consider := func(it CleanupItem, l *store.Lease, created time.Time, idleCounts bool) *CleanupItem {
		it.Lease = s.views.lease(l)
		it.IdleSince = created
		if l != nil {
			if !l.LastUsed.IsZero() {
				it.IdleSince = l.LastUsed
			}
			switch {
			case !l.ExpiredAt.IsZero():
				it.Reasons = append(it.Reasons, "storage lease expired "+l.StorageExpires.Format(time.RFC3339))
			case !l.StorageExpires.IsZero() && !now.Before(l.StorageExpires):
				it.Reasons = append(it.Reasons, "storage lease expired "+l.StorageExpires.Format(time.RFC3339))
			}
		}
		if idleDays > 0 && idleCounts && now.Sub(it.IdleSince) >= idleFor {
			it.Reasons = append(it.Reasons, fmt.Sprintf("idle %d days", int(now.Sub(it.IdleSince)/(24*time.Hour))))
		}
		if len(it.Reasons) == 0 {
			return nil
		}
		return &it
	}
	var out []CleanupItem
	cs, err := listConfigs(tx, sc)
	if err != nil {
		return nil, err
	}
	for _, c := range cs {
		it := CleanupItem{Object: configObject(&c), Name: c.Name, State: c.State, Deletable: c.State == store.StateUndeployed}
		if !it.Deletable {
			it.Kept = "configuration is " + c.State + ": never deleted while not undeployed"
		}
		if l := byConfig[c.ID]; l != nil && l.LadderStep != "" && l.LadderStep != lease.StepWarn {
			// One the ladder suspended or undeployed; not one whose
			// lease was extended since (its later steps are cancelled).
			if st := s.views.ladderOf(tx, &c); !st.Cancelled {
				it.Reasons = append(it.Reasons, ladderReason(st))
			}
		}
		if got := consider(it, byConfig[c.ID], c.CreatedAt, c.State == store.StateUndeployed); got != nil {
			out = append(out, *got)
		}
	}
	as, err := listArchives(tx, sc)
	if err != nil {
		return nil, err
	}
	for _, a := range as {
		it := CleanupItem{Object: ObjectArchive, Name: a.Name, Deletable: true}
		if got := consider(it, byArchive[a.ID], a.CreatedAt, true); got != nil {
			out = append(out, *got)
		}
	}
	return out, nil
}

// ladderReason says where a configuration is on its lease ladder, past
// the warning: the cleanup view lists it for that.
func ladderReason(st LadderState) string {
	r := fmt.Sprintf("lease ladder (policy %s): step %s at %s", st.Policy, st.Step, st.At.Format(time.RFC3339))
	if st.Next != "" {
		r += fmt.Sprintf("; next %s at %s", st.Next, st.NextAt.Format(time.RFC3339))
	}
	return r
}

// loadSpace fills the cleanup view's space model from the store: the
// layer tree, each configuration's disks and saved states, each archive's
// directory.
func (s Leases) loadSpace(tx store.Tx) (*lease.Space, error) {
	idx, err := loadLayers(tx)
	if err != nil {
		return nil, err
	}
	m := lease.NewSpace(idx)
	cs, err := tx.Configs().List()
	if err != nil {
		return nil, err
	}
	for _, c := range cs {
		object := configObject(&c)
		for _, vm := range c.VMs {
			if s.deploys.HasSavedState(vm.ID) {
				m.AddStateFile(object, c.Name, s.abs(deploy.StateFile(vm.ID)))
			}
			for _, d := range vm.Disks {
				m.AddDisk(object, c.Name, d.TopLayerID)
			}
		}
		// A snapshot keeps its layers as a disk keeps its top, until the
		// configuration (or the snapshot) is deleted.
		snapLayers, snapFiles, err := snapshotFiles(tx, c.ID)
		if err != nil {
			return nil, err
		}
		for _, id := range snapLayers {
			m.AddDisk(object, c.Name, id)
		}
		for _, f := range snapFiles {
			m.AddStateFile(object, c.Name, s.abs(f))
		}
	}
	as, err := tx.Archives().List()
	if err != nil {
		return nil, err
	}
	for i := range as {
		m.AddArchive(as[i].Name, s.archives.DirOf(&as[i]))
	}
	return m, nil
}

// ConfigSpace is what deleting one configuration would free: the bytes,
// counted as the cleanup view counts them, and the layers released.
type ConfigSpace struct {
	Frees  int64
	Layers []FreedLayer
}

// FreedLayer is a layer deleting a configuration would release.
type FreedLayer struct {
	ID    int64
	Path  string // absolute
	Bytes int64
}

// Space says what deleting the configuration name alone would free, by
// the cleanup view's model (shared layers are kept: a linked clone frees
// only its own tops). The route checks config.read on name.
func (s Leases) Space(ctx context.Context, name string) (*ConfigSpace, error) {
	var model *lease.Space
	var object string
	err := s.store.View(ctx, func(tx store.Tx) error {
		c, err := tx.Configs().Get(name)
		if err != nil {
			return err
		}
		if c.Kind == store.KindLibrary {
			return errdefs.NotFound("configuration %q not found (it is a library entry)", name)
		}
		object = configObject(c)
		model, err = s.loadSpace(tx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("space of %q: %w", name, err)
	}
	total, layers, err := model.FreesLayers(ctx, s.core.layerSizer(), []lease.Ref{{Object: object, Name: name}})
	if err != nil {
		return nil, fmt.Errorf("space of %q: %w", name, err)
	}
	out := &ConfigSpace{Frees: total, Layers: []FreedLayer{}}
	for _, l := range layers {
		out.Layers = append(out.Layers, FreedLayer{ID: l.ID, Path: s.abs(l.Path), Bytes: l.Bytes})
	}
	return out, nil
}

// frees returns the bytes deleting items together frees, by the model m;
// it measures a freed layer's file through the lab's disk tool.
func frees(ctx context.Context, s *core, m *lease.Space, items []CleanupItem) (int64, error) {
	refs := make([]lease.Ref, len(items))
	for i, it := range items {
		refs[i] = lease.Ref{Object: it.Object, Name: it.Name}
	}
	return m.Frees(ctx, s.layerSizer(), refs)
}

// layerSizer measures a layer's file (a path as the store keeps it)
// through the lab's disk tool.
func (s *core) layerSizer() lease.LayerSizer {
	return func(ctx context.Context, path string) (int64, error) {
		info, err := s.disks.Info(ctx, s.abs(path))
		if err != nil {
			return 0, err
		}
		return info.ActualSize, nil
	}
}
