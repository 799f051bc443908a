package archive

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"time"

	"stagehand/internal/disk"
	"stagehand/internal/errdefs"
	"stagehand/internal/jobs"
	"stagehand/internal/lab/access"
	"stagehand/internal/lab/bundle"
	"stagehand/internal/lab/journal"
	"stagehand/internal/lab/snapshot"
	"stagehand/internal/store"
)

// compressor is what archive creation uses beyond Consolidate when the
// disk tool has it (disk.QemuImg): without it archives are stored
// uncompressed.
type compressor interface {
	ConsolidateCompressed(ctx context.Context, top, dst string, progress func(done, total int64)) error
}

var _ compressor = (*disk.QemuImg)(nil)

// fileKind is how writeArchive makes one file of an archive.
type fileKind int

const (
	fileDisk  fileKind = iota // a chain consolidated into a standalone qcow2
	fileDelta                 // a layer stored as a delta on another point
	fileState                 // a snapshot's saved state, copied
	fileSaved                 // a VM's current saved state, copied
	fileBoot                  // a template's boot file, copied
)

// filePlan says how one file of an archive is written.
type filePlan struct {
	file *bundle.File // in the manifest; size and checksum filled in once written
	kind fileKind
	// src is the absolute path read: a chain's top, or the file copied;
	// parent, for a delta, is the layer whose archive copy is
	// file.Backing.
	src, parent string
	backing     string // the manifest's file.Backing
	what        string // names the file in messages
	vsize       int64  // a disk file's virtual size, for progress
}

// abs resolves a path the store records relative to the data dir.
func (x *Archives) abs(rel string) string { return journal.Abs(x.dataDir, rel) }

// StartCreate starts a job that copies an undeployed configuration (or
// library entry) into archive name: one compressed standalone qcow2 per
// disk, read from the whole chain, plus the templates' boot files and the
// manifest. The configuration is only read, and stays locked (not
// deployable, not deletable) until the job ends. A cancelled or failed job
// leaves nothing behind. The archive gets its storage lease as storageLease
// says, and goes to the workspace and owner of place.
//
// withSnapshots also carries the configuration's snapshot tree, when it
// has one (manifest version 2; without snapshots the archive is the same
// version 1 either way): per disk, the part of the chain below the oldest
// snapshot point as one compressed base, each snapshot's layer and the
// current top as compressed deltas on the point below them
// (snapshot.PlanDisk), and the saved states of snapshots taken with state.
// It also carries the current saved state of each VM that has one
// (undeploy --save-state; version 2 even without snapshots): the
// configuration is undeployed and stays locked until the job ends, so
// nothing resumes it, discards its state or saves another meanwhile.
func (x *Archives) StartCreate(ctx context.Context, config, name string, storageLease *time.Duration, place access.Placement, withSnapshots bool) (jobs.Job, error) {
	if err := x.lab.CheckName("archive", name); err != nil {
		return jobs.Job{}, err
	}
	if err := x.lab.CheckLeaseLength("storage", storageLease); err != nil {
		return jobs.Job{}, fmt.Errorf("archive %q as %q: %w", config, name, err)
	}
	unlock := x.lab.Lock(config, name)
	var m *bundle.Manifest
	var plans []filePlan // in manifest file order
	err := x.store.View(ctx, func(tx store.Tx) error {
		if _, err := tx.Archives().Get(name); err == nil {
			return errdefs.Conflict("archive %q already exists", name)
		} else if !errors.Is(err, errdefs.ErrNotFound) {
			return err
		}
		c, err := tx.Configs().Get(config)
		if err != nil {
			return err
		}
		if c.State != store.StateUndeployed {
			return errdefs.Conflict("configuration %q is %s: only an undeployed configuration can be archived (its disks must be quiescent); undeploy it first", config, c.State)
		}
		m, plans, err = x.planManifest(tx, c, name, withSnapshots)
		return err
	})
	if err != nil {
		unlock()
		return jobs.Job{}, fmt.Errorf("archive %q as %q: %w", config, name, err)
	}
	dirName := NewDirName()
	dir := filepath.Join(x.dir, dirName)
	tmp := disk.TempPath(dir)
	op, err := x.lab.BeginOp(ctx, "archive", name, []string{journal.DirEntry(tmp), journal.DirEntry(dir)})
	if err != nil {
		unlock()
		return jobs.Job{}, err
	}
	return x.jobs.StartFrom(ctx, "archive", name, func(ctx context.Context, progress func(done, total int64)) error {
		defer unlock()
		if err := x.writeArchive(ctx, op, m, tmp, dir, plans, progress); err != nil {
			return x.lab.FailOp(op, fmt.Errorf("archive %q as %q: %w", config, name, err))
		}
		raw, _ := json.Marshal(m)
		err := x.store.Update(ctx, func(tx store.Tx) error {
			a := &store.Archive{Name: name, Source: config, Dir: dirName, Manifest: raw, Size: m.Size(), CreatedAt: m.CreatedAt,
				WorkspaceID: place.WorkspaceID, OwnerID: place.OwnerID}
			if err := tx.Archives().Create(a); err != nil {
				return err
			}
			if err := x.lab.StartLease(tx, a.ID, storageLease); err != nil {
				return err
			}
			return x.lab.Commit(tx, op, nil)
		})
		if err != nil {
			return x.lab.FailOp(op, fmt.Errorf("archive %q as %q: %w", config, name, err))
		}
		x.lab.FinishOp(op)
		x.log.Info("archive made", "archive", name, "config", config, "bytes", m.Size(), "snapshots", len(m.Snapshots), "saved_vms", m.SavedVMs())
		x.lab.Record(ctx, "archive", name, createDetail(config, m))
		return nil
	}), nil
}

// createDetail is the event detail of archive m made from config.
func createDetail(config string, m *bundle.Manifest) string {
	detail := "archived from " + config
	if len(m.Snapshots) > 0 {
		detail += fmt.Sprintf(" with %d snapshots", len(m.Snapshots))
	}
	if n := m.SavedVMs(); n > 0 {
		detail += fmt.Sprintf(" with the saved state of %d VMs", n)
	}
	return detail
}

// planManifest describes configuration c as archive name: everything but
// the files' sizes and checksums, which writeArchive fills in, and how
// each file is written, in the manifest's file order. withSnapshots adds
// c's snapshot tree when it has one (planSnapshots) and its VMs' saved
// states (planSavedStates).
func (x *Archives) planManifest(tx store.Tx, c *store.Config, name string, withSnapshots bool) (*bundle.Manifest, []filePlan, error) {
	ls, err := tx.Layers().List()
	if err != nil {
		return nil, nil, err
	}
	idx := make(map[int64]store.Layer, len(ls))
	for _, l := range ls {
		idx[l.ID] = l
	}
	m := &bundle.Manifest{Format: bundle.Format, Version: bundle.Version, Name: name, Source: c.Name,
		Description: c.Description, Owner: c.Owner, CreatedAt: x.now().UTC()}
	sources := map[string]filePlan{} // by file path; file is set last
	networks := map[int64]bool{}
	templates := map[int64]string{}
	var tmplOrder []*store.Template
	for vi, vm := range c.VMs {
		t, ok := templates[vm.TemplateID]
		if !ok {
			tmpl, err := tx.Templates().GetByID(vm.TemplateID)
			if err != nil {
				return nil, nil, fmt.Errorf("VM %q: template: %w", vm.Name, err)
			}
			t = tmpl.Name
			templates[vm.TemplateID] = t
			tmplOrder = append(tmplOrder, tmpl)
		}
		mv := bundle.VM{Name: vm.Name, Template: t, CPUs: vm.CPUs, MemoryMiB: vm.MemoryMiB}
		disks := append([]store.Disk(nil), vm.Disks...)
		sort.Slice(disks, func(i, j int) bool { return disks[i].Index < disks[j].Index })
		for _, d := range disks {
			top, ok := idx[d.TopLayerID]
			if !ok {
				return nil, nil, fmt.Errorf("VM %q disk %d: top layer %d missing from the store", vm.Name, d.Index, d.TopLayerID)
			}
			p := fmt.Sprintf("disks/vm%d-disk%d.qcow2", vi, d.Index)
			mv.Disks = append(mv.Disks, bundle.Disk{Index: d.Index, VirtualSize: top.VirtualSize, File: bundle.File{Path: p}})
			sources[p] = filePlan{kind: fileDisk, src: x.abs(top.Path), what: fmt.Sprintf("VM %q disk %d", vm.Name, d.Index), vsize: top.VirtualSize}
		}
		for _, n := range vm.NICs {
			nw, err := tx.Networks().GetByID(n.NetworkID)
			if err != nil {
				return nil, nil, err
			}
			if !networks[nw.ID] {
				networks[nw.ID] = true
				m.Networks = append(m.Networks, networkManifest(nw))
			}
			mn := bundle.NIC{Index: n.Index, Network: nw.Name, MAC: n.MAC, IPMode: n.IPMode}
			if n.IP.IsValid() {
				mn.IP = n.IP.String()
			}
			mv.NICs = append(mv.NICs, mn)
		}
		m.VMs = append(m.VMs, mv)
	}
	for ti, t := range tmplOrder {
		mt := bundle.Template{Name: t.Name, CPUs: t.CPUs, MemoryMiB: t.MemoryMiB, Cmdline: t.Cmdline}
		if t.Kernel != "" {
			mt.Kernel = &bundle.File{Path: fmt.Sprintf("boot/t%d-kernel", ti)}
			sources[mt.Kernel.Path] = filePlan{kind: fileBoot, src: x.abs(t.Kernel), what: fmt.Sprintf("template %q kernel", t.Name)}
		}
		if t.Initrd != "" {
			mt.Initrd = &bundle.File{Path: fmt.Sprintf("boot/t%d-initrd", ti)}
			sources[mt.Initrd.Path] = filePlan{kind: fileBoot, src: x.abs(t.Initrd), what: fmt.Sprintf("template %q initrd", t.Name)}
		}
		m.Templates = append(m.Templates, mt)
	}
	if withSnapshots {
		snaps, err := tx.Snapshots().List(c.ID)
		if err != nil {
			return nil, nil, err
		}
		if len(snaps) > 0 {
			if err := x.planSnapshots(c, m, idx, snaps, sources); err != nil {
				return nil, nil, err
			}
		}
		x.planSavedStates(c, m, sources)
	}
	var plans []filePlan
	for _, f := range m.Files() {
		p, ok := sources[f.Path]
		if !ok {
			return nil, nil, fmt.Errorf("archive file %s: no source planned", f.Path)
		}
		p.file = f
		f.Backing = p.backing
		plans = append(plans, p)
	}
	return m, plans, nil
}

// planSnapshots adds c's snapshots (snaps, in the order they were taken)
// to m: version 2, each snapshot with its layer file per disk and its state
// files, and per disk the base and deltas snapshot.PlanDisk gives, each
// file's source in sources.
func (x *Archives) planSnapshots(c *store.Config, m *bundle.Manifest, idx map[int64]store.Layer, snaps []store.Snapshot, sources map[string]filePlan) error {
	m.Version = bundle.VersionSnapshots
	vmAt := map[int64]int{} // VM id → index in c.VMs (and m.VMs)
	for vi, vm := range c.VMs {
		vmAt[vm.ID] = vi
	}
	type diskKey struct {
		vm    int
		index int
	}
	pointFiles := map[diskKey]map[int64]string{} // layer id → its archive file
	names := map[int64]string{}
	for si, sn := range snaps {
		names[sn.ID] = sn.Name
		ms := bundle.Snapshot{Name: sn.Name, Parent: names[sn.ParentID], CreatedAt: sn.CreatedAt.UTC(), WithState: sn.WithState}
		for _, d := range sn.Disks {
			vi, ok := vmAt[d.VMID]
			if !ok {
				return fmt.Errorf("snapshot %q names VM %d, which is not in the configuration", sn.Name, d.VMID)
			}
			p := fmt.Sprintf("disks/vm%d-disk%d-s%d.qcow2", vi, d.Index, si)
			ms.Disks = append(ms.Disks, bundle.SnapshotDisk{VM: c.VMs[vi].Name, Index: d.Index, File: bundle.File{Path: p}})
			k := diskKey{vi, d.Index}
			if pointFiles[k] == nil {
				pointFiles[k] = map[int64]string{}
			}
			pointFiles[k][d.LayerID] = p
		}
		for _, st := range sn.States {
			vi, ok := vmAt[st.VMID]
			if !ok {
				return fmt.Errorf("snapshot %q holds the state of VM %d, which is not in the configuration", sn.Name, st.VMID)
			}
			p := fmt.Sprintf("states/vm%d-s%d.state", vi, si)
			ms.States = append(ms.States, bundle.SnapshotState{VM: c.VMs[vi].Name, File: bundle.File{Path: p}})
			sources[p] = filePlan{kind: fileState, src: x.abs(st.Path), what: fmt.Sprintf("snapshot %q: state of VM %q", sn.Name, c.VMs[vi].Name)}
		}
		m.Snapshots = append(m.Snapshots, ms)
	}
	layers := make(map[int64]snapshot.Layer, len(idx))
	for id, l := range idx {
		layers[id] = snapshot.Layer{ID: id, ParentID: l.ParentID, ShortcutOf: l.ShortcutOf}
	}
	for vi, vm := range c.VMs {
		for _, d := range vm.Disks {
			k := diskKey{vi, d.Index}
			files := pointFiles[k]
			if files == nil {
				files = map[int64]string{}
			}
			cur := fmt.Sprintf("disks/vm%d-disk%d.qcow2", vi, d.Index)
			files[d.TopLayerID] = cur
			points := make([]int64, 0, len(files))
			for id := range files {
				points = append(points, id)
			}
			sort.Slice(points, func(i, j int) bool { return points[i] < points[j] })
			plan, err := snapshot.PlanDisk(layers, points)
			if err != nil {
				return fmt.Errorf("VM %q disk %d: %w", vm.Name, d.Index, err)
			}
			what := fmt.Sprintf("VM %q disk %d", vm.Name, d.Index)
			vsize := idx[d.TopLayerID].VirtualSize
			var base string
			if plan.Base != 0 {
				base = fmt.Sprintf("disks/vm%d-disk%d-base.qcow2", vi, d.Index)
				for j := range m.VMs[vi].Disks {
					if m.VMs[vi].Disks[j].Index == d.Index {
						m.VMs[vi].Disks[j].Base = &bundle.File{Path: base}
					}
				}
				sources[base] = filePlan{kind: fileDisk, src: x.abs(idx[plan.Base].Path), what: what + " base", vsize: vsize}
			}
			for _, id := range points {
				l := idx[id]
				if l.VirtualSize != 0 && vsize != 0 && l.VirtualSize != vsize {
					return fmt.Errorf("%s: layer %s has virtual size %d, the disk %d", what, l.Path, l.VirtualSize, vsize)
				}
				fp := filePlan{kind: fileDelta, src: x.abs(l.Path), what: what + " at " + path.Base(files[id]), vsize: vsize}
				switch below := plan.Below[id]; {
				case below != 0:
					fp.parent, fp.backing = x.abs(idx[below].Path), files[below]
				case base != "":
					fp.parent, fp.backing = x.abs(idx[plan.Base].Path), base
				default:
					fp.kind = fileDisk // the oldest point is standalone
				}
				sources[files[id]] = fp
			}
		}
	}
	return nil
}

// planSavedStates adds to m the current saved state of each VM of c that
// has one (version 2), copied as a snapshot's state is (fileSaved).
func (x *Archives) planSavedStates(c *store.Config, m *bundle.Manifest, sources map[string]filePlan) {
	for vi := range c.VMs {
		vm := &c.VMs[vi]
		rel, ok := x.lab.SavedState(vm)
		if !ok {
			continue
		}
		p := fmt.Sprintf("states/vm%d.state", vi)
		m.Version = bundle.VersionSnapshots
		m.VMs[vi].State = &bundle.File{Path: p}
		sources[p] = filePlan{kind: fileSaved, src: x.abs(rel), what: fmt.Sprintf("VM %q: saved state", vm.Name)}
	}
}

func networkManifest(nw *store.Network) bundle.Network {
	mn := bundle.Network{Name: nw.Name, Subnet: nw.Subnet.String(), DNS: []string{}, Pools: []string{}}
	if nw.Gateway.IsValid() {
		mn.Gateway = nw.Gateway.String()
	}
	for _, d := range nw.DNS {
		mn.DNS = append(mn.DNS, d.String())
	}
	for _, p := range nw.Pools {
		mn.Pools = append(mn.Pools, p.First.String()+"-"+p.Last.String())
	}
	return mn
}

// writeArchive writes the archive's files into the directory tmp as plans
// say, fills in their sizes and checksums, and renames tmp to dir when
// complete.
func (x *Archives) writeArchive(ctx context.Context, op *store.Op, m *bundle.Manifest, tmp, final string, plans []filePlan, progress func(done, total int64)) error {
	dir := tmp
	if err := MakeDir(dir); err != nil {
		return err
	}
	var total int64
	for _, p := range plans {
		total += p.vsize
	}
	progress(0, total)
	var done int64
	compress := x.disks.Consolidate
	if ad, ok := x.disks.(compressor); ok {
		compress = ad.ConsolidateCompressed
	}
	for _, p := range plans {
		dst := filepath.Join(dir, p.file.Path)
		var err error
		switch p.kind {
		case fileDisk:
			if err = x.lab.Step(ctx, op, "convert"); err == nil {
				err = compress(ctx, p.src, dst, func(n, _ int64) { progress(done+n, total) })
			}
		case fileDelta:
			if err = x.lab.Step(ctx, op, "delta"); err == nil {
				err = x.disks.ArchiveDelta(ctx, p.src, p.parent, dst, path.Base(p.backing))
			}
		case fileState:
			if err = x.lab.Step(ctx, op, "copy-state"); err == nil {
				err = copyFile(ctx, p.src, dst, 0o600)
			}
		case fileSaved:
			if err = x.lab.Step(ctx, op, "copy-saved-state"); err == nil {
				err = copyFile(ctx, p.src, dst, 0o600)
			}
		case fileBoot:
			if err = x.lab.Step(ctx, op, "copy-boot-file"); err == nil {
				err = x.lab.CopyBootFile(ctx, p.src, dst)
			}
		}
		if err != nil {
			return fmt.Errorf("%s: %w", p.what, err)
		}
		done += p.vsize
		progress(done, total)
		if err := sealFile(dst, p.file); err != nil {
			return err
		}
	}
	// What is written must be what an import accepts.
	if err := bundle.Check(m); err != nil {
		return fmt.Errorf("the archive's manifest: %w", err)
	}
	if err := WriteManifest(dir, m); err != nil {
		return err
	}
	if err := x.lab.Step(ctx, op, "commit"); err != nil {
		return err
	}
	return Publish(tmp, final)
}

// copyFile copies the regular file src to dst, a new file of mode perm,
// and syncs it.
func copyFile(ctx context.Context, src, dst string, perm os.FileMode) error {
	f, fi, err := disk.OpenSource(src)
	if err != nil {
		return err
	}
	defer f.Close()
	return disk.CopySource(ctx, f, fi.Size(), dst, perm, true)
}

// sealFile records path's size and sha256 in f and makes it read-only.
func sealFile(path string, f *bundle.File) error {
	sum, size, err := hashFile(path)
	if err != nil {
		return err
	}
	f.SHA256, f.Size = sum, size
	return os.Chmod(path, 0o400)
}

func hashFile(path string) (string, int64, error) {
	in, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer in.Close()
	h := sha256.New()
	n, err := io.CopyBuffer(h, in, make([]byte, bundle.CopyBuffer))
	if err != nil {
		return "", 0, fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}
