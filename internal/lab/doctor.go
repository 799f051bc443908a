package lab

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sort"

	"stagehand/internal/store"
)

// Doctor compares the store with the files in the data dir and reports
// every disagreement: unfinished operations, missing layers, orphan files,
// wrong backing files, frozen layers that are writable (and writable ones
// that are read-only), qemu-img check failures, unreferenced layers,
// addresses held by nobody and addresses held by two families. With repair
// it fixes what is safe to fix: it finishes or rolls back operations, fixes
// file modes, removes orphan files and unreferenced layers, and releases
// unheld addresses. It never deletes data something refers to.
func (s *Service) Doctor(ctx context.Context, repair bool) (*DoctorReport, error) {
	r := &DoctorReport{}
	r.Accel, r.AccelReason = s.accelNow() // "probing" while the daemon probes
	add := func(p Problem) *Problem {
		r.Problems = append(r.Problems, p)
		return &r.Problems[len(r.Problems)-1]
	}

	// Unfinished operations first: their files would show up as orphans.
	var ops []store.Op
	if err := s.store.View(ctx, func(tx store.Tx) error {
		var err error
		ops, err = tx.ListOps()
		return err
	}); err != nil {
		return nil, err
	}
	// Operations running now are journalled too; hold every lock-free
	// finding about their files back by skipping them.
	inFlight := map[string]bool{}
	for _, op := range ops {
		for _, f := range append(append(append([]string(nil), op.CreatedFiles...), op.FrozenFiles...), op.RemoveFiles...) {
			inFlight[f] = true
		}
	}

	var layers []store.Layer
	var configs []store.Config
	allocs := map[int64][]store.Allocation{}
	var networks []store.Network
	err := s.store.View(ctx, func(tx store.Tx) error {
		var err error
		if layers, err = tx.ListLayers(); err != nil {
			return err
		}
		if configs, err = tx.ListConfigs(); err != nil {
			return err
		}
		if networks, err = tx.ListNetworks(); err != nil {
			return err
		}
		for _, n := range networks {
			if allocs[n.ID], err = tx.ListAllocations(n.ID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, op := range ops {
		if s.opRunning(op) {
			continue
		}
		p := add(Problem{Kind: ProblemUnfinishedOp, Subject: op.Kind + " " + op.Subject, Repairable: true,
			Detail: fmt.Sprintf("journal entry %d (committed=%v) left by an interrupted run", op.ID, op.Committed)})
		if repair {
			var err error
			if op.Committed {
				err = s.finishOp(&op)
			} else {
				err = s.rollbackOp(&op)
			}
			p.Repaired = err == nil
		}
	}

	idx := layerIndex{}
	children := map[int64]int{}
	for _, l := range layers {
		idx[l.ID] = l
		if l.ParentID != 0 {
			children[l.ParentID]++
		}
	}
	tops := map[int64]bool{}
	inUse := map[int64]bool{} // tops a running QEMU holds open for writing
	for _, c := range configs {
		for _, v := range c.VMs {
			for _, d := range v.Disks {
				tops[d.TopLayerID] = true
				if c.State != store.StateUndeployed {
					inUse[d.TopLayerID] = true
				}
			}
		}
	}
	known := map[string]bool{}
	for _, l := range layers {
		known[l.Path] = true
		if inFlight[l.Path] {
			continue
		}
		r.Checked++
		path := s.abs(l.Path)
		st, err := os.Stat(path)
		if err != nil {
			add(Problem{Kind: ProblemMissingLayer, Subject: path, Detail: err.Error()})
			continue
		}
		writable := st.Mode().Perm()&0o222 != 0
		if l.Frozen && writable {
			p := add(Problem{Kind: ProblemWritableFrozen, Subject: path, Detail: "frozen layer has write permission " + st.Mode().Perm().String(), Repairable: true})
			if repair {
				p.Repaired = s.disks.SetReadOnly(path, true) == nil
			}
		}
		if !l.Frozen && !writable {
			p := add(Problem{Kind: ProblemReadOnlyTop, Subject: path, Detail: "writable layer is read-only on disk", Repairable: true})
			if repair {
				p.Repaired = s.disks.SetReadOnly(path, false) == nil
			}
		}
		info, err := s.disks.Info(ctx, path)
		if err != nil {
			add(Problem{Kind: ProblemCheckFailed, Subject: path, Detail: err.Error()})
			continue
		}
		want := ""
		if l.ParentID != 0 {
			want = s.abs(idx[l.ParentID].Path)
		}
		if filepath.Clean(info.BackingFile) != filepath.Clean(want) && !(want == "" && info.BackingFile == "") {
			add(Problem{Kind: ProblemWrongBacking, Subject: path, Detail: fmt.Sprintf("backing file is %q, the store says %q", info.BackingFile, want)})
		}
		// A running guest's top layer cannot be checked consistently
		// (qemu-img refuses the write lock QEMU holds); it is checked once
		// the configuration is undeployed.
		if !inUse[l.ID] {
			if err := s.disks.Check(ctx, path); err != nil {
				add(Problem{Kind: ProblemCheckFailed, Subject: path, Detail: err.Error()})
			}
		}
		if l.TemplateID == 0 && children[l.ID] == 0 && !tops[l.ID] {
			p := add(Problem{Kind: ProblemUnreferenced, Subject: path, Detail: "no disk, child or template refers to it", Repairable: true})
			if repair {
				p.Repaired = s.releaseUnreferenced(ctx, l.ID) == nil
			}
		}
	}

	// Orphan files: in the layers and files directories but not in the store.
	templateFiles := map[string]bool{}
	if err := s.store.View(ctx, func(tx store.Tx) error {
		ts, err := tx.ListTemplates()
		for _, t := range ts {
			templateFiles[t.Kernel], templateFiles[t.Initrd] = true, true
		}
		return err
	}); err != nil {
		return nil, err
	}
	for _, dir := range []string{layersDir, filesDir} {
		entries, err := os.ReadDir(s.abs(dir))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		for _, e := range entries {
			rel := filepath.Join(dir, e.Name())
			if known[rel] || templateFiles[rel] || inFlight[rel] {
				continue
			}
			p := add(Problem{Kind: ProblemOrphanFile, Subject: s.abs(rel), Detail: "file is not in the store", Repairable: true})
			if repair {
				p.Repaired = removeFile(s.abs(rel)) == nil
			}
		}
	}

	// Addresses: every internal allocation is carried by at least one NIC,
	// and every NIC's address is its allocation's.
	carried := map[int64]int{}
	mapped := map[int64]bool{} // external allocations a fenced NIC uses
	type addrKey struct {
		network int64
		ip      netip.Addr
	}
	byAddr := map[addrKey]map[int64]bool{} // allocation ids seen on NICs per address
	for _, c := range configs {
		for _, v := range c.VMs {
			for _, n := range v.NICs {
				if n.ExternalAllocationID != 0 {
					mapped[n.ExternalAllocationID] = true
				}
				if !n.IP.IsValid() {
					continue
				}
				carried[n.AllocationID]++
				key := addrKey{n.NetworkID, n.IP}
				if byAddr[key] == nil {
					byAddr[key] = map[int64]bool{}
				}
				byAddr[key][n.AllocationID] = true
			}
		}
	}
	for _, nw := range networks {
		for _, a := range allocs[nw.ID] {
			if a.Kind == store.AllocExternal && !mapped[a.ID] {
				p := add(Problem{Kind: ProblemUnheldIP, Subject: a.IP.String(), Detail: fmt.Sprintf("external address on network %q is held (%s) but no fenced NIC maps it", nw.Name, a.Holder), Repairable: true})
				if repair {
					id := a.ID
					p.Repaired = s.update(ctx, func(tx store.Tx) error { return tx.DeleteAllocation(id) }) == nil
					s.alloc.Forget()
				}
				continue
			}
			if a.Kind != store.AllocInternal || carried[a.ID] > 0 {
				continue
			}
			p := add(Problem{Kind: ProblemUnheldIP, Subject: a.IP.String(), Detail: fmt.Sprintf("address on network %q is allocated but no NIC carries it", nw.Name), Repairable: true})
			if repair {
				p.Repaired = s.update(ctx, func(tx store.Tx) error { return s.releaseAllocations(tx, []int64{a.ID}) }) == nil
			}
		}
	}
	keys := make([]addrKey, 0, len(byAddr))
	for k := range byAddr {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].network != keys[j].network {
			return keys[i].network < keys[j].network
		}
		return keys[i].ip.Less(keys[j].ip)
	})
	for _, k := range keys {
		ids := byAddr[k]
		switch {
		case ids[0]:
			add(Problem{Kind: ProblemSplitFamily, Subject: k.ip.String(), Detail: "a NIC carries the address without an allocation"})
		case len(ids) > 1:
			add(Problem{Kind: ProblemSplitFamily, Subject: k.ip.String(), Detail: fmt.Sprintf("address is carried under %d different allocations (two families)", len(ids))})
		}
	}
	if err := s.doctorArchives(ctx, repair, inFlight, add); err != nil {
		return nil, err
	}
	return r, nil
}

// opRunning reports whether op belongs to an operation of this process that
// is still running (its subject is locked).
func (s *Service) opRunning(op store.Op) bool {
	s.locks.mu.Lock()
	defer s.locks.mu.Unlock()
	_, ok := s.locks.locks[op.Subject]
	if !ok {
		_, ok = s.locks.locks["template/"+op.Subject]
	}
	return ok
}

// releaseUnreferenced deletes an unreferenced layer (and the parents it
// leaves unreferenced) and its files.
func (s *Service) releaseUnreferenced(ctx context.Context, id int64) error {
	op := &store.Op{Kind: "release", Subject: fmt.Sprint(id)}
	err := s.update(ctx, func(tx store.Tx) error {
		removed, err := releaseLayers(tx, []int64{id})
		if err != nil {
			return err
		}
		if err := tx.CreateOp(op); err != nil {
			return err
		}
		return commitOp(tx, op, removed)
	})
	if err != nil {
		return err
	}
	return s.finishOp(op)
}
