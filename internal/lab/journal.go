package lab

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
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
//  1. beginOp writes a journal entry naming every file it will create and
//     every file it will freeze, before touching any.
//  2. The steps create and freeze files.
//  3. One store transaction applies every record change and marks the entry
//     committed, listing the files that are now unreferenced.
//  4. finishOp removes those files and deletes the entry.
//
// A failure before 3 calls rollbackOp (remove created files, unfreeze
// frozen ones, delete the entry); Recover does the same for entries a crash
// left behind, and rolls committed ones forward with finishOp.
//
// Files are written under a temporary name first (disk.TempPath: ".NAME.tmp"
// beside NAME) and renamed when complete. beginOp journals that name with
// each file, so a crash in the middle of a long write (a full clone's
// qemu-img convert) leaves nothing the journal does not name.

// beginOp records the intent of an operation. created and frozen are paths
// relative to the data dir (or absolute, outside it); created gets the
// temporary name of each file added.
func (s *Service) beginOp(ctx context.Context, kind, subject string, created, frozen []string) (*store.Op, error) {
	op := &store.Op{Kind: kind, Subject: subject, CreatedFiles: withTempPaths(created), FrozenFiles: frozen}
	if err := s.update(ctx, func(tx store.Tx) error { return tx.CreateOp(op) }); err != nil {
		return nil, fmt.Errorf("%s %q: write journal: %w", kind, subject, err)
	}
	return op, nil
}

// commitOp marks op committed inside the transaction that applies its
// record changes; remove lists files that are no longer referenced.
func commitOp(tx store.Tx, op *store.Op, remove []string) error {
	op.Committed = true
	op.RemoveFiles = remove
	return tx.UpdateOp(op)
}

// step is called before every step of a multi-step operation: it honours
// cancellation and the test hook that fails chosen steps.
func (s *Service) step(ctx context.Context, op *store.Op, name string) error {
	return s.fault(ctx, op.Kind, name)
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

// fileFailure is a file an undo could not remove or unfreeze.
type fileFailure struct {
	path string
	err  error
}

func joinFailures(fs []fileFailure) error {
	errs := make([]error, len(fs))
	for i, f := range fs {
		errs[i] = f.err
	}
	return errors.Join(errs...)
}

// undoFiles removes op's created files, with every temporary file made for
// them (journalled or not: an entry written by an older daemon names none),
// and unfreezes its frozen files. It returns what it could not do.
func (s *Service) undoFiles(op *store.Op) []fileFailure {
	var failed []fileFailure
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
		for _, p := range append([]string{s.abs(f)}, tempSiblings(s.abs(f), list)...) {
			if err := removeFile(p); err != nil {
				failed = append(failed, fileFailure{p, err})
			}
		}
	}
	for _, f := range op.FrozenFiles {
		if err := s.disks.SetReadOnly(s.abs(f), false); err != nil && !gone(err) {
			failed = append(failed, fileFailure{s.abs(f), fmt.Errorf("unfreeze %s: %w", f, err)})
		}
	}
	return failed
}

// rollbackOp undoes an uncommitted operation. It is idempotent: files that
// are already gone are fine. The journal entry is kept when a file could
// not be removed, so that the next Recover or doctor --repair tries again.
// It uses its own context so that a cancelled request still cleans up.
func (s *Service) rollbackOp(op *store.Op) error {
	err := joinFailures(s.undoFiles(op))
	if err == nil {
		err = s.forgetOp(op)
	}
	if err != nil {
		s.log.Error("rollback incomplete; doctor will report it", "op", op.Kind, "subject", op.Subject, "err", err)
	} else {
		s.log.Info("rolled back", "op", op.Kind, "subject", op.Subject)
	}
	return err
}

// forgetOp deletes op's journal entry. An entry already gone (cleared by
// a doctor --repair meanwhile) is fine.
func (s *Service) forgetOp(op *store.Op) error {
	ctx := context.WithoutCancel(context.Background())
	err := s.update(ctx, func(tx store.Tx) error { return tx.DeleteOp(op.ID) })
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil
	}
	return err
}

// releaseFiles removes the files a committed operation released.
func (s *Service) releaseFiles(op *store.Op) []fileFailure {
	var failed []fileFailure
	for _, f := range op.RemoveFiles {
		if err := removeFile(s.abs(f)); err != nil {
			failed = append(failed, fileFailure{s.abs(f), err})
		}
	}
	return failed
}

// finishOp completes a committed operation: removes the files it released.
func (s *Service) finishOp(op *store.Op) error {
	err := joinFailures(s.releaseFiles(op))
	if err == nil {
		err = s.forgetOp(op)
	}
	if err != nil {
		s.log.Error("finishing operation incomplete", "op", op.Kind, "subject", op.Subject, "err", err)
		return err
	}
	return nil
}

// failOp rolls op back and returns err, annotated when the rollback itself
// failed.
func (s *Service) failOp(op *store.Op, err error) error {
	s.recordOpFailure(context.Background(), op, err)
	if rbErr := s.rollbackOp(op); rbErr != nil {
		return fmt.Errorf("%w (rollback incomplete: %v)", err, rbErr)
	}
	return err
}

// Recover finishes or rolls back every operation a previous run left in the
// journal. Call it once at start, before serving.
func (s *Service) Recover(ctx context.Context) error {
	var ops []store.Op
	if err := s.store.View(ctx, func(tx store.Tx) error {
		var err error
		ops, err = tx.ListOps()
		return err
	}); err != nil {
		return fmt.Errorf("recover: read journal: %w", err)
	}
	var errs []error
	for i := range ops {
		op := &ops[i]
		if op.Committed {
			s.log.Info("recover: finishing committed operation", "op", op.Kind, "subject", op.Subject)
			errs = append(errs, s.finishOp(op))
		} else {
			s.log.Info("recover: rolling back interrupted operation", "op", op.Kind, "subject", op.Subject)
			errs = append(errs, s.rollbackOp(op))
		}
	}
	if err := s.deploys.Recover(ctx); err != nil {
		errs = append(errs, fmt.Errorf("recover deployments: %w", err))
	}
	return errors.Join(errs...)
}

// removeFile removes path. A path ending in a separator is a directory the
// operation made (an archive's): it goes with everything in it.
func removeFile(path string) error {
	remove := os.Remove
	if strings.HasSuffix(path, string(filepath.Separator)) {
		remove = os.RemoveAll
	}
	if err := remove(path); err != nil && !gone(err) {
		return err
	}
	return nil
}

// gone reports whether err says the file cannot exist: it is missing, a
// component of its path is not a directory, or the name is invalid (a NUL
// byte: no file can have it). Undoing an operation treats these as done,
// or a journal entry naming such a path could never be cleared (L1).
func gone(err error) bool {
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
