// Package archive moves archives in and out of the lab: it makes an
// archive of a configuration, restores one as a new configuration, exports an archive as a bundle, imports a
// bundle as a new archive, and deletes one.
// It owns the archive directory's files; what only the lab knows (locks,
// the journal, leases, events, this server's rules) it asks through Lab.
package archive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"stagehand/internal/disk"
	"stagehand/internal/errdefs"
	"stagehand/internal/jobs"
	"stagehand/internal/lab/access"
	"stagehand/internal/lab/bundle"
	"stagehand/internal/lab/journal"
	"stagehand/internal/store"
)

// Lab is what archives ask of the lab.
type Lab interface {
	// Lock holds the names until the returned func is called.
	Lock(names ...string) (unlock func())
	// BeginOp journals an operation that creates the files (a directory
	// ends in a separator); Step runs before each of its steps (cancel
	// and the fault hook); Commit marks it committed inside tx, removing
	// remove once finished; FinishOp and FailOp end it.
	BeginOp(ctx context.Context, kind, subject string, created []string) (*store.Op, error)
	Step(ctx context.Context, op *store.Op, step string) error
	Commit(tx store.Tx, op *store.Op, remove []string) error
	FinishOp(op *store.Op) error
	FailOp(op *store.Op, err error) error
	// StartLease gives a new archive its storage lease inside tx; Touch
	// marks an archive used.
	StartLease(tx store.Tx, archiveID int64, d *time.Duration) error
	Touch(ctx context.Context, archive string)
	// Record tells the event log that action was done to archive.
	Record(ctx context.Context, action, archive, detail string)
	// This server's rules: names, lease lengths and a manifest from
	// outside (see bundle.ParseHead).
	CheckName(kind, name string) error
	CheckLeaseLength(kind string, d *time.Duration) error
	CheckManifest(m *bundle.Manifest) error
	// Update runs fn in a store transaction of the lab's (which forgets
	// the addresses it cached when fn fails).
	Update(ctx context.Context, fn func(store.Tx) error) error
	// RestoreRecords writes configuration config from manifest m inside
	// tx: templates made again, a layer per archived disk file, VMs and
	// their addresses, its snapshots, its storage lease, and archive
	// archiveID marked used (files: what the restore wrote). It returns
	// the boot file copies it did not need. NewLayerPath, NewStatePath and
	// NewBootPath name the files a restore writes (relative to the data
	// dir); RecordRestore tells the event log. The configuration goes
	// where place says, within its quotas.
	RestoreRecords(tx store.Tx, m *bundle.Manifest, config string, archiveID int64, files RestoreFiles, storageLease *time.Duration, place access.Placement) ([]string, error)
	NewLayerPath() string
	NewStatePath() string
	NewBootPath(base string) string
	RecordRestore(ctx context.Context, config, archive string)
	// CopyBootFile copies a template's boot file (kernel or initrd) to
	// dst, read-only, within the lab's size bound.
	CopyBootFile(ctx context.Context, src, dst string) error
	// SavedState names (relative to the data dir) the saved state of VM
	// vm of an undeployed configuration, when it is saved (undeploy
	// --save-state) and its file is there: what its next deploy resumes.
	SavedState(vm *store.VM) (string, bool)
	// PlaceSavedStates gives each saved state a committed restore copied
	// (VM name → its copy, relative) the name the restored VM's next
	// deploy resumes it from.
	PlaceSavedStates(ctx context.Context, config string, states map[string]string)
}

// Disks is what archives need of the disk tool. A tool that also has
// CheckStandalone and ConsolidateCompressed (disk.QemuImg) has imported
// disks checked and archived disks compressed with them.
//
// Snapshot trees travel as deltas on one another: ArchiveDelta writes a
// layer as a compressed delta on the point below it, backed by that
// point's archive file (by base name); ExpandDelta restores one onto the
// new layer of its backing file; CheckDelta checks one from elsewhere
// names exactly the backing file its manifest says.
type Disks interface {
	Consolidate(ctx context.Context, top, dst string, progress func(done, total int64)) error
	Info(ctx context.Context, path string) (disk.Info, error)
	SetReadOnly(path string, readOnly bool) error
	ArchiveDelta(ctx context.Context, top, parent, dst, backing string) error
	ExpandDelta(ctx context.Context, src, parent, dst string, progress func(done, total int64)) error
	CheckDelta(ctx context.Context, path, backing string) error
}

var _ Disks = (*disk.QemuImg)(nil)

type standaloneChecker interface {
	CheckStandalone(ctx context.Context, path string) error
}

// Config is what Archives run on.
type Config struct {
	Store store.Store
	Disks Disks
	Jobs  *jobs.Manager
	Dir   string // the archive storage, absolute
	// DataDir resolves the layer and boot file paths the store records.
	DataDir string
	Now     func() time.Time
	Lab     Lab
	Log     *slog.Logger
}

// Archives makes, restores, exports, imports and deletes archives.
type Archives struct {
	store   store.Store
	disks   Disks
	jobs    *jobs.Manager
	dir     string
	dataDir string
	now     func() time.Time
	lab     Lab
	log     *slog.Logger
}

// New returns Archives over cfg.
func New(cfg Config) *Archives {
	return &Archives{store: cfg.Store, disks: cfg.Disks, jobs: cfg.Jobs, dir: cfg.Dir, dataDir: cfg.DataDir, now: cfg.Now, lab: cfg.Lab, log: cfg.Log}
}

// DirOf is the absolute directory of archive a.
func (x *Archives) DirOf(a *store.Archive) string { return filepath.Join(x.dir, a.Dir) }

// NewDirName returns a fresh name for an archive directory.
func NewDirName() string { return "a-" + journal.RandomHex(8) }

// Delete deletes an archive and its directory.
func (x *Archives) Delete(ctx context.Context, name string) error {
	unlock := x.lab.Lock(name)
	defer unlock()
	var op *store.Op
	err := x.store.Update(ctx, func(tx store.Tx) error {
		a, err := tx.Archives().Get(name)
		if err != nil {
			return err
		}
		if err := tx.Archives().Delete(a.ID); err != nil {
			return err
		}
		op = &store.Op{Kind: "delete-archive", Subject: name}
		if err := tx.Ops().Create(op); err != nil {
			return err
		}
		return x.lab.Commit(tx, op, []string{journal.DirEntry(x.DirOf(a))})
	})
	if err != nil {
		return fmt.Errorf("delete archive %q: %w", name, err)
	}
	x.log.Info("archive deleted", "archive", name)
	x.lab.Record(ctx, "delete", name, "")
	return x.lab.FinishOp(op)
}

// CheckNetworksExist refuses a manifest naming a network this server does
// not have.
func CheckNetworksExist(tx store.Tx, m *bundle.Manifest) error {
	var missing []string
	for _, n := range m.Networks {
		if _, err := tx.Networks().Get(n.Name); errors.Is(err, errdefs.ErrNotFound) {
			missing = append(missing, n.Name)
		} else if err != nil {
			return err
		}
	}
	if len(missing) > 0 {
		return errdefs.NotFound("network(s) %s do not exist on this server: create them, or map them to networks that do", strings.Join(missing, ", "))
	}
	return nil
}

// MakeDir creates an archive directory being written and its
// subdirectories, private to the daemon (archives hold guest data).
func MakeDir(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	for _, sub := range []string{"disks", "boot", "states"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil {
			return err
		}
	}
	return nil
}

// Publish makes the complete archive directory tmp durable and gives it
// its name; both names are journaled, so a crash on either side of the
// rename leaves nothing once recovered.
func Publish(tmp, final string) error {
	if err := SyncPaths(tmp, filepath.Join(tmp, "disks"), filepath.Join(tmp, "boot"), filepath.Join(tmp, "states")); err != nil {
		return err
	}
	if _, err := os.Lstat(final); err == nil {
		return fmt.Errorf("archive directory %s: %w", final, os.ErrExist)
	}
	if err := os.Rename(tmp, final); err != nil {
		return err
	}
	return SyncPaths(filepath.Dir(final))
}

// WriteManifest leaves the manifest beside the files, so an archive
// directory describes itself even without the store.
func WriteManifest(dir string, m *bundle.Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	p := filepath.Join(dir, bundle.ManifestName)
	if err := os.WriteFile(p, append(b, '\n'), 0o400); err != nil {
		return err
	}
	return SyncPaths(p)
}

// SyncPaths fsyncs each path (files or directories).
func SyncPaths(paths ...string) error {
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return fmt.Errorf("sync %s: %w", p, err)
		}
	}
	return nil
}
