package lab

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"stagehand/internal/auth"
	"stagehand/internal/errdefs"
	"stagehand/internal/ipam"
	"stagehand/internal/jobs"
	"stagehand/internal/lab/access"
	"stagehand/internal/lab/archive"
	"stagehand/internal/lab/bundle"
	"stagehand/internal/lab/deploy"
	"stagehand/internal/lab/journal"
	"stagehand/internal/store"
)

// Bundles, their export and import, live in internal/lab/archive with the
// rest of the archives' operations; the lab gives them its locks, journal,
// leases, events, rules and a restore's records through archiveLab.

// ImportSpec is the input of StartImport.
type ImportSpec struct {
	// The bundle: an upload (Uploads.Receive), which StartImport closes
	// once the import is over, or a file on the daemon's host, which only
	// the system administrator on the unix socket may name, under an
	// import directory (see sources.go).
	Upload *Upload
	File   string
	Name   string // the new archive's name; "" keeps the bundle's
	// MapNetwork maps the bundle's network names to this server's; networks
	// not in it keep their names.
	MapNetwork map[string]string
	// StorageLease is the archive's storage lease from its import: nil
	// means the daemon's default (LeasePolicy.DefaultStorage), 0 never.
	StorageLease *time.Duration
	// Workspace is where the archive goes ("ws" or "org/ws"); "" is the
	// caller's default workspace, else default/main.
	Workspace string
}

// Export writes archive name as a bundle to w, a stream to the caller
// (see archive.Archives.Export): the daemon writes no file for it.
func (s Archives) Export(ctx context.Context, name string, w io.Writer) error {
	return s.archives.Export(ctx, name, w)
}

// StartImport checks a bundle's manifest and starts a job that imports it
// as a new archive (see archive.Archives.StartImport).
func (s Archives) StartImport(ctx context.Context, spec ImportSpec) (jobs.Job, error) {
	// A caller who may not name a path is told to upload, whatever else.
	if spec.File != "" {
		if err := s.mayNamePaths(ctx, "the bundle to import"); err != nil {
			if spec.Upload != nil {
				spec.Upload.Close()
			}
			return jobs.Job{}, fmt.Errorf("import: %w", err)
		}
	}
	as := archive.ImportSpec{Name: spec.Name, MapNetwork: spec.MapNetwork, StorageLease: spec.StorageLease}
	switch {
	case spec.Upload != nil && spec.File != "":
		spec.Upload.Close()
		return jobs.Job{}, errdefs.Invalid("import: give the bundle as a path or as an upload, not both")
	case spec.Upload != nil:
		as.File, as.Source, as.Release = spec.Upload.file, "upload "+spec.Upload.Name, spec.Upload.Close
	case spec.File == "":
		return jobs.Job{}, errdefs.Invalid("import: no bundle given")
	default:
		f, _, err := s.openHostSource(ctx, spec.File, "the bundle to import")
		if err != nil {
			return jobs.Job{}, fmt.Errorf("import %s: %w", spec.File, err)
		}
		as.File, as.Source = f, spec.File
	}
	place, err := s.placer.place(ctx, auth.ArchiveImport, access.KindArchive, spec.Workspace, 0)
	if err != nil {
		as.File.Close()
		if as.Release != nil {
			as.Release()
		}
		return jobs.Job{}, fmt.Errorf("import %s: %w", as.Source, err)
	}
	as.Place = place
	return s.archives.StartImport(ctx, as)
}

// DeleteArchive deletes an archive and its directory.
func (s Archives) Delete(ctx context.Context, name string) error {
	return s.archives.Delete(ctx, name)
}

// checkManifestRules applies this server's rules to a manifest from
// outside (see bundle.ParseHead), whose shape bundle.Check has checked: valid names, texts within
// the bounds of what users type, hardware in range, kernel command lines,
// boot files of a sane size, network parameters that parse, known IP
// modes.
func checkManifestRules(m *bundle.Manifest) error {
	if err := CheckName("archive", m.Name); err != nil {
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
		if err := CheckName("network", n.Name); err != nil {
			return err
		}
		if _, err := ipam.ParseNetwork(n.Subnet, n.Gateway, n.Pools, n.DNS); err != nil {
			return fmt.Errorf("network %q: %w", n.Name, err)
		}
	}
	for _, t := range m.Templates {
		if err := CheckName("template", t.Name); err != nil {
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
	for _, sn := range m.Snapshots {
		if err := CheckName("snapshot", sn.Name); err != nil {
			return err
		}
	}
	for _, vm := range m.VMs {
		if err := CheckName("VM", vm.Name); err != nil {
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

// archiveLab is what archives ask of the lab: its locks, journal, leases,
// events and rules.
type archiveLab struct{ s *core }

func (l archiveLab) Lock(names ...string) func() { return l.s.locks.lock(names...) }

func (l archiveLab) BeginOp(ctx context.Context, kind, subject string, created []string) (*store.Op, error) {
	return l.s.journal.Begin(ctx, kind, subject, created, nil)
}

func (l archiveLab) Step(ctx context.Context, op *store.Op, step string) error {
	return l.s.journal.Step(ctx, op, step)
}

func (l archiveLab) Commit(tx store.Tx, op *store.Op, remove []string) error {
	return journal.Commit(tx, op, remove)
}

func (l archiveLab) FinishOp(op *store.Op) error          { return l.s.journal.Finish(op) }
func (l archiveLab) FailOp(op *store.Op, err error) error { return l.s.journal.Fail(op, err) }

func (l archiveLab) StartLease(tx store.Tx, archiveID int64, d *time.Duration) error {
	return l.s.leases.started(tx, archiveLease(archiveID), d)
}

func (l archiveLab) Touch(ctx context.Context, name string) { l.s.touch(ctx, ObjectArchive, name) }

func (l archiveLab) Record(ctx context.Context, action, name, detail string) {
	l.s.events.record(ctx, ObjectArchive, action, name, detail)
}

func (l archiveLab) Update(ctx context.Context, fn func(store.Tx) error) error {
	return l.s.update(ctx, fn)
}

func (l archiveLab) RestoreRecords(tx store.Tx, m *bundle.Manifest, config string, archiveID int64, files archive.RestoreFiles, storageLease *time.Duration, place access.Placement) ([]string, error) {
	return restores{l.s}.restoreRecords(tx, m, config, archiveID, files, storageLease, place)
}

func (archiveLab) NewLayerPath() string { return newLayerPath() }

// NewStatePath names a restored snapshot's state, where snapshots keep
// theirs.
func (archiveLab) NewStatePath() string {
	return filepath.Join(snapshotsDir, "r-"+journal.RandomHex(8)+".state")
}

func (archiveLab) NewBootPath(base string) string {
	return filepath.Join(filesDir, "t-"+journal.RandomHex(6)+"-"+base)
}

func (l archiveLab) RecordRestore(ctx context.Context, config, archive string) {
	l.s.events.record(ctx, ObjectConfig, "restore", config, "restored from archive "+archive)
}

func (archiveLab) CopyBootFile(ctx context.Context, src, dst string) error {
	return copyFile(ctx, src, dst, 0o400, maxBootFile)
}

// SavedState is the file VM vm resumes from at its next deploy, when it
// is saved and the file is there (deploy.StateFile).
func (l archiveLab) SavedState(vm *store.VM) (string, bool) {
	if vm.State != VMStateSaved || !l.s.deploys.HasSavedState(vm.ID) {
		return "", false
	}
	return deploy.StateFile(vm.ID), true
}

// PlaceSavedStates renames each saved state a committed restore of config
// copied (VM name → its copy) to its VM's deploy.StateFile, as an instant
// copy's states are placed (placeStates: a failure is logged, and that VM
// boots instead of resuming).
func (l archiveLab) PlaceSavedStates(ctx context.Context, config string, states map[string]string) {
	if len(states) == 0 {
		return
	}
	var c *store.Config
	err := l.s.store.View(ctx, func(tx store.Tx) error {
		var err error
		c, err = tx.Configs().Get(config)
		return err
	})
	if err != nil {
		l.s.log.Error("find a restored configuration; its saved VMs will boot instead of resuming", "config", config, "err", err)
		return
	}
	byIndex := map[int]string{}
	for vi, vm := range c.VMs {
		if f, ok := states[vm.Name]; ok {
			byIndex[vi] = f
		}
	}
	instantClones{l.s}.placeStates(c, byIndex)
}

func (archiveLab) CheckName(kind, name string) error      { return CheckName(kind, name) }
func (archiveLab) CheckManifest(m *bundle.Manifest) error { return checkManifestRules(m) }
func (archiveLab) CheckLeaseLength(kind string, d *time.Duration) error {
	return checkLeaseLength(kind, d)
}
