package lab

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"stagehand/internal/errdefs"
	"stagehand/internal/lab/deploy"
	"stagehand/internal/lab/events"
	"stagehand/internal/lab/lease"
	"stagehand/internal/store"
)

// Storage and deployment leases, and the reaper that enforces them.
//
// Every configuration, library entry and archive may have a storage lease;
// a configuration has a deployment lease length that each deploy starts.
// The reaper looks at the store every ReapInterval: a deployment that
// outlived its lease is undeployed (saving or discarding state as the
// configuration says); an object whose storage lease ran out is marked
// expired and, under the delete policy, deleted once the grace period has
// passed. All its state is in the store, so a restart loses nothing: the
// next pass does what is due. A deployed configuration is never deleted.

// The lease rules (lengths, policy, the reaper's plan and loop) are in
// package lease; the lab keeps the leases' records, written in each
// operation's own transaction (leaseKeeper), and does what the reaper asks
// through reaperLab.

// Cleanup policies.
const (
	CleanupNotify = lease.CleanupNotify
	CleanupDelete = lease.CleanupDelete
)

// Defaults of LeasePolicy.
const (
	DefaultGrace          = lease.DefaultGrace
	DefaultReapInterval   = lease.DefaultReapInterval
	DefaultEventRetention = lease.DefaultEventRetention
)

// LeasePolicy holds the daemon-wide lease defaults and the reaper's policy.
type LeasePolicy = lease.Policy

// lifecycle is the Service's state for archives and leases.
type lifecycle struct {
	now        func() time.Time
	archiveDir string
	policy     LeasePolicy
	book       *leaseBook
	reaper     *lease.Reaper
}

// newLifecycle checks the lease options and prepares the archive directory.
func newLifecycle(opts Options, dataDir string) (*lifecycle, error) {
	l := &lifecycle{now: opts.Now, archiveDir: opts.ArchiveDir, policy: opts.Leases}
	if l.now == nil {
		l.now = time.Now
	}
	if l.archiveDir == "" {
		l.archiveDir = filepath.Join(dataDir, "archive")
	}
	abs, err := filepath.Abs(l.archiveDir)
	if err != nil {
		return nil, fmt.Errorf("lab: archive dir: %w", err)
	}
	l.archiveDir = abs
	// Archives hold guest data: an archive dir an older version made
	// readable by others is narrowed too (M5).
	if err := makePrivateDir(l.archiveDir); err != nil {
		return nil, fmt.Errorf("lab: create archive dir: %w", err)
	}
	p, err := l.policy.WithDefaults()
	if err != nil {
		return nil, err
	}
	l.policy = p
	l.book = &leaseBook{policy: l.policy, now: l.now}
	return l, nil
}

func (s *core) now() time.Time { return s.life.now().UTC() }

// ArchiveDir returns the directory of archive storage.
func (s Archives) Dir() string { return s.life.archiveDir }

// LeasePolicy returns the lease defaults and cleanup policy in force.
func (s Leases) Policy() LeasePolicy { return s.life.policy }

// ParseLadder reads a graduated lease policy's steps
// ("warn=1h,suspend,undeploy=1d,archive=7d,delete=30d", or "none").
func ParseLadder(s string) (Ladder, error) { return lease.ParseLadder(s) }

// ParseLease reads a lease length: "never" (0), a number of days ("30d"),
// weeks ("2w"), or a Go duration ("8h", "90m", "1h30m").
func ParseLease(s string) (time.Duration, error) { return lease.Parse(s) }

// LeaseView is a lease as shown to users. Zero times mean none.
type LeaseView struct {
	StorageExpires time.Time
	// ExpiredAt is when the storage lease was found run out.
	ExpiredAt time.Time
	// DeleteAt is when the delete policy deletes the expired object
	// (zero under the notify policy).
	DeleteAt       time.Time
	DeployLease    time.Duration
	DeployExpires  time.Time
	UndeployAction string
	LastUsed       time.Time
	// Ladder is where the deployment is on its graduated lease policy
	// (shown for one configuration, not in lists; zero: no ladder).
	Ladder LadderState
}

// LadderState is where a configuration's deployment is on its lease
// ladder: the step taken and the next one with its time.
type LadderState = lease.LadderState

// Ladder is a graduated lease policy (see package lease).
type Ladder = lease.Ladder

// ladderOf returns where configuration c is on its ladder.
func (vs views) ladderOf(tx store.Tx, c *store.Config) LadderState {
	it, err := lease.LoadConfig(tx, c, vs.policy.Ladder)
	if err != nil {
		return LadderState{} // no lease yet: no ladder running
	}
	return it.LadderState()
}

func (vs views) lease(l *store.Lease) LeaseView { return viewLease(vs.policy, l) }

func viewLease(p LeasePolicy, l *store.Lease) LeaseView {
	if l == nil {
		return LeaseView{UndeployAction: store.UndeploySave}
	}
	v := LeaseView{
		StorageExpires: l.StorageExpires, ExpiredAt: l.ExpiredAt,
		DeployLease: l.DeployLease, DeployExpires: l.DeployExpires,
		UndeployAction: l.UndeployAction, LastUsed: l.LastUsed,
	}
	if !l.ExpiredAt.IsZero() && p.Cleanup == CleanupDelete {
		v.DeleteAt = l.ExpiredAt.Add(p.Grace)
	}
	return v
}

// leaseKeeper keeps the leases that follow from the operations. An
// operation calls it inside the transaction that commits it, so that no
// crash can leave a new object without its lease, and the view it returns
// (built in the same transaction) shows the lease.
type leaseKeeper interface {
	// started gives a new configuration, library entry or archive its
	// leases: a storage lease of storage from now (the policy's default
	// when nil; none when 0), the default deployment lease for a
	// configuration or entry, and now as its last use (idle counts from
	// creation until it is first used).
	started(tx store.Tx, h leaseHolder, storage *time.Duration) error
	// used marks h used now.
	used(tx store.Tx, h leaseHolder) error
	// deployed marks configuration id used and starts its deployment
	// lease: of length deploy when given (which becomes its setting for
	// later deploys; 0 means none), else of its setting.
	deployed(tx store.Tx, configID int64, deploy *time.Duration) error
	// undeployed marks configuration id used and ends its deployment
	// lease.
	undeployed(tx store.Tx, configID int64) error
	// view returns h's lease as shown to users.
	view(tx store.Tx, h leaseHolder) LeaseView
}

// checkLeaseLength refuses a negative lease length an operation was asked
// to give (kind: "storage" or "deployment"); nil is the default.
func checkLeaseLength(kind string, d *time.Duration) error {
	if d != nil && *d < 0 {
		return errdefs.Invalid("the %s lease must not be negative", kind)
	}
	return nil
}

// leaseHolder is what a lease belongs to: a configuration (or library
// entry) or an archive, by store ID.
type leaseHolder struct {
	configID  int64
	archiveID int64
}

func configLease(id int64) leaseHolder  { return leaseHolder{configID: id} }
func archiveLease(id int64) leaseHolder { return leaseHolder{archiveID: id} }

// leaseBook is the leaseKeeper over the store's lease records.
type leaseBook struct {
	policy LeasePolicy
	now    func() time.Time
}

var _ leaseKeeper = (*leaseBook)(nil)

// get returns h's lease, or a new one (ID 0) when it has none yet.
func (b *leaseBook) get(tx store.Tx, h leaseHolder) (*store.Lease, error) {
	var l *store.Lease
	var err error
	if h.configID != 0 {
		l, err = tx.Leases().OfConfig(h.configID)
	} else {
		l, err = tx.Leases().OfArchive(h.archiveID)
	}
	if errors.Is(err, errdefs.ErrNotFound) {
		return &store.Lease{ConfigID: h.configID, ArchiveID: h.archiveID, UndeployAction: store.UndeploySave}, nil
	}
	return l, err
}

func (b *leaseBook) started(tx store.Tx, h leaseHolder, storage *time.Duration) error {
	l, err := b.get(tx, h)
	if err != nil || l.ID != 0 {
		return err // a lease already there (none is, for a new object) is kept
	}
	now := b.now().UTC()
	d := b.policy.DefaultStorage
	if storage != nil {
		d = *storage
	}
	if d > 0 {
		l.StorageExpires = now.Add(d)
	}
	if h.configID != 0 {
		l.DeployLease = b.policy.DefaultDeploy
	}
	l.LastUsed = now
	return tx.Leases().Put(l)
}

func (b *leaseBook) used(tx store.Tx, h leaseHolder) error {
	l, err := b.get(tx, h)
	if err != nil {
		return err
	}
	l.LastUsed = b.now().UTC()
	return tx.Leases().Put(l)
}

func (b *leaseBook) deployed(tx store.Tx, configID int64, deploy *time.Duration) error {
	l, err := b.get(tx, configLease(configID))
	if err != nil {
		return err
	}
	now := b.now().UTC()
	l.LastUsed = now
	if deploy != nil {
		l.DeployLease = *deploy
	}
	l.DeployExpires = time.Time{}
	if l.DeployLease > 0 {
		l.DeployExpires = now.Add(l.DeployLease)
	}
	// A new deployment starts a new ladder.
	l.LadderStep, l.LadderExpires, l.LadderAt = "", time.Time{}, time.Time{}
	return tx.Leases().Put(l)
}

func (b *leaseBook) undeployed(tx store.Tx, configID int64) error {
	l, err := b.get(tx, configLease(configID))
	if err != nil {
		return err
	}
	l.LastUsed = b.now().UTC()
	l.DeployExpires = time.Time{}
	return tx.Leases().Put(l)
}

func (b *leaseBook) view(tx store.Tx, h leaseHolder) LeaseView {
	l, err := b.get(tx, h)
	if err != nil || l.ID == 0 {
		l = nil
	}
	return viewLease(b.policy, l)
}

// LeaseChange is what SetLease changes; nil fields stay as they are.
type LeaseChange struct {
	// Storage is the new storage lease from now; 0 means never.
	Storage *time.Duration
	// Deploy is the new deployment lease length; a deployed configuration
	// gets it from now. 0 means never.
	Deploy *time.Duration
	// UndeployAction is store.UndeploySave or UndeployDiscard, or "".
	UndeployAction string
}

// SetLease changes the leases of a configuration or library entry. A new
// storage lease clears an expiry mark.
func (s Leases) Set(ctx context.Context, name string, ch LeaseChange) (*ConfigView, error) {
	switch ch.UndeployAction {
	case "", store.UndeploySave, store.UndeployDiscard:
	default:
		return nil, errdefs.Invalid("lease of %q: undeploy action %q is not %s or %s", name, ch.UndeployAction, store.UndeploySave, store.UndeployDiscard)
	}
	if ch.Deploy != nil && *ch.Deploy < 0 || ch.Storage != nil && *ch.Storage < 0 {
		return nil, errdefs.Invalid("lease of %q: lease lengths must not be negative", name)
	}
	var view *ConfigView
	var object string
	err := s.store.Update(ctx, func(tx store.Tx) error {
		c, err := tx.Configs().Get(name)
		if err != nil {
			return err
		}
		object = configObject(c)
		l, err := s.leaseOf(tx, object, name)
		if err != nil {
			return err
		}
		now := s.now()
		if ch.Storage != nil {
			l.StorageExpires, l.ExpiredAt = time.Time{}, time.Time{}
			if *ch.Storage > 0 {
				l.StorageExpires = now.Add(*ch.Storage)
			}
		}
		if ch.Deploy != nil {
			if c.Kind == store.KindLibrary {
				return errdefs.Invalid("library entry %q is never deployed: it has no deployment lease", name)
			}
			l.DeployLease = *ch.Deploy
			l.DeployExpires = time.Time{}
			if c.State == store.StateDeployed && l.DeployLease > 0 {
				l.DeployExpires = now.Add(l.DeployLease)
			}
		}
		if ch.UndeployAction != "" {
			l.UndeployAction = ch.UndeployAction
		}
		if ch.Storage != nil || ch.Deploy != nil {
			extendLadder(l)
		}
		if err := tx.Leases().Put(l); err != nil {
			return err
		}
		view, err = s.views.config(tx, c)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("lease of %q: %w", name, err)
	}
	s.events.record(ctx, object, "lease", name, describeLeaseChange(ch))
	return s.views.withRuntime(view), nil
}

// extendLadder applies a lease extension to the ladder the configuration
// is on. Before the ladder suspended (or undeployed) it, the ladder starts
// again from the deployment lease as it now is (a warning already given is
// given again before the new expiry); after, the configuration stays as
// the last step left it and the later steps are cancelled: nothing more
// happens until it is deployed again, which starts a new ladder.
func extendLadder(l *store.Lease) {
	if l.LadderStep == "" || l.LadderStep == lease.StepWarn {
		l.LadderStep, l.LadderExpires, l.LadderAt = "", time.Time{}, time.Time{}
		return
	}
	l.LadderExpires = time.Time{} // a step taken and no expiry: cancelled
}

// SetArchiveLease changes the storage lease of an archive; 0 means never.
func (s Archives) SetLease(ctx context.Context, name string, storage time.Duration) (*ArchiveView, error) {
	if storage < 0 {
		return nil, errdefs.Invalid("lease of archive %q: the lease must not be negative", name)
	}
	err := s.store.Update(ctx, func(tx store.Tx) error {
		l, err := s.leaseOf(tx, ObjectArchive, name)
		if err != nil {
			return err
		}
		l.StorageExpires, l.ExpiredAt = time.Time{}, time.Time{}
		if storage > 0 {
			l.StorageExpires = s.now().Add(storage)
		}
		return tx.Leases().Put(l)
	})
	if err != nil {
		return nil, fmt.Errorf("lease of archive %q: %w", name, err)
	}
	s.events.record(ctx, ObjectArchive, "lease", name, describeLeaseChange(LeaseChange{Storage: &storage}))
	return s.Get(ctx, name)
}

func describeLeaseChange(ch LeaseChange) string {
	var parts []string
	show := func(d time.Duration) string {
		if d == 0 {
			return "never"
		}
		return d.String()
	}
	if ch.Storage != nil {
		parts = append(parts, "storage "+show(*ch.Storage))
	}
	if ch.Deploy != nil {
		parts = append(parts, "deploy "+show(*ch.Deploy))
	}
	if ch.UndeployAction != "" {
		parts = append(parts, "on expiry "+ch.UndeployAction)
	}
	return strings.Join(parts, ", ")
}

// leaseOf returns the lease of a configuration, library entry or archive by
// name, or a new one (ID 0) with the defaults when it has none yet. Other
// objects are ErrNotFound.
func (s *core) leaseOf(tx store.Tx, object, name string) (*store.Lease, error) {
	switch object {
	case ObjectConfig, ObjectLibrary:
		c, err := tx.Configs().Get(name)
		if err != nil {
			return nil, err
		}
		return s.life.book.get(tx, configLease(c.ID))
	case ObjectArchive:
		a, err := tx.Archives().Get(name)
		if err != nil {
			return nil, err
		}
		return s.life.book.get(tx, archiveLease(a.ID))
	}
	return nil, errdefs.NotFound("%s %q has no lease", object, name)
}

func configObject(c *store.Config) string {
	if c.Kind == store.KindLibrary {
		return ObjectLibrary
	}
	return ObjectConfig
}

// Reaper actions.
const (
	ReapUndeploy         = lease.ReapUndeploy
	ReapMarkExpired      = lease.ReapMarkExpired
	ReapDelete           = lease.ReapDelete
	ReapStartDeployLease = lease.ReapStartDeployLease
	ReapClearDeployLease = lease.ReapClearDeployLease
)

// ReapAction is one thing the reaper decided to do.
type ReapAction = lease.ReapAction

// Reap runs the reaper once and returns what it did. The daemon calls it
// every ReapInterval (RunReaper); tests call it with an injected clock.
func (s Leases) Reap(ctx context.Context) ([]ReapAction, error) {
	return s.life.reaper.Reap(events.WithActor(ctx, ActorReaper))
}

// reaperLab is the lab as the reaper (lease.Reaper) sees it.
type reaperLab struct{ s *core }

var _ lease.Lab = reaperLab{}

func (l reaperLab) Leased(ctx context.Context) ([]lease.Leased, error) {
	var items []lease.Leased
	err := l.s.store.View(ctx, func(tx store.Tx) error {
		var err error
		items, err = lease.Load(tx, l.s.life.policy.Ladder)
		return err
	})
	return items, err
}

// Undeploy, Delete, DiscardState and Archive act on a configuration: on
// this host directly, on another host through a work item for it
// (homework.go).
func (l reaperLab) Undeploy(ctx context.Context, name string, save bool) error {
	return homeWork{l.s}.onHome(ctx, name, WorkUndeploy, workArgs{Actor: ActorReaper, Save: save}, func() error {
		_, err := Deployments{l.s}.Undeploy(ctx, name, save)
		return err
	})
}

func (l reaperLab) Delete(ctx context.Context, object, name string) error {
	if object == ObjectArchive {
		return l.s.deleteObject(ctx, object, name)
	}
	return homeWork{l.s}.onHome(ctx, name, WorkDelete, workArgs{Actor: ActorReaper, Object: object}, func() error {
		return l.s.deleteObject(ctx, object, name)
	})
}

func (l reaperLab) MarkExpired(ctx context.Context, object, name string, now time.Time) (bool, error) {
	err := l.s.store.Update(ctx, func(tx store.Tx) error {
		ls, err := l.s.leaseOf(tx, object, name)
		if err != nil {
			return err
		}
		if ls.StorageExpires.IsZero() || now.Before(ls.StorageExpires) || !ls.ExpiredAt.IsZero() {
			return errNotDue
		}
		ls.ExpiredAt = now
		return tx.Leases().Put(ls)
	})
	if errors.Is(err, errNotDue) {
		return false, nil
	}
	return err == nil, err
}

func (l reaperLab) SetDeployExpires(ctx context.Context, object, name string, start bool, now time.Time) error {
	return l.s.store.Update(ctx, func(tx store.Tx) error {
		ls, err := l.s.leaseOf(tx, object, name)
		if err != nil {
			return err
		}
		ls.DeployExpires = time.Time{}
		if start && ls.DeployLease > 0 {
			ls.DeployExpires = now.Add(ls.DeployLease)
		}
		return tx.Leases().Put(ls)
	})
}

func (l reaperLab) Record(ctx context.Context, object, action, subject, detail string) {
	l.s.events.record(ctx, object, action, subject, detail)
}

func (l reaperLab) PruneEvents(ctx context.Context, before time.Time) error {
	_, err := l.s.eventLog.Prune(ctx, before)
	return err
}

func (l reaperLab) RecordFailure(ctx context.Context, object, action, subject string, err error) {
	l.s.events.recordFailure(ctx, object, action, subject, err)
}

func (l reaperLab) ClaimStep(ctx context.Context, name string, claim func(lease.Leased) (store.Lease, bool)) (bool, error) {
	claimed := false
	err := l.s.store.Update(ctx, func(tx store.Tx) error {
		c, err := tx.Configs().Get(name)
		if err != nil {
			return err
		}
		it, err := lease.LoadConfig(tx, c, l.s.life.policy.Ladder)
		if err != nil {
			return err
		}
		ls, ok := claim(it)
		if !ok {
			return nil
		}
		claimed = true
		return tx.Leases().Put(&ls)
	})
	return claimed && err == nil, err
}

func (l reaperLab) DiscardState(ctx context.Context, name string) error {
	return homeWork{l.s}.onHome(ctx, name, WorkDiscardState, workArgs{Actor: ActorReaper}, func() error {
		return l.s.discardSavedState(ctx, name)
	})
}

func (l reaperLab) Archive(ctx context.Context, config, name string) error {
	return homeWork{l.s}.onHome(ctx, config, WorkArchive, workArgs{Actor: ActorReaper, Archive: name}, func() error {
		return l.archiveHere(ctx, config, name)
	})
}

func (l reaperLab) archiveHere(ctx context.Context, config, name string) error {
	if _, err := (Archives{l.s}).Get(ctx, name); err == nil {
		return nil // made by an earlier try of this step
	}
	// With its snapshots: the delete step comes next, and the archive is
	// all that is left of the configuration's tree (without snapshots it
	// is the same archive).
	job, err := Archives{l.s}.StartCreate(ctx, config, name, CreateOptions{WithSnapshots: true})
	if err != nil {
		return err
	}
	job, err = l.s.jobs.Wait(ctx, job.ID)
	if err != nil {
		return err
	}
	if job.Error != "" {
		return fmt.Errorf("archive %q as %q: %s", config, name, job.Error)
	}
	return nil
}

var errNotDue = errors.New("no longer due")

// discardSavedState deletes the saved states of undeployed configuration
// name: its VMs are marked powered off in the store first, then the files
// go, so that a crash between the two leaves a stray file (which the next
// discard or the configuration's deletion removes), never a VM that would
// resume from a state that is gone.
func (s *core) discardSavedState(ctx context.Context, name string) error {
	unlock := s.locks.lock(name)
	defer unlock()
	var files []string
	err := s.store.Update(ctx, func(tx store.Tx) error {
		files = nil
		c, err := tx.Configs().Get(name)
		if err != nil {
			return err
		}
		if c.State != store.StateUndeployed {
			return errdefs.Conflict("configuration %q is %s: only an undeployed one's saved state is discarded", name, c.State)
		}
		for i := range c.VMs {
			files = append(files, s.views.abs(deploy.StateFile(c.VMs[i].ID)))
			if c.VMs[i].State != VMStateSaved {
				continue
			}
			c.VMs[i].State = store.StateUndeployed
			if err := tx.Configs().UpdateVM(&c.VMs[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("discard saved state of %q: %w", name, err)
	}
	for _, f := range files {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("discard saved state of %q: %w", name, err)
		}
	}
	return nil
}

// deleteObject deletes a configuration, library entry or archive.
func (s *core) deleteObject(ctx context.Context, object, name string) error {
	switch object {
	case ObjectConfig:
		return Configs{s}.Delete(ctx, name)
	case ObjectLibrary:
		return Library{s}.Delete(ctx, name)
	case ObjectArchive:
		return Archives{s}.Delete(ctx, name)
	}
	return errdefs.Invalid("cannot delete a %s", object)
}

// RunReaper runs Reap every ReapInterval until ctx ends, and returns then.
func (s *Service) RunReaper(ctx context.Context) {
	s.life.reaper.Run(events.WithActor(ctx, ActorReaper))
}
