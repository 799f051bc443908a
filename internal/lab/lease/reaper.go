package lease

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"stagehand/internal/metrics"
)

// Lab is what the reaper asks of the lab that keeps the leases: their
// records, and the operations that carry a plan out, each in the lab's own
// store transactions and with its events.
type Lab interface {
	// Leased reads every object that has a lease, in one transaction.
	Leased(ctx context.Context) ([]Leased, error)
	// Undeploy undeploys a configuration, saving its VMs' state or not.
	Undeploy(ctx context.Context, name string, save bool) error
	// Delete deletes a configuration, library entry or archive.
	Delete(ctx context.Context, object, name string) error
	// MarkExpired marks the object's storage lease expired at now, in a
	// transaction that checks again that it ran out and is not marked
	// yet; it reports whether it marked it.
	MarkExpired(ctx context.Context, object, name string, now time.Time) (bool, error)
	// SetDeployExpires sets (start) or clears the configuration's running
	// deployment lease.
	SetDeployExpires(ctx context.Context, object, name string, start bool, now time.Time) error
	// Record writes an event done by the reaper.
	Record(ctx context.Context, object, action, subject, detail string)
	// PruneEvents deletes events older than before.
	PruneEvents(ctx context.Context, before time.Time) error
}

// Reaper enforces the leases: every ReapInterval it plans what is due and
// has the lab do it. All its state is in the store, so a restart loses
// nothing: the next pass does what is due.
type Reaper struct {
	lab    Lab
	policy Policy
	now    func() time.Time
	log    *slog.Logger
	mu     sync.Mutex // one Reap at a time
}

// NewReaper returns the reaper of lab under policy (with its defaults in),
// reading the time from now.
func NewReaper(lab Lab, policy Policy, now func() time.Time, log *slog.Logger) *Reaper {
	return &Reaper{lab: lab, policy: policy, now: now, log: log}
}

// Reap runs the reaper once and returns what it did.
func (r *Reaper) Reap(ctx context.Context) ([]ReapAction, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	items, err := r.lab.Leased(ctx)
	if err != nil {
		return nil, fmt.Errorf("reaper: %w", err)
	}
	now := r.now()
	actions := Plan(now, r.policy, items)
	for i := range actions {
		err := r.do(ctx, now, actions[i])
		metrics.CountReaperAction(actions[i].Action, err != nil)
		if err != nil {
			actions[i].Err = err.Error()
			r.log.Warn("reaper", "action", actions[i].Action, "object", actions[i].Object, "name", actions[i].Name, "err", err)
		}
	}
	if err := r.lab.PruneEvents(ctx, now.Add(-r.policy.EventRetention)); err != nil {
		r.log.Warn("reaper: prune events", "err", err)
	}
	return actions, nil
}

// do does one action, after checking again that it is still due (a user
// may have extended the lease meanwhile).
func (r *Reaper) do(ctx context.Context, now time.Time, a ReapAction) error {
	stillDue := func() (bool, error) {
		items, err := r.lab.Leased(ctx)
		if err != nil {
			return false, err
		}
		for _, b := range Plan(now, r.policy, items) {
			if b.Object == a.Object && b.Name == a.Name && b.Action == a.Action {
				return true, nil
			}
		}
		return false, nil
	}
	switch a.Action {
	case ReapUndeploy:
		due, err := stillDue()
		if err != nil || !due {
			return err
		}
		how := "discarding state"
		if a.Save {
			how = "saving state"
		}
		r.lab.Record(ctx, a.Object, "deploy-lease-expired", a.Name, "undeploying, "+how)
		return r.lab.Undeploy(ctx, a.Name, a.Save)
	case ReapMarkExpired:
		marked, err := r.lab.MarkExpired(ctx, a.Object, a.Name, now)
		if err != nil || !marked {
			return err
		}
		detail := "storage lease ran out; marked for cleanup (policy notify: not deleted)"
		if r.policy.Cleanup == CleanupDelete {
			detail = fmt.Sprintf("storage lease ran out; will be deleted at %s unless the lease is extended", now.Add(r.policy.Grace).Format(time.RFC3339))
		}
		r.lab.Record(ctx, a.Object, "storage-lease-expired", a.Name, detail)
		return nil
	case ReapDelete:
		due, err := stillDue()
		if err != nil || !due {
			return err
		}
		return r.lab.Delete(ctx, a.Object, a.Name)
	case ReapStartDeployLease, ReapClearDeployLease:
		return r.lab.SetDeployExpires(ctx, a.Object, a.Name, a.Action == ReapStartDeployLease, now)
	}
	return fmt.Errorf("unknown reaper action %q", a.Action)
}

// Run runs Reap every ReapInterval until ctx ends, and returns then.
func (r *Reaper) Run(ctx context.Context) {
	t := time.NewTicker(r.policy.ReapInterval)
	defer t.Stop()
	for {
		if _, err := r.Reap(ctx); err != nil && ctx.Err() == nil {
			r.log.Error("reaper", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
