package lab

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

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

// beginOp records the intent of an operation. created and frozen are paths
// relative to the data dir.
func (s *Service) beginOp(ctx context.Context, kind, subject string, created, frozen []string) (*store.Op, error) {
	op := &store.Op{Kind: kind, Subject: subject, CreatedFiles: created, FrozenFiles: frozen}
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
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.failAt != nil {
		if err := s.failAt(op.Kind, name); err != nil {
			return fmt.Errorf("step %s: %w", name, err)
		}
	}
	return nil
}

// rollbackOp undoes an uncommitted operation. It is idempotent: files that
// are already gone are fine. It uses its own context so that a cancelled
// request still cleans up.
func (s *Service) rollbackOp(op *store.Op) error {
	ctx := context.WithoutCancel(context.Background())
	var errs []error
	for _, f := range op.CreatedFiles {
		if err := removeFile(s.abs(f)); err != nil {
			errs = append(errs, err)
		}
	}
	for _, f := range op.FrozenFiles {
		if err := s.disks.SetReadOnly(s.abs(f), false); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("unfreeze %s: %w", f, err))
		}
	}
	if len(errs) == 0 {
		if err := s.update(ctx, func(tx store.Tx) error { return tx.DeleteOp(op.ID) }); err != nil {
			errs = append(errs, err)
		}
	}
	err := errors.Join(errs...)
	if err != nil {
		s.log.Error("rollback incomplete; doctor will report it", "op", op.Kind, "subject", op.Subject, "err", err)
	} else {
		s.log.Info("rolled back", "op", op.Kind, "subject", op.Subject)
	}
	return err
}

// finishOp completes a committed operation: removes the files it released.
func (s *Service) finishOp(op *store.Op) error {
	ctx := context.WithoutCancel(context.Background())
	var errs []error
	for _, f := range op.RemoveFiles {
		if err := removeFile(s.abs(f)); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		if err := s.update(ctx, func(tx store.Tx) error { return tx.DeleteOp(op.ID) }); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
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
	if err := s.recoverDeployments(ctx); err != nil {
		errs = append(errs, fmt.Errorf("recover deployments: %w", err))
	}
	return errors.Join(errs...)
}

// A path ending in a separator is a directory the operation made (an
// archive's): it goes with everything in it.
func removeFile(path string) error {
	remove := os.Remove
	if strings.HasSuffix(path, string(filepath.Separator)) {
		remove = os.RemoveAll
	}
	err := remove(path)
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}
