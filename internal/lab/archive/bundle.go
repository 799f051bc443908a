package archive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"time"

	"stagehand/internal/disk"
	"stagehand/internal/errdefs"
	"stagehand/internal/jobs"
	"stagehand/internal/lab/access"
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
// equal to its checksum, and every disk is a standalone qcow2 (or, for a
// snapshot's layer, a delta naming exactly the archive file its manifest
// says, checked after that file). Anything
// else fails the import, and the directory is removed: nothing is left
// behind.

// Export writes archive name as a bundle to w: a stream to the caller (a
// download), never a file on the daemon's host. The archive's files are
// opened first, under its lock, which is then released: deleting the
// archive meanwhile does not cut the stream, and a slow reader holds no
// lock. Each file's size and checksum are checked on the way, so a damaged
// archive fails the stream rather than being exported.
func (x *Archives) Export(ctx context.Context, name string, w io.Writer) error {
	files, raw, m, err := x.openForExport(ctx, name)
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	if err != nil {
		return fmt.Errorf("export %q: %w", name, err)
	}
	open := func(mf *bundle.File) (io.ReadCloser, error) {
		f := files[mf.Path]
		delete(files, mf.Path) // WriteFrom closes it
		if f == nil {
			return nil, fmt.Errorf("%s: not opened", mf.Path)
		}
		return f, nil
	}
	if err := bundle.WriteFrom(ctx, w, raw, m, open, func(done, total int64) {}); err != nil {
		x.log.Info("archive export ended early", "archive", name, "err", err)
		return fmt.Errorf("export %q: %w", name, err)
	}
	x.log.Info("archive exported", "archive", name, "bytes", m.Size())
	x.lab.Touch(ctx, name)
	x.lab.Record(ctx, "export", name, "downloaded")
	return nil
}

// openForExport opens every file of archive name, under its lock.
func (x *Archives) openForExport(ctx context.Context, name string) (map[string]*os.File, []byte, *bundle.Manifest, error) {
	unlock := x.lab.Lock(name)
	defer unlock()
	var a *store.Archive
	err := x.store.View(ctx, func(tx store.Tx) error {
		var err error
		a, err = tx.Archives().Get(name)
		return err
	})
	if err != nil {
		return nil, nil, nil, err
	}
	m, err := bundle.Parse(a.Manifest)
	if err != nil {
		return nil, nil, nil, err
	}
	files := map[string]*os.File{}
	for _, mf := range m.Files() {
		f, err := os.Open(filepath.Join(x.DirOf(a), mf.Path))
		if err != nil {
			return files, nil, nil, fmt.Errorf("archive file %s: %w", mf.Path, err)
		}
		files[mf.Path] = f
	}
	return files, a.Manifest, m, nil
}

// ImportSpec is the input of StartImport.
type ImportSpec struct {
	// File is the bundle, opened once by the lab (an upload, or a file
	// the system administrator named); Source names it in the archive's
	// source and in messages. StartImport owns it: it closes it and calls
	// Release (when set) once the import is over, whatever its outcome.
	File    *os.File
	Source  string
	Release func()
	Name    string // the new archive's name; "" keeps the bundle's
	// MapNetwork maps the bundle's network names to this server's; networks
	// not in it keep their names.
	MapNetwork map[string]string
	// StorageLease is the archive's storage lease from its import: nil
	// means the daemon's default (LeasePolicy.DefaultStorage), 0 never.
	StorageLease *time.Duration
	// Place is the archive's workspace and owner, decided by the lab.
	Place access.Placement
}

// StartImport checks a bundle's manifest and starts a job that imports it
// as a new archive (see the top of this file).
func (x *Archives) StartImport(ctx context.Context, spec ImportSpec) (jobs.Job, error) {
	started := false
	done := func() {
		spec.File.Close()
		if spec.Release != nil {
			spec.Release()
		}
	}
	defer func() {
		if !started {
			done()
		}
	}()
	if err := x.lab.CheckLeaseLength("storage", spec.StorageLease); err != nil {
		return jobs.Job{}, fmt.Errorf("import %s: %w", spec.Source, err)
	}
	head, err := bundle.ReadHeadFrom(spec.File, x.lab.CheckManifest)
	if err != nil {
		return jobs.Job{}, fmt.Errorf("import %s: %w", spec.Source, err)
	}
	m := head.Manifest
	if spec.Name != "" {
		m.Name = spec.Name
	}
	if err := x.lab.CheckName("archive", m.Name); err != nil {
		return jobs.Job{}, fmt.Errorf("import %s: %w", spec.Source, err)
	}
	if err := x.MapNetworks(m, spec.MapNetwork); err != nil {
		return jobs.Job{}, fmt.Errorf("import %s: %w", spec.Source, err)
	}
	unlock := x.lab.Lock(m.Name)
	err = x.store.View(ctx, func(tx store.Tx) error {
		if _, err := tx.Archives().Get(m.Name); err == nil {
			return errdefs.Conflict("archive %q already exists; import the bundle under another name", m.Name)
		} else if !errors.Is(err, errdefs.ErrNotFound) {
			return err
		}
		return CheckNetworksExist(tx, m)
	})
	if err != nil {
		unlock()
		return jobs.Job{}, fmt.Errorf("import %s: %w", spec.Source, err)
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
		return jobs.Job{}, fmt.Errorf("import %s: %w", spec.Source, err)
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
		defer done()
		fail := func(err error) error {
			return x.lab.FailOp(op, fmt.Errorf("import %s: %w", spec.Source, err))
		}
		if err := x.Extract(ctx, op, head, m, tmp, dir, progress); err != nil {
			return fail(err)
		}
		err := x.store.Update(ctx, func(tx store.Tx) error {
			a := &store.Archive{Name: m.Name, Source: "bundle " + spec.Source, Dir: dirName, Manifest: raw, Size: m.Size(), WorkspaceID: spec.Place.WorkspaceID, OwnerID: spec.Place.OwnerID}
			if err := tx.Archives().Create(a); err != nil {
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
		x.log.Info("archive imported", "archive", m.Name, "source", spec.Source, "bytes", m.Size())
		x.lab.Record(ctx, "import", m.Name, "from "+spec.Source)
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
	for i, vm := range m.VMs {
		for j, d := range vm.Disks {
			// A backing file before the deltas on it: each is checked
			// before anything reads through it.
			for _, f := range m.DiskFiles(i, j) {
				if err := x.lab.Step(ctx, op, "check"); err != nil {
					return err
				}
				if err := x.checkArchivedDisk(ctx, filepath.Join(tmp, f.Path), f, d.VirtualSize); err != nil {
					return fmt.Errorf("VM %q disk %d: %w", vm.Name, d.Index, err)
				}
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

// checkArchivedDisk refuses a disk file f from outside (at p) that would
// read other files than the manifest says (a standalone one any, a delta
// any but its backing file, beside it in the archive), or whose size
// differs from the manifest's vsize.
func (x *Archives) checkArchivedDisk(ctx context.Context, p string, f *bundle.File, vsize int64) error {
	if f.Backing == "" {
		if sc, ok := x.disks.(standaloneChecker); ok {
			if err := sc.CheckStandalone(ctx, p); err != nil {
				return errdefs.Invalid("%s: %v", f.Path, err)
			}
		}
	} else {
		if err := x.disks.CheckDelta(ctx, p, path.Base(f.Backing)); err != nil {
			return errdefs.Invalid("%s: %v", f.Path, err)
		}
	}
	info, err := x.disks.Info(ctx, p)
	if err != nil {
		return errdefs.Invalid("%s: %v", f.Path, err)
	}
	switch {
	case f.Backing == "" && (info.Format != "qcow2" || info.BackingFile != ""):
		return errdefs.Invalid("%s: not a standalone qcow2 image", f.Path)
	case f.Backing != "" && (info.Format != "qcow2" || info.BackingFile != filepath.Join(filepath.Dir(p), path.Base(f.Backing))):
		return errdefs.Invalid("%s: not a qcow2 delta on %s", f.Path, f.Backing)
	}
	if info.VirtualSize != vsize {
		return errdefs.Invalid("%s: virtual size %d, the manifest says %d", f.Path, info.VirtualSize, vsize)
	}
	return nil
}

// Ensure the disk package keeps what imports use.
var _ standaloneChecker = (*disk.QemuImg)(nil)
