package lab

import (
	"context"
	"fmt"
	"time"

	"stagehand/internal/hypervisor"
	"stagehand/internal/lab/journal"
	"stagehand/internal/store"
)

// Doctor compares the store with the files in the data dir and archive
// storage and with repair fixes what is safe to fix (see doctor.Run).
func (s *Service) Doctor(ctx context.Context, repair bool) (*DoctorReport, error) {
	return s.doctor.Run(ctx, repair)
}

// doctorLab is what the doctor asks of the lab: its lock table and the
// repairs that follow the lab's rules.
type doctorLab struct{ s *core }

// Busy reports whether op's subject is locked by an operation of this
// process (a template's operations lock "template/NAME").
func (l doctorLab) Busy(subject string) bool {
	return l.s.locks.busy(subject) || l.s.locks.busy("template/"+subject)
}

// Settle rolls op forward (committed) or back and clears its entry even
// when a file could not be removed, so that one bad path cannot keep the
// entry forever (L1).
func (l doctorLab) Settle(op *store.Op) ([]journal.FileFailure, error) {
	var failed []journal.FileFailure
	if op.Committed {
		failed = l.s.journal.ReleaseFiles(op)
	} else {
		failed = l.s.journal.UndoFiles(op)
	}
	return failed, l.s.journal.Forget(op)
}

// ReleaseLayer deletes an unreferenced layer (and the parents it leaves
// unreferenced) and its files.
func (l doctorLab) ReleaseLayer(ctx context.Context, id int64) error {
	s := l.s
	op := &store.Op{Kind: "release", Subject: fmt.Sprint(id)}
	err := s.update(ctx, func(tx store.Tx) error {
		removed, err := releaseLayers(tx, []int64{id})
		if err != nil {
			return err
		}
		if err := tx.Ops().Create(op); err != nil {
			return err
		}
		return journal.Commit(tx, op, removed)
	})
	if err != nil {
		return err
	}
	return s.journal.Finish(op)
}

// ReleaseAddress gives back an allocation nothing carries: an external one
// is deleted, an internal one released as its family's.
func (l doctorLab) ReleaseAddress(ctx context.Context, a store.Allocation) error {
	s := l.s
	if a.Kind == store.AllocExternal {
		err := s.update(ctx, func(tx store.Tx) error { return tx.Allocations().Delete(a.ID) })
		s.alloc.Forget()
		return err
	}
	return s.update(ctx, func(tx store.Tx) error { return s.releaseAllocations(tx, []int64{a.ID}) })
}

// Accel describes the accelerator for the report: the choice and why, or
// "probing" and for how long.
func (l doctorLab) Accel() (accel, reason string) {
	st := l.s.accel.Status()
	if !st.Ready() {
		return hypervisor.AccelProbing, fmt.Sprintf("%s, for %s", st.Reason, time.Since(st.Since).Round(time.Second))
	}
	return st.Accel, st.Reason
}

// PID is the QEMU process of VM id this daemon runs (0: none).
func (l doctorLab) PID(vmID int64) int { return l.s.deploys.PID(vmID) }
