package lab

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"stagehand/internal/errdefs"
	"stagehand/internal/lab/deploy"
	"stagehand/internal/store"
)

// The resource cleanup view: configurations, library entries and archives
// whose storage lease ran out, or that nobody used for a number of days,
// each with the space deleting it would really free. Layers are shared, so
// that is not the size of its chains: a layer is freed only when every
// disk and child that keeps it goes too, exactly as releaseLayers decides
// at deletion. The view simulates that rule on the layer tree, for each
// item alone and for all the deletable items together (which can free more
// than the sum: two clones sharing a frozen layer each free nothing of it
// alone, both together free it).

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
func (s *Service) Cleanup(ctx context.Context, opts CleanupOptions) (*CleanupReport, error) {
	if opts.IdleDays < 0 {
		return nil, errdefs.Invalid("cleanup: idle days %d is negative", opts.IdleDays)
	}
	var model *spaceModel
	var items []CleanupItem
	now := s.now()
	err := s.store.View(ctx, func(tx store.Tx) error {
		var err error
		if model, err = s.loadSpaceModel(tx); err != nil {
			return err
		}
		items, err = s.cleanupCandidates(tx, now, opts.IdleDays)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("cleanup: %w", err)
	}
	rep := &CleanupReport{Policy: s.life.policy.Cleanup, Grace: s.life.policy.Grace}
	var all []CleanupItem
	for i := range items {
		it := &items[i]
		if it.Frees, err = model.frees(ctx, s, []CleanupItem{*it}); err != nil {
			return nil, fmt.Errorf("cleanup: %w", err)
		}
		if it.Deletable {
			all = append(all, *it)
		}
	}
	if rep.Frees, err = model.frees(ctx, s, all); err != nil {
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
	if rep.Freed, err = model.frees(ctx, s, deleted); err != nil {
		return nil, fmt.Errorf("cleanup: %w", err)
	}
	return rep, nil
}

// cleanupCandidates lists what is expired or idle.
func (s *Service) cleanupCandidates(tx store.Tx, now time.Time, idleDays int) ([]CleanupItem, error) {
	leases, err := tx.ListLeases()
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
		it.Lease = s.leaseView(l)
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
	cs, err := tx.ListConfigs()
	if err != nil {
		return nil, err
	}
	for _, c := range cs {
		it := CleanupItem{Object: configObject(&c), Name: c.Name, State: c.State, Deletable: c.State == store.StateUndeployed}
		if !it.Deletable {
			it.Kept = "configuration is " + c.State + ": never deleted while not undeployed"
		}
		if got := consider(it, byConfig[c.ID], c.CreatedAt, c.State == store.StateUndeployed); got != nil {
			out = append(out, *got)
		}
	}
	as, err := tx.ListArchives()
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

// spaceModel is a snapshot of the layer tree and of what refers to each
// layer, to compute what deleting a set of objects frees.
type spaceModel struct {
	layers     layerIndex
	children   map[int64]int
	topRefs    map[int64]int // disks whose top the layer is
	configTops map[string][]int64
	stateFiles map[string][]string // saved states, deleted with the configuration
	archives   map[string]string   // archive name -> directory
	sizes      map[int64]int64     // allocated bytes of layers, filled lazily
}

func (s *Service) loadSpaceModel(tx store.Tx) (*spaceModel, error) {
	idx, err := loadLayers(tx)
	if err != nil {
		return nil, err
	}
	m := &spaceModel{layers: idx, children: map[int64]int{}, topRefs: map[int64]int{},
		configTops: map[string][]int64{}, stateFiles: map[string][]string{}, archives: map[string]string{}, sizes: map[int64]int64{}}
	for _, l := range idx {
		if l.ParentID != 0 {
			m.children[l.ParentID]++
		}
	}
	cs, err := tx.ListConfigs()
	if err != nil {
		return nil, err
	}
	for _, c := range cs {
		key := configObject(&c) + "/" + c.Name
		for _, vm := range c.VMs {
			if f := s.abs(deploy.StateFile(vm.ID)); fileExists(f) {
				m.stateFiles[key] = append(m.stateFiles[key], f)
			}
			for _, d := range vm.Disks {
				m.topRefs[d.TopLayerID]++
				m.configTops[key] = append(m.configTops[key], d.TopLayerID)
			}
		}
	}
	as, err := tx.ListArchives()
	if err != nil {
		return nil, err
	}
	for i := range as {
		m.archives[as[i].Name] = s.archiveDirOf(&as[i])
	}
	return m, nil
}

// freedLayers returns the layers deleting the configurations keys would
// release, by the rule of releaseLayers.
func (m *spaceModel) freedLayers(keys []string) []int64 {
	topRefs := map[int64]int{}
	children := map[int64]int{}
	var queue []int64
	for _, k := range keys {
		for _, id := range m.configTops[k] {
			topRefs[id]--
			queue = append(queue, id)
		}
	}
	freed := map[int64]bool{}
	var out []int64
	for len(queue) > 0 {
		id := queue[0]
		queue = queue[1:]
		l, ok := m.layers[id]
		if !ok || freed[id] || l.TemplateID != 0 {
			continue
		}
		if m.topRefs[id]+topRefs[id] > 0 || m.children[id]+children[id] > 0 {
			continue
		}
		freed[id] = true
		out = append(out, id)
		if l.ParentID != 0 {
			children[l.ParentID]--
			queue = append(queue, l.ParentID)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// frees returns the bytes deleting items together frees.
func (m *spaceModel) frees(ctx context.Context, s *Service, items []CleanupItem) (int64, error) {
	var keys []string
	var total int64
	for _, it := range items {
		if it.Object == ObjectArchive {
			total += allocatedBytes(m.archives[it.Name])
			continue
		}
		key := it.Object + "/" + it.Name
		keys = append(keys, key)
		for _, f := range m.stateFiles[key] {
			total += allocatedBytes(f)
		}
	}
	for _, id := range m.freedLayers(keys) {
		size, ok := m.sizes[id]
		if !ok {
			info, err := s.disks.Info(ctx, s.abs(m.layers[id].Path))
			if err != nil {
				return 0, fmt.Errorf("size of layer %s: %w", m.layers[id].Path, err)
			}
			size = info.ActualSize
			m.sizes[id] = size
		}
		total += size
	}
	return total, nil
}

// allocatedBytes returns the bytes path (a file, or a directory with all
// it holds) takes on its filesystem.
func allocatedBytes(path string) int64 {
	var total int64
	filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		st, err := os.Lstat(p)
		if err != nil {
			return nil
		}
		if sys, ok := st.Sys().(*syscall.Stat_t); ok && !st.IsDir() {
			total += sys.Blocks * 512
		}
		return nil
	})
	return total
}
