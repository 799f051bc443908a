// Package journal is the lab's operation journal: the intent of a
// file-touching operation is written before its files, so that a failure or
// a crash at any step is rolled back (or, once committed, forward).
package journal

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"stagehand/internal/disk"
	"stagehand/internal/errdefs"
	"stagehand/internal/store"
)

// An operation that touches files follows one protocol, so that a failure
// at any step, or a crash of the daemon, leaves store and disk in agreement:
//
//  1. Begin writes a journal entry naming every file it will create and
//     every file it will freeze, before touching any.
//  2. The steps create and freeze files.
//  3. One store transaction applies every record change and marks the entry
//     committed (Commit), listing the files that are now unreferenced.
//  4. Finish removes those files and deletes the entry.
//
// A failure before 3 calls Fail (remove created files, unfreeze frozen
// ones, delete the entry); Recover does the same for entries a crash left
// behind, and rolls committed ones forward with Finish.
//
// Files are written under a temporary name first (disk.TempPath: ".NAME.tmp"
// beside NAME) and renamed when complete. Begin journals that name with
// each file, so a crash in the middle of a long write (a full clone's
// qemu-img convert) leaves nothing the journal does not name.

// Freezer makes layer files read-only or writable again (the lab's disks).
type Freezer interface {
	SetReadOnly(path string, readOnly bool) error
}

// Config is what a Journal works with.
type Config struct {
	Store   store.Store
	Disks   Freezer
	DataDir string // relative paths in entries are below it
	// Host is this daemon's host: its entries carry it, and it recovers
	// only its own (and those of no host).
	Host string
	Log  *slog.Logger
	// FailAt, when set, is called before every step; a non-nil error
	// fails that step (see FaultHook).
	FailAt func(op, step string) error
	// OnFailure is told of every failed operation, before its rollback
	// (the lab records a failure event).
	OnFailure func(ctx context.Context, op *store.Op, err error)
}

// Journal runs the protocol above. It is safe for concurrent use.
type Journal struct{ c Config }

// New returns the journal over c.
func New(c Config) *Journal {
	if c.Log == nil {
		c.Log = slog.Default()
	}
	return &Journal{c: c}
}

// Begin records the intent of an operation. created and frozen are paths
// relative to the data dir (or absolute, outside it); created gets the
// temporary name of each file added.
func (j *Journal) Begin(ctx context.Context, kind, subject string, created, frozen []string) (*store.Op, error) {
	op := &store.Op{Kind: kind, Subject: subject, CreatedFiles: withTempPaths(created), FrozenFiles: frozen, Host: j.c.Host}
	if err := j.c.Store.Update(ctx, func(tx store.Tx) error { return tx.Ops().Create(op) }); err != nil {
		return nil, fmt.Errorf("%s %q: write journal: %w", kind, subject, err)
	}
	return op, nil
}

// Commit marks op committed inside the transaction that applies its
// record changes; remove lists files that are no longer referenced.
func Commit(tx store.Tx, op *store.Op, remove []string) error {
	op.Committed = true
	op.RemoveFiles = remove
	return tx.Ops().Update(op)
}

// Step is called before every step of a journalled operation: it honours
// cancellation and the test hook that fails chosen steps.
func (j *Journal) Step(ctx context.Context, op *store.Op, name string) error {
	return j.Fault(ctx, op.Kind, name)
}

// Fault is called before every named step of a multi-step operation,
// journalled or not (deploy and undeploy change processes and links, not
// files): it honours cancellation and Config.FailAt.
func (j *Journal) Fault(ctx context.Context, op, step string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if j.c.FailAt != nil {
		if err := j.c.FailAt(op, step); err != nil {
			return fmt.Errorf("step %s: %w", step, err)
		}
	}
	return nil
}

// withTempPaths returns files with the temporary name of each regular file
// added after it. Directories (a trailing separator) go with their
// contents, and names that already are temporary get none.
func withTempPaths(files []string) []string {
	out := make([]string, 0, 2*len(files))
	seen := map[string]bool{}
	add := func(f string) {
		if !seen[f] {
			seen[f] = true
			out = append(out, f)
		}
	}
	for _, f := range files {
		add(f)
		if !strings.HasSuffix(f, string(filepath.Separator)) && !disk.IsTempName(filepath.Base(f)) {
			add(disk.TempPath(f))
		}
	}
	return out
}

// RandomHex returns n random bytes as hex, for the names of new files
// (layers, boot files, archive directories, temporary files).
func RandomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return hex.EncodeToString(b)
}

// FileFailure is a file an undo could not remove or unfreeze.
type FileFailure struct {
	Path string
	Err  error
}

func joinFailures(fs []FileFailure) error {
	errs := make([]error, len(fs))
	for i, f := range fs {
		errs[i] = f.Err
	}
	return errors.Join(errs...)
}

// Abs turns a path as the store and the journal record it into an
// absolute one: relative paths are below dataDir; archive files, outside
// it, are recorded absolute.
func Abs(dataDir, rel string) string {
	if filepath.IsAbs(rel) {
		return rel
	}
	return filepath.Join(dataDir, rel)
}

// Rel turns an absolute path inside dataDir into the relative one the
// store records (any other path is kept as it is).
func Rel(dataDir, abs string) string {
	r, err := filepath.Rel(dataDir, abs)
	if err != nil {
		return abs
	}
	return r
}

// DirEntry is the entry of a directory an operation makes: its path with a
// trailing separator, removed with everything in it.
func DirEntry(abs string) string { return abs + string(filepath.Separator) }

func (j *Journal) abs(rel string) string { return Abs(j.c.DataDir, rel) }

// UndoFiles removes op's created files, with every temporary file made for
// them (journalled or not: an entry written by an older daemon names none),
// and unfreezes its frozen files. It returns what it could not do.
func (j *Journal) UndoFiles(op *store.Op) []FileFailure {
	var failed []FileFailure
	listed := map[string][]os.DirEntry{}
	list := func(dir string) []os.DirEntry {
		es, ok := listed[dir]
		if !ok {
			es, _ = os.ReadDir(dir)
			listed[dir] = es
		}
		return es
	}
	for _, f := range op.CreatedFiles {
		for _, p := range append([]string{j.abs(f)}, tempSiblings(j.abs(f), list)...) {
			if err := removeFile(p); err != nil {
				failed = append(failed, FileFailure{p, err})
			}
		}
	}
	for _, f := range op.FrozenFiles {
		if err := j.c.Disks.SetReadOnly(j.abs(f), false); err != nil && !Gone(err) {
			failed = append(failed, FileFailure{j.abs(f), fmt.Errorf("unfreeze %s: %w", f, err)})
		}
	}
	return failed
}

// rollback undoes an uncommitted operation. It is idempotent: files that
// are already gone are fine. The journal entry is kept when a file could
// not be removed, so that the next Recover or doctor --repair tries again.
// It uses its own context so that a cancelled request still cleans up.
func (j *Journal) rollback(op *store.Op) error {
	err := joinFailures(j.UndoFiles(op))
	if err == nil {
		err = j.Forget(op)
	}
	if err != nil {
		j.c.Log.Error("rollback incomplete; doctor will report it", "op", op.Kind, "subject", op.Subject, "err", err)
	} else {
		j.c.Log.Info("rolled back", "op", op.Kind, "subject", op.Subject)
	}
	return err
}

// Forget deletes op's journal entry. An entry already gone (cleared by a
// doctor --repair meanwhile) is fine.
func (j *Journal) Forget(op *store.Op) error {
	ctx := context.WithoutCancel(context.Background())
	err := j.c.Store.Update(ctx, func(tx store.Tx) error { return tx.Ops().Delete(op.ID) })
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil
	}
	return err
}

// ReleaseFiles removes the files a committed operation released.
func (j *Journal) ReleaseFiles(op *store.Op) []FileFailure {
	var failed []FileFailure
	for _, f := range op.RemoveFiles {
		if err := removeFile(j.abs(f)); err != nil {
			failed = append(failed, FileFailure{j.abs(f), err})
		}
	}
	return failed
}

// Finish completes a committed operation: removes the files it released.
func (j *Journal) Finish(op *store.Op) error {
	err := joinFailures(j.ReleaseFiles(op))
	if err == nil {
		err = j.Forget(op)
	}
	if err != nil {
		j.c.Log.Error("finishing operation incomplete", "op", op.Kind, "subject", op.Subject, "err", err)
		return err
	}
	return nil
}

// Fail rolls op back and returns err, annotated when the rollback itself
// failed.
func (j *Journal) Fail(op *store.Op, err error) error {
	if j.c.OnFailure != nil {
		j.c.OnFailure(context.Background(), op, err)
	}
	if rbErr := j.rollback(op); rbErr != nil {
		return fmt.Errorf("%w (rollback incomplete: %v)", err, rbErr)
	}
	return err
}

// Recover finishes or rolls back every operation a previous run left in the
// journal. Call it once at start, before serving.
func (j *Journal) Recover(ctx context.Context) error {
	var ops []store.Op
	if err := j.c.Store.View(ctx, func(tx store.Tx) error {
		var err error
		ops, err = tx.Ops().List()
		return err
	}); err != nil {
		return fmt.Errorf("recover: read journal: %w", err)
	}
	var errs []error
	for i := range ops {
		op := &ops[i]
		if !j.Mine(op) {
			continue // another host's files: its daemon recovers it
		}
		if op.Committed {
			j.c.Log.Info("recover: finishing committed operation", "op", op.Kind, "subject", op.Subject)
			errs = append(errs, j.Finish(op))
		} else {
			j.c.Log.Info("recover: rolling back interrupted operation", "op", op.Kind, "subject", op.Subject)
			errs = append(errs, j.rollback(op))
		}
	}
	return errors.Join(errs...)
}

// Mine reports whether op names files of this host.
func (j *Journal) Mine(op *store.Op) bool { return op.Host == "" || op.Host == j.c.Host }

// removeFile removes path. A path ending in a separator is a directory the
// operation made (an archive's): it goes with everything in it.
func removeFile(path string) error {
	remove := os.Remove
	if strings.HasSuffix(path, string(filepath.Separator)) {
		remove = os.RemoveAll
	}
	if err := remove(path); err != nil && !Gone(err) {
		return err
	}
	return nil
}

// Gone reports whether err says the file cannot exist: it is missing, a
// component of its path is not a directory, or the name is invalid (a NUL
// byte: no file can have it). Undoing an operation treats these as done,
// or a journal entry naming such a path could never be cleared (L1).
func Gone(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.EINVAL)
}

// tempSiblings lists the temporary files beside path that were made for
// it: ".NAME.tmp" and ".NAME.<anything>.tmp" (a copy of an import's
// source, or a file an older daemon named with a random part). A
// directory entry has none: its temporary files are inside it, and
// neither has a temporary name. list returns a directory's entries.
func tempSiblings(path string, list func(dir string) []os.DirEntry) []string {
	dir, base := filepath.Split(path)
	if base == "" || disk.IsTempName(base) || strings.ContainsRune(path, 0) {
		return nil
	}
	var out []string
	for _, e := range list(dir) {
		n := e.Name()
		if n == "."+base+".tmp" || strings.HasPrefix(n, "."+base+".") && strings.HasSuffix(n, ".tmp") {
			out = append(out, filepath.Join(dir, n))
		}
	}
	return out
}
