package lab

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"stagehand/internal/ipam"
	"stagehand/internal/jobs"
	"stagehand/internal/lab/archive"
	"stagehand/internal/lab/bundle"
	"stagehand/internal/lab/journal"
	"stagehand/internal/store"
)

// Bundles, their export and import, live in internal/lab/archive with the
// rest of the archives' operations; the lab gives them its locks, journal,
// leases, events, rules and a restore's records through archiveLab.

// ImportSpec is the input of StartImport.
type ImportSpec = archive.ImportSpec

// StartExport starts a job that writes archive name as a bundle at file
// (see archive.Archives.StartExport).
func (s Archives) StartExport(ctx context.Context, name, file string) (jobs.Job, error) {
	return s.archives.StartExport(ctx, name, file)
}

// StartImport checks a bundle's manifest and starts a job that imports it
// as a new archive (see archive.Archives.StartImport).
func (s Archives) StartImport(ctx context.Context, spec ImportSpec) (jobs.Job, error) {
	return s.archives.StartImport(ctx, spec)
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
	l.s.record(ctx, ObjectArchive, action, name, detail)
}

func (l archiveLab) Update(ctx context.Context, fn func(store.Tx) error) error {
	return l.s.update(ctx, fn)
}

func (l archiveLab) RestoreRecords(tx store.Tx, m *bundle.Manifest, config string, archiveID int64, layers, bootCopies map[string]string, storageLease *time.Duration) ([]string, error) {
	return l.s.restoreRecords(tx, m, config, archiveID, layers, bootCopies, storageLease)
}

func (archiveLab) NewLayerPath() string { return newLayerPath() }

func (archiveLab) NewBootPath(base string) string {
	return filepath.Join(filesDir, "t-"+journal.RandomHex(6)+"-"+base)
}

func (l archiveLab) RecordRestore(ctx context.Context, config, archive string) {
	l.s.record(ctx, ObjectConfig, "restore", config, "restored from archive "+archive)
}

func (archiveLab) CopyBootFile(ctx context.Context, src, dst string) error {
	return copyFile(ctx, src, dst, 0o400, maxBootFile)
}

func (archiveLab) CheckName(kind, name string) error      { return checkName(kind, name) }
func (archiveLab) CheckHostPath(p, why string) error      { return checkHostPath(p, why) }
func (archiveLab) CheckManifest(m *bundle.Manifest) error { return checkManifestRules(m) }
func (archiveLab) CheckLeaseLength(kind string, d *time.Duration) error {
	return checkLeaseLength(kind, d)
}
