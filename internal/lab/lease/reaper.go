package lease

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"stagehand/internal/metrics"
	"stagehand/internal/store"
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

	// The ladder's steps.

	// ClaimStep reads configuration name as LoadConfig does and, in the
	// same transaction, writes the lease claim returns when it returns
	// true; it reports whether it wrote it. The transaction makes a step
	// happen once however many passes or hosts try it.
	ClaimStep(ctx context.Context, name string, claim func(Leased) (store.Lease, bool)) (bool, error)
	// DiscardState deletes the saved state of an undeployed configuration.
	DiscardState(ctx context.Context, name string) error
	// Archive archives configuration config as archive and waits for it;
	// an archive of that name already there is taken as done.
	Archive(ctx context.Context, config, archive string) error
	// RecordFailure writes a failed event of the reaper.
	RecordFailure(ctx context.Context, object, action, subject string, err error)
}

// Notifier posts a step's notice to a webhook without making the reaper
// wait: retries, timeouts and their failures are its own (package webhook).
type Notifier interface {
	Send(url, secret string, body []byte)
}

// Notice is the JSON body a ladder's webhook receives for each step.
type Notice struct {
	Event     string    `json:"event"` // the event's action: lease-warn, lease-suspend, ...
	Config    string    `json:"config"`
	Workspace string    `json:"workspace"`
	Step      string    `json:"step"`
	Policy    string    `json:"policy"`
	At        time.Time `json:"at"`      // when the step was taken
	Expires   time.Time `json:"expires"` // the deployment lease's expiry the ladder counts from
	Next      string    `json:"next,omitempty"`
	NextAt    time.Time `json:"next_at,omitzero"`
}

// Reaper enforces the leases: every ReapInterval it plans what is due and
// has the lab do it. All its state is in the store, so a restart loses
// nothing: the next pass does what is due.
type Reaper struct {
	lab    Lab
	policy Policy
	now    func() time.Time
	log    *slog.Logger
	notify Notifier   // nil: webhooks are not posted
	mu     sync.Mutex // one Reap at a time
}

// SetNotifier has the ladder's steps posted to their webhooks through n.
func (r *Reaper) SetNotifier(n Notifier) { r.notify = n }

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
	case ReapWarn, ReapSuspend, ReapLadderUndeploy, ReapArchive, ReapLadderDelete:
		return r.step(ctx, now, a)
	case ReapStartDeployLease, ReapClearDeployLease:
		return r.lab.SetDeployExpires(ctx, a.Object, a.Name, a.Action == ReapStartDeployLease, now)
	}
	return fmt.Errorf("unknown reaper action %q", a.Action)
}

// step takes one step of a ladder: it claims it in the store (so that it
// happens once), does it, and records it; a step that fails gives its claim
// back, so the next pass tries it again.
func (r *Reaper) step(ctx context.Context, now time.Time, a ReapAction) error {
	var before, after Leased
	claimed, err := r.lab.ClaimStep(ctx, a.Name, func(it Leased) (store.Lease, bool) {
		b, ok := planLadder(now, it)
		if !ok || b.Step != a.Step || b.From != a.From || !b.Expires.Equal(a.Expires) || b.Running != a.Running {
			return store.Lease{}, false // extended, undeployed or taken meanwhile
		}
		before, after = it, it
		after.Lease.LadderStep, after.Lease.LadderExpires, after.Lease.LadderAt = a.Step, a.Expires, now
		return after.Lease, true
	})
	if err != nil || !claimed {
		return err
	}
	if err := r.takeStep(ctx, a); err != nil {
		_, uerr := r.lab.ClaimStep(ctx, a.Name, func(it Leased) (store.Lease, bool) {
			l := it.Lease
			if l.LadderStep != a.Step || !l.LadderAt.Equal(now) {
				return l, false
			}
			l.LadderStep, l.LadderExpires, l.LadderAt = before.Lease.LadderStep, before.Lease.LadderExpires, before.Lease.LadderAt
			return l, true
		})
		if uerr != nil {
			r.log.Warn("reaper: give back a lease step", "config", a.Name, "step", a.Step, "err", uerr)
		}
		err = fmt.Errorf("policy %s, step %s: %w", a.Policy, a.Step, err)
		r.lab.RecordFailure(ctx, a.Object, a.Action, a.Name, err)
		return err
	}
	// After an undeploy or a delete the configuration's state is not the
	// one read before; the next step is the ladder's all the same.
	next := after.LadderState()
	if a.Step == StepSuspend || a.Step == StepUndeploy {
		after.State = store.StateUndeployed
		next = after.LadderState()
	}
	detail := fmt.Sprintf("policy %s: step %s (deployment lease expires %s)", a.Policy, a.Step, a.Expires.Format(time.RFC3339))
	if a.Step != StepWarn {
		detail = fmt.Sprintf("policy %s: step %s (deployment lease expired %s)", a.Policy, a.Step, a.Expires.Format(time.RFC3339))
	}
	if next.Next != "" {
		detail += fmt.Sprintf("; next %s at %s unless the lease is extended", next.Next, next.NextAt.Format(time.RFC3339))
	}
	r.lab.Record(ctx, a.Object, a.Action, a.Name, detail)
	if hook := after.Ladder.Webhook; hook.URL != "" && r.notify != nil {
		body, err := json.Marshal(Notice{Event: a.Action, Config: a.Name, Workspace: after.Workspace, Step: a.Step,
			Policy: a.Policy, At: now, Expires: a.Expires, Next: next.Next, NextAt: next.NextAt})
		if err == nil {
			r.notify.Send(hook.URL, hook.Secret, body)
		}
	}
	return nil
}

// takeStep does what step a.Step does to its configuration.
func (r *Reaper) takeStep(ctx context.Context, a ReapAction) error {
	switch a.Step {
	case StepWarn:
		return nil // the event and the webhook are the warning
	case StepSuspend:
		return r.lab.Undeploy(ctx, a.Name, a.Save)
	case StepUndeploy:
		if a.Running { // no suspend in the ladder, or its claim was lost
			return r.lab.Undeploy(ctx, a.Name, false)
		}
		return r.lab.DiscardState(ctx, a.Name)
	case StepArchive:
		return r.lab.Archive(ctx, a.Name, ArchiveName(a.Name, a.Expires))
	case StepDelete:
		return r.lab.Delete(ctx, a.Object, a.Name)
	}
	return fmt.Errorf("unknown lease step %q", a.Step)
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
