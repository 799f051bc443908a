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
	"path/filepath"
	"sort"
	"time"

	"stagehand/internal/disk"
	"stagehand/internal/errdefs"
	"stagehand/internal/jobs"
	"stagehand/internal/lab/access"
	"stagehand/internal/lab/bundle"
	"stagehand/internal/lab/journal"
	"stagehand/internal/store"
)

// compressor is what archive creation uses beyond Consolidate when the
// disk tool has it (disk.QemuImg): without it archives are stored
// uncompressed.
type compressor interface {
	ConsolidateCompressed(ctx context.Context, top, dst string, progress func(done, total int64)) error
}

var _ compressor = (*disk.QemuImg)(nil)

// abs resolves a path the store records relative to the data dir.
func (x *Archives) abs(rel string) string { return journal.Abs(x.dataDir, rel) }

// StartCreate starts a job that copies an undeployed configuration (or
// library entry) into archive name: one compressed standalone qcow2 per
// disk, read from the whole chain, plus the templates' boot files and the
// manifest. The configuration is only read, and stays locked (not
// deployable, not deletable) until the job ends. A cancelled or failed job
// leaves nothing behind. The archive gets its storage lease as storageLease
// says, and goes to the workspace and owner of place.
func (x *Archives) StartCreate(ctx context.Context, config, name string, storageLease *time.Duration, place access.Placement) (jobs.Job, error) {
	if err := x.lab.CheckName("archive", name); err != nil {
		return jobs.Job{}, err
	}
	if err := x.lab.CheckLeaseLength("storage", storageLease); err != nil {
		return jobs.Job{}, fmt.Errorf("archive %q as %q: %w", config, name, err)
	}
	unlock := x.lab.Lock(config, name)
	var m *bundle.Manifest
	var tops []string // per disk, in manifest order
	var boot []string // per boot file, in manifest order: source paths
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
		m, tops, boot, err = x.planManifest(tx, c, name)
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
		if err := x.writeArchive(ctx, op, m, tmp, dir, tops, boot, progress); err != nil {
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
		x.log.Info("archive made", "archive", name, "config", config, "bytes", m.Size())
		x.lab.Record(ctx, "archive", name, "archived from "+config)
		return nil
	}), nil
}

// planManifest describes configuration c as archive name: everything but
// the files' sizes and checksums, which writeArchive fills in. It returns
// the absolute paths of the top layers (one per disk) and of the boot
// files, in the manifest's file order.
func (x *Archives) planManifest(tx store.Tx, c *store.Config, name string) (*bundle.Manifest, []string, []string, error) {
	ls, err := tx.Layers().List()
	if err != nil {
		return nil, nil, nil, err
	}
	idx := make(map[int64]store.Layer, len(ls))
	for _, l := range ls {
		idx[l.ID] = l
	}
	m := &bundle.Manifest{Format: bundle.Format, Version: bundle.Version, Name: name, Source: c.Name,
		Description: c.Description, Owner: c.Owner, CreatedAt: x.now().UTC()}
	var tops, boot []string
	networks := map[int64]bool{}
	templates := map[int64]string{}
	var tmplOrder []*store.Template
	for vi, vm := range c.VMs {
		t, ok := templates[vm.TemplateID]
		if !ok {
			tmpl, err := tx.Templates().GetByID(vm.TemplateID)
			if err != nil {
				return nil, nil, nil, fmt.Errorf("VM %q: template: %w", vm.Name, err)
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
				return nil, nil, nil, fmt.Errorf("VM %q disk %d: top layer %d missing from the store", vm.Name, d.Index, d.TopLayerID)
			}
			mv.Disks = append(mv.Disks, bundle.Disk{Index: d.Index, VirtualSize: top.VirtualSize,
				File: bundle.File{Path: fmt.Sprintf("disks/vm%d-disk%d.qcow2", vi, d.Index)}})
			tops = append(tops, x.abs(top.Path))
		}
		for _, n := range vm.NICs {
			nw, err := tx.Networks().GetByID(n.NetworkID)
			if err != nil {
				return nil, nil, nil, err
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
			boot = append(boot, x.abs(t.Kernel))
		}
		if t.Initrd != "" {
			mt.Initrd = &bundle.File{Path: fmt.Sprintf("boot/t%d-initrd", ti)}
			boot = append(boot, x.abs(t.Initrd))
		}
		m.Templates = append(m.Templates, mt)
	}
	return m, tops, boot, nil
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

// writeArchive writes the archive's files into the directory tmp, fills
// in their sizes and checksums, and renames tmp to dir when complete.
func (x *Archives) writeArchive(ctx context.Context, op *store.Op, m *bundle.Manifest, tmp, final string, tops, boot []string, progress func(done, total int64)) error {
	dir := tmp
	if err := MakeDir(dir); err != nil {
		return err
	}
	var total int64
	for _, vm := range m.VMs {
		for _, d := range vm.Disks {
			total += d.VirtualSize
		}
	}
	progress(0, total)
	var done int64
	compress := x.disks.Consolidate
	if ad, ok := x.disks.(compressor); ok {
		compress = ad.ConsolidateCompressed
	}
	files := m.Files()
	i := 0
	for _, vm := range m.VMs {
		for _, d := range vm.Disks {
			if err := x.lab.Step(ctx, op, "convert"); err != nil {
				return err
			}
			dst := filepath.Join(dir, d.File.Path)
			err := compress(ctx, tops[i], dst, func(n, _ int64) { progress(done+n, total) })
			if err != nil {
				return fmt.Errorf("VM %q disk %d: %w", vm.Name, d.Index, err)
			}
			done += d.VirtualSize
			if err := sealFile(dst, files[i]); err != nil {
				return err
			}
			i++
		}
	}
	for j, src := range boot {
		if err := x.lab.Step(ctx, op, "copy-boot-file"); err != nil {
			return err
		}
		f := files[i+j]
		dst := filepath.Join(dir, f.Path)
		if err := x.lab.CopyBootFile(ctx, src, dst); err != nil {
			return err
		}
		if err := sealFile(dst, f); err != nil {
			return err
		}
	}
	if err := WriteManifest(dir, m); err != nil {
		return err
	}
	if err := x.lab.Step(ctx, op, "commit"); err != nil {
		return err
	}
	return Publish(tmp, final)
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
