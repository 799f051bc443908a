package lab

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
	"stagehand/internal/ipam"
	"stagehand/internal/jobs"
	"stagehand/internal/lab/bundle"
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
func (s *Service) StartExport(ctx context.Context, name, file string) (jobs.Job, error) {
	if err := checkHostPath(file, "the daemon writes it"); err != nil {
		return jobs.Job{}, fmt.Errorf("export %q: %w", name, err)
	}
	file = filepath.Clean(file)
	if _, err := os.Lstat(file); err == nil {
		return jobs.Job{}, errdefs.Conflict("export %q: %s already exists", name, file)
	}
	if st, err := os.Stat(filepath.Dir(file)); err != nil || !st.IsDir() {
		return jobs.Job{}, errdefs.Invalid("export %q: directory %s does not exist", name, filepath.Dir(file))
	}
	unlock := s.locks.lock(name)
	var a *store.Archive
	err := s.store.View(ctx, func(tx store.Tx) error {
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
	tmp := filepath.Join(filepath.Dir(file), "."+filepath.Base(file)+"."+randomHex(6)+".tmp")
	op, err := s.beginOp(ctx, "export", name, []string{tmp}, nil)
	if err != nil {
		unlock()
		return jobs.Job{}, err
	}
	dir := s.archiveDirOf(a)
	return s.jobs.StartFrom(ctx, "export", name, func(ctx context.Context, progress func(done, total int64)) error {
		defer unlock()
		if err := s.writeBundleFile(ctx, op, tmp, file, a.Manifest, m, dir, progress); err != nil {
			return s.failOp(op, fmt.Errorf("export %q to %s: %w", name, file, err))
		}
		s.finishOp(op) // the temporary name is gone: nothing to undo
		s.log.Info("archive exported", "archive", name, "file", file, "bytes", m.Size())
		s.touch(ctx, ObjectArchive, name)
		s.record(ctx, ObjectArchive, "export", name, "to "+file)
		return nil
	}), nil
}

func (s *Service) writeBundleFile(ctx context.Context, op *store.Op, tmp, file string, raw []byte, m *bundle.Manifest, dir string, progress func(done, total int64)) error {
	if err := s.step(ctx, op, "write"); err != nil {
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
	if err := s.step(ctx, op, "publish"); err != nil {
		return err
	}
	if _, err := os.Lstat(file); err == nil {
		return errdefs.Conflict("%s appeared meanwhile", file)
	}
	if err := os.Rename(tmp, file); err != nil {
		return err
	}
	return syncDirs(filepath.Dir(file))
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
func (s *Service) StartImport(ctx context.Context, spec ImportSpec) (jobs.Job, error) {
	if err := checkHostPath(spec.File, "the daemon reads it"); err != nil {
		return jobs.Job{}, fmt.Errorf("import: %w", err)
	}
	if err := checkLeaseLength("storage", spec.StorageLease); err != nil {
		return jobs.Job{}, fmt.Errorf("import %s: %w", spec.File, err)
	}
	head, err := bundle.ReadHead(spec.File, checkManifestRules)
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
	if err := checkName("archive", m.Name); err != nil {
		return jobs.Job{}, fmt.Errorf("import %s: %w", spec.File, err)
	}
	if err := mapNetworks(m, spec.MapNetwork); err != nil {
		return jobs.Job{}, fmt.Errorf("import %s: %w", spec.File, err)
	}
	unlock := s.locks.lock(m.Name)
	err = s.store.View(ctx, func(tx store.Tx) error {
		if _, err := tx.GetArchive(m.Name); err == nil {
			return errdefs.Conflict("archive %q already exists; import the bundle under another name", m.Name)
		} else if !errors.Is(err, errdefs.ErrNotFound) {
			return err
		}
		return checkNetworksExist(tx, m)
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
	if err := disk.CheckSpace(s.life.archiveDir, m.Size()); err != nil {
		unlock()
		return jobs.Job{}, fmt.Errorf("import %s: %w", spec.File, err)
	}
	dirName := "a-" + randomHex(8)
	dir := filepath.Join(s.life.archiveDir, dirName)
	tmp := disk.TempPath(dir)
	op, err := s.beginOp(ctx, "archive-import", m.Name, []string{dirEntry(tmp), dirEntry(dir)}, nil)
	if err != nil {
		unlock()
		return jobs.Job{}, err
	}
	started = true
	return s.jobs.StartFrom(ctx, "import", m.Name, func(ctx context.Context, progress func(done, total int64)) error {
		defer unlock()
		defer head.File.Close()
		fail := func(err error) error {
			return s.failOp(op, fmt.Errorf("import %s: %w", spec.File, err))
		}
		if err := s.extractBundle(ctx, op, head, m, tmp, dir, progress); err != nil {
			return fail(err)
		}
		err := s.store.Update(ctx, func(tx store.Tx) error {
			a := &store.Archive{Name: m.Name, Source: "bundle " + spec.File, Dir: dirName, Manifest: raw, Size: m.Size()}
			if err := tx.CreateArchive(a); err != nil {
				return err
			}
			if err := s.leases.started(tx, archiveLease(a.ID), spec.StorageLease); err != nil {
				return err
			}
			return commitOp(tx, op, nil)
		})
		if err != nil {
			return fail(err)
		}
		s.finishOp(op)
		s.log.Info("archive imported", "archive", m.Name, "file", spec.File, "bytes", m.Size())
		s.record(ctx, ObjectArchive, "import", m.Name, "from "+spec.File)
		return nil
	}), nil
}

// checkManifestRules applies this server's rules to a manifest from
// outside (see bundle.ParseHead), whose shape bundle.Check has checked: valid names, texts within
// the bounds of what users type, hardware in range, kernel command lines,
// boot files of a sane size, network parameters that parse, known IP
// modes.
func checkManifestRules(m *bundle.Manifest) error {
	if err := checkName("archive", m.Name); err != nil {
		return err
	}
	// The same rules as the text a user types: these end up in tables.
	for _, f := range []struct {
		field, text string
		max         int
	}{{"description", m.Description, MaxDescription}, {"owner", m.Owner, MaxOwner}, {"source", m.Source, MaxDescription}} {
		if err := checkText(f.field, f.text, f.max); err != nil {
			return err
		}
	}
	for _, n := range m.Networks {
		if err := checkName("network", n.Name); err != nil {
			return err
		}
		if _, err := ipam.ParseNetwork(n.Subnet, n.Gateway, n.Pools, n.DNS); err != nil {
			return fmt.Errorf("network %q: %w", n.Name, err)
		}
	}
	for _, t := range m.Templates {
		if err := checkName("template", t.Name); err != nil {
			return err
		}
		if t.CPUs < 1 || t.CPUs > 64 || t.MemoryMiB < 16 || t.MemoryMiB > 1<<20 {
			return fmt.Errorf("template %q: hardware out of range", t.Name)
		}
		if err := checkCmdline(t.Cmdline); err != nil {
			return fmt.Errorf("template %q: %w", t.Name, err)
		}
		for _, f := range []*bundle.File{t.Kernel, t.Initrd} {
			if f != nil && (f.Size > maxBootFile || f.Size == 0) {
				return fmt.Errorf("template %q: boot file %q of %d bytes (want 1..%d)", t.Name, f.Path, f.Size, int64(maxBootFile))
			}
		}
	}
	for _, vm := range m.VMs {
		if err := checkName("VM", vm.Name); err != nil {
			return err
		}
		if vm.CPUs < 1 || vm.CPUs > 64 || vm.MemoryMiB < 16 || vm.MemoryMiB > 1<<20 {
			return fmt.Errorf("VM %q: hardware out of range", vm.Name)
		}
		for _, n := range vm.NICs {
			switch n.IPMode {
			case store.IPModePool, store.IPModeManual, store.IPModeDHCP:
			default:
				return fmt.Errorf("VM %q NIC %d: IP mode %q", vm.Name, n.Index, n.IPMode)
			}
		}
	}
	return nil
}

// mapNetworks renames the manifest's networks by mapping (old -> new).
func mapNetworks(m *bundle.Manifest, mapping map[string]string) error {
	known := map[string]bool{}
	for _, n := range m.Networks {
		known[n.Name] = true
	}
	for old, nw := range mapping {
		if !known[old] {
			return errdefs.Invalid("network mapping %s=%s: the bundle has no network %q", old, nw, old)
		}
		if err := checkName("network", nw); err != nil {
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

// extractBundle streams the bundle's files into the new archive directory
// tmp (bundle.Extract), checks the disks are standalone qcow2 images,
// leaves the manifest beside them, and renames tmp to final.
func (s *Service) extractBundle(ctx context.Context, op *store.Op, head *bundle.Head, m *bundle.Manifest, tmp, final string, progress func(done, total int64)) error {
	if err := s.step(ctx, op, "extract"); err != nil {
		return err
	}
	if err := makeArchiveDir(tmp); err != nil {
		return err
	}
	if err := bundle.Extract(ctx, head, tmp, progress); err != nil {
		return err
	}
	for _, vm := range m.VMs {
		for _, d := range vm.Disks {
			if err := s.step(ctx, op, "check"); err != nil {
				return err
			}
			if err := s.checkArchivedDisk(ctx, filepath.Join(tmp, d.File.Path), d); err != nil {
				return fmt.Errorf("VM %q disk %d: %w", vm.Name, d.Index, err)
			}
		}
	}
	if err := writeManifestFile(tmp, m); err != nil {
		return err
	}
	if err := s.step(ctx, op, "commit"); err != nil {
		return err
	}
	if err := publishArchiveDir(tmp, final); err != nil {
		return err
	}
	progress(head.Size, head.Size)
	return nil
}

// checkArchivedDisk refuses a disk from outside that would read other
// files, or whose size differs from the manifest's.
func (s *Service) checkArchivedDisk(ctx context.Context, p string, d bundle.Disk) error {
	if ad, ok := s.disks.(archiveDisks); ok {
		if err := ad.CheckStandalone(ctx, p); err != nil {
			return errdefs.Invalid("%s: %v", d.File.Path, err)
		}
	}
	info, err := s.disks.Info(ctx, p)
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
