package doctor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sort"

	"stagehand/internal/disk"
	"stagehand/internal/lab/journal"
	"stagehand/internal/store"
)

// checkLeftovers reports files in the layers and files directories that
// the store does not know: temporary files of interrupted writes
// (".NAME.tmp") and orphans.
func (d *run) checkLeftovers() error {
	var entries []fs.DirEntry
	var paths []string
	for _, dir := range d.dr.cfg.FileDirs {
		es, err := os.ReadDir(d.dr.abs(dir))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		for _, e := range es {
			entries = append(entries, e)
			paths = append(paths, filepath.Join(dir, e.Name()))
		}
	}
	// Read what the store and journal know after listing: an operation
	// journals its files before making them, so any file listed above
	// that belongs to one is known by now.
	known, err := d.dr.knownFiles(d.ctx)
	if err != nil {
		return err
	}
	for i, rel := range paths {
		if known[rel] || d.reported[d.dr.abs(rel)] {
			continue
		}
		d.leftover(d.dr.abs(rel), entries[i].IsDir(), "file is not in the store")
	}
	return nil
}

// leftover reports (and with repair removes) a file nothing refers to:
// a temporary one, or an orphan.
func (d *run) leftover(path string, isDir bool, orphanDetail string) {
	p := Problem{Kind: ProblemOrphanFile, Subject: path, Detail: orphanDetail, Repairable: true}
	if disk.IsTempName(filepath.Base(path)) {
		p.Kind, p.Detail = ProblemTempFile, "temporary file no operation is writing (left by an interrupted run)"
	}
	pp := d.add(p)
	d.reported[path] = true
	if !d.repair {
		return
	}
	remove := os.Remove
	if isDir && p.Kind == ProblemTempFile {
		remove = os.RemoveAll // a half-written directory (an archive's)
	}
	err := remove(path)
	pp.Repaired = err == nil || journal.Gone(err)
}

// knownFiles returns every data-dir file the store refers to (layers,
// template boot files) and every file the journal names, relative to the
// data dir where it is inside it.
func (dr *Doctor) knownFiles(ctx context.Context) (map[string]bool, error) {
	known := map[string]bool{}
	err := dr.cfg.Store.View(ctx, func(tx store.Tx) error {
		ls, err := tx.Layers().List()
		if err != nil {
			return err
		}
		for _, l := range ls {
			known[l.Path] = true
		}
		ts, err := tx.Templates().List()
		if err != nil {
			return err
		}
		for _, t := range ts {
			known[t.Kernel], known[t.Initrd] = true, true
		}
		ops, err := tx.Ops().List()
		if err != nil {
			return err
		}
		for _, op := range ops {
			for _, f := range opFiles(op) {
				known[f] = true
				known[dr.rel(dr.abs(f))] = true
			}
		}
		return nil
	})
	return known, err
}

// checkAddresses checks that every internal allocation is carried by at
// least one NIC, every external one is mapped by a fenced NIC, and every
// NIC's address is its allocation's.
func (d *run) checkAddresses() error {
	carried := map[int64]int{}
	mapped := map[int64]bool{} // external allocations a fenced NIC uses
	type addrKey struct {
		network int64
		ip      netip.Addr
	}
	byAddr := map[addrKey]map[int64]bool{} // allocation ids seen on NICs per address
	for _, c := range d.configs {
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
	for _, nw := range d.networks {
		for _, a := range d.allocs[nw.ID] {
			if a.Kind == store.AllocExternal && !mapped[a.ID] {
				p := d.add(Problem{Kind: ProblemUnheldIP, Subject: a.IP.String(), Detail: fmt.Sprintf("external address on network %q is held (%s) but no fenced NIC maps it", nw.Name, a.Holder), Repairable: true})
				if d.repair {
					p.Repaired = d.dr.cfg.Lab.ReleaseAddress(d.ctx, a) == nil
				}
				continue
			}
			if a.Kind != store.AllocInternal || carried[a.ID] > 0 {
				continue
			}
			p := d.add(Problem{Kind: ProblemUnheldIP, Subject: a.IP.String(), Detail: fmt.Sprintf("address on network %q is allocated but no NIC carries it", nw.Name), Repairable: true})
			if d.repair {
				p.Repaired = d.dr.cfg.Lab.ReleaseAddress(d.ctx, a) == nil
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
			d.add(Problem{Kind: ProblemSplitFamily, Subject: k.ip.String(), Detail: "a NIC carries the address without an allocation"})
		case len(ids) > 1:
			d.add(Problem{Kind: ProblemSplitFamily, Subject: k.ip.String(), Detail: fmt.Sprintf("address is carried under %d different allocations (two families)", len(ids))})
		}
	}
	return nil
}
