package archive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"stagehand/internal/disk"
	"stagehand/internal/errdefs"
	"stagehand/internal/jobs"
	"stagehand/internal/lab/bundle"
	"stagehand/internal/lab/journal"
	"stagehand/internal/store"
)

// Bundles: exporting an archive as one tar file (see package bundle for
// the format), and importing one as a new archive. An import checks the
// manifest (its checksum, its shape, this server's rules, that its networks
// exist here, that the name is free) before anything is written, then
// streams each file into a new archive directory while hashing it, and
// creates the archive record only when every file is present, complete and
// equal to its checksum, and every disk is a standalone qcow2. Anything
// else fails the import, and the directory is removed: nothing is left
// behind.

// StartExport starts a job that writes archive name as a bundle at file, an
// absolute path on the daemon's host that must not exist yet. The bundle
// appears under its name only when complete; each file's checksum is
// checked on the way, so a damaged archive is not exported.
func (x *Archives) StartExport(ctx context.Context, name, file string) (jobs.Job, error) {
	if err := x.lab.CheckHostPath(file, "the daemon writes it"); err != nil {
		return jobs.Job{}, fmt.Errorf("export %q: %w", name, err)
	}
	file = filepath.Clean(file)
	if _, err := os.Lstat(file); err == nil {
		return jobs.Job{}, errdefs.Conflict("export %q: %s already exists", name, file)
	}
	if st, err := os.Stat(filepath.Dir(file)); err != nil || !st.IsDir() {
		return jobs.Job{}, errdefs.Invalid("export %q: directory %s does not exist", name, filepath.Dir(file))
	}
	unlock := x.lab.Lock(name)
	var a *store.Archive
	err := x.store.View(ctx, func(tx store.Tx) error {
		var err error
		a, err = tx.GetArchive(name)
		return err
	})
	if err != nil {
		unlock()
		return jobs.Job{}, fmt.Errorf("export %q: %w", name, err)
	}
	m, err := bundle.Parse(a.Manifest)
	if err != nil {
		unlock()
		return jobs.Job{}, fmt.Errorf("export %q: %w", name, err)
	}
	tmp := filepath.Join(filepath.Dir(file), "."+filepath.Base(file)+"."+journal.RandomHex(6)+".tmp")
	op, err := x.lab.BeginOp(ctx, "export", name, []string{tmp})
	if err != nil {
		unlock()
		return jobs.Job{}, err
	}
	dir := x.DirOf(a)
	return x.jobs.StartFrom(ctx, "export", name, func(ctx context.Context, progress func(done, total int64)) error {
		defer unlock()
		if err := x.writeBundleFile(ctx, op, tmp, file, a.Manifest, m, dir, progress); err != nil {
			return x.lab.FailOp(op, fmt.Errorf("export %q to %s: %w", name, file, err))
		}
		x.lab.FinishOp(op) // the temporary name is gone: nothing to undo
		x.log.Info("archive exported", "archive", name, "file", file, "bytes", m.Size())
		x.lab.Touch(ctx, name)
		x.lab.Record(ctx, "export", name, "to "+file)
		return nil
	}), nil
}

func (x *Archives) writeBundleFile(ctx context.Context, op *store.Op, tmp, file string, raw []byte, m *bundle.Manifest, dir string, progress func(done, total int64)) error {
	if err := x.lab.Step(ctx, op, "write"); err != nil {
		return err
	}
	// Private to root like the archive it carries: the user who asked
	// for it can be given it (chown, chmod) on purpose.
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := bundle.Write(ctx, f, raw, m, dir, progress); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := x.lab.Step(ctx, op, "publish"); err != nil {
		return err
	}
	if _, err := os.Lstat(file); err == nil {
		return errdefs.Conflict("%s appeared meanwhile", file)
	}
	if err := os.Rename(tmp, file); err != nil {
		return err
	}
	return SyncPaths(filepath.Dir(file))
}

// ImportSpec is the input of StartImport.
type ImportSpec struct {
	File string // absolute path of the bundle on the daemon's host
	Name string // the new archive's name; "" keeps the bundle's
	// MapNetwork maps the bundle's network names to this server's; networks
	// not in it keep their names.
	MapNetwork map[string]string
	// StorageLease is the archive's storage lease from its import: nil
	// means the daemon's default (LeasePolicy.DefaultStorage), 0 never.
	StorageLease *time.Duration
}

// StartImport checks a bundle's manifest and starts a job that imports it
// as a new archive (see the top of this file).
func (x *Archives) StartImport(ctx context.Context, spec ImportSpec) (jobs.Job, error) {
	if err := x.lab.CheckHostPath(spec.File, "the daemon reads it"); err != nil {
		return jobs.Job{}, fmt.Errorf("import: %w", err)
	}
	if err := x.lab.CheckLeaseLength("storage", spec.StorageLease); err != nil {
		return jobs.Job{}, fmt.Errorf("import %s: %w", spec.File, err)
	}
	head, err := bundle.ReadHead(spec.File, x.lab.CheckManifest)
	if err != nil {
		return jobs.Job{}, fmt.Errorf("import %s: %w", spec.File, err)
	}
	started := false
	defer func() {
		if !started {
			head.File.Close()
		}
	}()
	m := head.Manifest
	if spec.Name != "" {
		m.Name = spec.Name
	}
	if err := x.lab.CheckName("archive", m.Name); err != nil {
		return jobs.Job{}, fmt.Errorf("import %s: %w", spec.File, err)
	}
	if err := x.MapNetworks(m, spec.MapNetwork); err != nil {
		return jobs.Job{}, fmt.Errorf("import %s: %w", spec.File, err)
	}
	unlock := x.lab.Lock(m.Name)
	err = x.store.View(ctx, func(tx store.Tx) error {
		if _, err := tx.GetArchive(m.Name); err == nil {
			return errdefs.Conflict("archive %q already exists; import the bundle under another name", m.Name)
		} else if !errors.Is(err, errdefs.ErrNotFound) {
			return err
		}
		return CheckNetworksExist(tx, m)
	})
	if err != nil {
		unlock()
		return jobs.Job{}, fmt.Errorf("import %s: %w", spec.File, err)
	}
	raw, err := json.Marshal(m)
	if err != nil {
		unlock()
		return jobs.Job{}, err
	}
	// The bundle holds every file whole (sparse members are refused), so
	// the archive needs what the manifest says, which is at most the
	// bundle's size.
	if err := disk.CheckSpace(x.dir, m.Size()); err != nil {
		unlock()
		return jobs.Job{}, fmt.Errorf("import %s: %w", spec.File, err)
	}
	dirName := NewDirName()
	dir := filepath.Join(x.dir, dirName)
	tmp := disk.TempPath(dir)
	op, err := x.lab.BeginOp(ctx, "archive-import", m.Name, []string{journal.DirEntry(tmp), journal.DirEntry(dir)})
	if err != nil {
		unlock()
		return jobs.Job{}, err
	}
	started = true
	return x.jobs.StartFrom(ctx, "import", m.Name, func(ctx context.Context, progress func(done, total int64)) error {
		defer unlock()
		defer head.File.Close()
		fail := func(err error) error {
			return x.lab.FailOp(op, fmt.Errorf("import %s: %w", spec.File, err))
		}
		if err := x.Extract(ctx, op, head, m, tmp, dir, progress); err != nil {
			return fail(err)
		}
		err := x.store.Update(ctx, func(tx store.Tx) error {
			a := &store.Archive{Name: m.Name, Source: "bundle " + spec.File, Dir: dirName, Manifest: raw, Size: m.Size()}
			if err := tx.CreateArchive(a); err != nil {
				return err
			}
			if err := x.lab.StartLease(tx, a.ID, spec.StorageLease); err != nil {
				return err
			}
			return x.lab.Commit(tx, op, nil)
		})
		if err != nil {
			return fail(err)
		}
		x.lab.FinishOp(op)
		x.log.Info("archive imported", "archive", m.Name, "file", spec.File, "bytes", m.Size())
		x.lab.Record(ctx, "import", m.Name, "from "+spec.File)
		return nil
	}), nil
}

// MapNetworks renames the manifest's networks by mapping (old -> new).
func (x *Archives) MapNetworks(m *bundle.Manifest, mapping map[string]string) error {
	known := map[string]bool{}
	for _, n := range m.Networks {
		known[n.Name] = true
	}
	for old, nw := range mapping {
		if !known[old] {
			return errdefs.Invalid("network mapping %s=%s: the bundle has no network %q", old, nw, old)
		}
		if err := x.lab.CheckName("network", nw); err != nil {
			return err
		}
	}
	rename := func(name string) string {
		if nw, ok := mapping[name]; ok {
			return nw
		}
		return name
	}
	seen := map[string]bool{}
	var nets []bundle.Network
	for _, n := range m.Networks {
		n.Name = rename(n.Name)
		if !seen[n.Name] { // two networks mapped onto one
			seen[n.Name] = true
			nets = append(nets, n)
		}
	}
	m.Networks = nets
	for i := range m.VMs {
		for j := range m.VMs[i].NICs {
			m.VMs[i].NICs[j].Network = rename(m.VMs[i].NICs[j].Network)
		}
	}
	return nil
}

// Extract streams the bundle's files into the new archive directory tmp
// (bundle.Extract), checks the disks are standalone qcow2 images, leaves
// the manifest beside them, and renames tmp to final: what an import runs
// before anything is recorded.
func (x *Archives) Extract(ctx context.Context, op *store.Op, head *bundle.Head, m *bundle.Manifest, tmp, final string, progress func(done, total int64)) error {
	if err := x.lab.Step(ctx, op, "extract"); err != nil {
		return err
	}
	if err := MakeDir(tmp); err != nil {
		return err
	}
	if err := bundle.Extract(ctx, head, tmp, progress); err != nil {
		return err
	}
	for _, vm := range m.VMs {
		for _, d := range vm.Disks {
			if err := x.lab.Step(ctx, op, "check"); err != nil {
				return err
			}
			if err := x.checkArchivedDisk(ctx, filepath.Join(tmp, d.File.Path), d); err != nil {
				return fmt.Errorf("VM %q disk %d: %w", vm.Name, d.Index, err)
			}
		}
	}
	if err := WriteManifest(tmp, m); err != nil {
		return err
	}
	if err := x.lab.Step(ctx, op, "commit"); err != nil {
		return err
	}
	if err := Publish(tmp, final); err != nil {
		return err
	}
	progress(head.Size, head.Size)
	return nil
}

// checkArchivedDisk refuses a disk from outside that would read other
// files, or whose size differs from the manifest's.
func (x *Archives) checkArchivedDisk(ctx context.Context, p string, d bundle.Disk) error {
	if sc, ok := x.disks.(standaloneChecker); ok {
		if err := sc.CheckStandalone(ctx, p); err != nil {
			return errdefs.Invalid("%s: %v", d.File.Path, err)
		}
	}
	info, err := x.disks.Info(ctx, p)
	if err != nil {
		return errdefs.Invalid("%s: %v", d.File.Path, err)
	}
	if info.Format != "qcow2" || info.BackingFile != "" {
		return errdefs.Invalid("%s: not a standalone qcow2 image", d.File.Path)
	}
	if info.VirtualSize != d.VirtualSize {
		return errdefs.Invalid("%s: virtual size %d, the manifest says %d", d.File.Path, info.VirtualSize, d.VirtualSize)
	}
	return nil
}

// Ensure the disk package keeps what imports use.
var _ standaloneChecker = (*disk.QemuImg)(nil)
