package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"stagehand/internal/cluster"
	"stagehand/internal/errdefs"
	"stagehand/internal/hostlink"
	"stagehand/internal/lab/deploy"
	"stagehand/internal/lab/events"
	"stagehand/internal/store"
)

// Host-local work another host decides (issue 13). A configuration's
// files and QEMU processes are on its home host, so what the leader's
// reaper decides about a configuration living elsewhere (undeploy it,
// delete it, discard its saved state, archive it) is queued for the home
// host as a work item (store.Work), which that host's worker carries out
// with the lab's own operation. The item is the record of the decision:
// once queued it is done once (the worker claims it once; a daemon that
// dies holding it requeues it at its next start, and each handler takes
// an operation already done as done), and a pass that finds it still
// queued or running waits for it instead of queueing another.
//
// A drain is a work item too (cluster.WorkDrain), queued by
// cluster.Hosts.Drain for the draining host itself.

// Work kinds the lab carries out for other hosts.
const (
	WorkUndeploy     = "undeploy"
	WorkDelete       = "delete"
	WorkDiscardState = "discard-state"
	WorkArchive      = "archive"
)

// homeWorkPoll is how often a host that queued work for another host
// looks whether it is done.
const homeWorkPoll = 200 * time.Millisecond

// workArgs are the arguments of a work item (its payload).
type workArgs struct {
	// Actor is who decided (events.WithActor): the reaper, or a user.
	Actor   string `json:"actor,omitempty"`
	Save    bool   `json:"save,omitempty"`    // undeploy: save the VMs' state
	Object  string `json:"object,omitempty"`  // delete: config or library
	Archive string `json:"archive,omitempty"` // archive: the archive's name
}

// homeWork queues work for configurations' home hosts and carries out
// this host's.
type homeWork struct{ s *core }

// onHome runs local when configuration name lives on this host (or its
// store has one host); otherwise it queues kind for its home host and
// waits for the result while that host is online. An offline home leaves
// the item queued: the decision stands and is carried out when the host
// returns (its QEMU may still run; nothing is done from here).
func (w homeWork) onHome(ctx context.Context, name, kind string, args workArgs, local func() error) error {
	s := w.s
	var home string
	if s.hostName != "" {
		if err := s.store.View(ctx, func(tx store.Tx) error {
			c, err := tx.Configs().Get(name)
			if err == nil {
				home = s.home(c)
			}
			return err
		}); err != nil {
			return err
		}
	}
	if home == "" || home == s.hostName {
		return local()
	}
	id, err := w.enqueue(ctx, home, kind, name, args)
	if err != nil {
		return fmt.Errorf("%s %q on its host %q: %w", kind, name, home, err)
	}
	return w.wait(ctx, id, home)
}

// enqueue queues kind for subject on host, or returns the item of that
// kind already queued or running for it.
func (w homeWork) enqueue(ctx context.Context, host, kind, subject string, args workArgs) (int64, error) {
	payload, err := json.Marshal(args)
	if err != nil {
		return 0, err
	}
	var id int64
	err = w.s.store.Update(ctx, func(tx store.Tx) error {
		h, err := tx.Hosts().Get(host)
		if err != nil {
			return err
		}
		items, err := tx.Work().OfSubject(subject)
		if err != nil {
			return err
		}
		for _, it := range items {
			if it.HostID == h.ID && it.Kind == kind && (it.State == store.WorkQueued || it.State == store.WorkClaimed) {
				id = it.ID
				return nil
			}
		}
		item := &store.WorkItem{HostID: h.ID, Kind: kind, Subject: subject, Payload: payload}
		if err := tx.Work().Enqueue(item); err != nil {
			return err
		}
		id = item.ID
		return nil
	})
	if err == nil {
		w.s.log.Info("queued work for a configuration's home host", "work", id, "kind", kind, "config", subject, "host", host)
	}
	return id, err
}

// wait returns when item id is done (nil), failed (its error), or its
// host is offline (nil: the item stays queued for the host's return).
func (w homeWork) wait(ctx context.Context, id int64, host string) error {
	t := time.NewTicker(homeWorkPoll)
	defer t.Stop()
	for {
		var item *store.WorkItem
		var h *store.Host
		if err := w.s.store.View(ctx, func(tx store.Tx) (err error) {
			if item, err = tx.Work().Get(id); err != nil {
				return err
			}
			h, err = tx.Hosts().Get(host)
			return err
		}); err != nil {
			return err
		}
		switch {
		case item.State == store.WorkDone:
			return nil
		case item.State == store.WorkFailed:
			return fmt.Errorf("%s %q on host %q (work item %d): %s", item.Kind, item.Subject, host, id, item.Error)
		case cluster.Offline(*h, time.Now()): // heartbeats are wall-clock times
			w.s.log.Warn("a configuration's home host is offline: its work stays queued until it returns",
				"work", id, "kind", item.Kind, "config", item.Subject, "host", host, "last_seen", h.LastSeen)
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// WorkHandlers are the kinds of work this host carries out for the
// installation (the daemon gives them to its cluster.Worker).
func (s *Service) WorkHandlers() map[string]cluster.Handler {
	w := homeWork{s.core}
	return map[string]cluster.Handler{
		WorkUndeploy:      w.handle(w.undeploy),
		WorkDelete:        w.handle(w.delete),
		WorkDiscardState:  w.handle(w.discardState),
		WorkArchive:       w.handle(w.archive),
		cluster.WorkDrain: w.drain,
	}
}

// handle decodes an item's arguments and runs fn as the actor who
// decided it, on a configuration that must still live here.
func (w homeWork) handle(fn func(ctx context.Context, name string, args workArgs) error) cluster.Handler {
	return func(ctx context.Context, item store.WorkItem) error {
		var args workArgs
		if err := json.Unmarshal(item.Payload, &args); err != nil {
			return fmt.Errorf("work item %d: arguments: %w", item.ID, err)
		}
		if args.Actor == "" {
			args.Actor = ActorReaper
		}
		return fn(events.WithActor(ctx, args.Actor), item.Subject, args)
	}
}

// config reads name; found is false when it is gone.
func (w homeWork) config(ctx context.Context, name string) (c *store.Config, found bool, err error) {
	err = w.s.store.View(ctx, func(tx store.Tx) error {
		c, err = tx.Configs().Get(name)
		return err
	})
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil, false, nil
	}
	if err == nil && w.s.home(c) != w.s.hostName {
		err = errdefs.Conflict("configuration %q moved to host %q: this host no longer holds it", name, w.s.home(c))
	}
	return c, err == nil, err
}

func (w homeWork) undeploy(ctx context.Context, name string, args workArgs) error {
	c, found, err := w.config(ctx, name)
	if err != nil || !found || c.State == store.StateUndeployed {
		return err // gone or undeployed: done (by an earlier claim, or a user)
	}
	_, err = Deployments{w.s}.Undeploy(ctx, name, args.Save)
	return err
}

func (w homeWork) delete(ctx context.Context, name string, args workArgs) error {
	if _, found, err := w.config(ctx, name); err != nil || !found {
		return err
	}
	return w.s.deleteObject(ctx, args.Object, name)
}

func (w homeWork) discardState(ctx context.Context, name string, _ workArgs) error {
	if _, found, err := w.config(ctx, name); err != nil || !found {
		return err
	}
	return w.s.discardSavedState(ctx, name)
}

func (w homeWork) archive(ctx context.Context, name string, args workArgs) error {
	if _, found, err := w.config(ctx, name); err != nil || !found {
		return err
	}
	return reaperLab{w.s}.archiveHere(ctx, name, args.Archive)
}

// drain carries out a drain of this host (cluster.DrainPlan), one
// configuration at a time: each one deployed here when the drain was
// asked is undeployed saving its state, moved to the host placement
// chooses and deployed there, which resumes it; with All the undeployed
// configurations living here move too. A configuration no host fits
// stops the drain before it is touched; the rest stays where it is. A
// drain interrupted by the end of this host's daemon is claimed again at
// its next start and resumes: each step looks at where the configuration
// is now.
func (w homeWork) drain(ctx context.Context, item store.WorkItem) error {
	var plan cluster.DrainPlan
	if err := json.Unmarshal(item.Payload, &plan); err != nil {
		return fmt.Errorf("drain of host %q: plan: %w", item.Subject, err)
	}
	if item.Subject != w.s.hostName {
		return errdefs.Invalid("drain of host %q given to host %q", item.Subject, w.s.hostName)
	}
	ctx = events.WithActor(ctx, "host "+w.s.hostName)
	for i, name := range plan.Deploy {
		if err := w.stillDraining(ctx); err != nil {
			return err
		}
		policy, fenced := plan.Fenced[name]
		if err := w.drainOne(ctx, name, fenced, policy, fmt.Sprintf("%d of %d", i+1, len(plan.Deploy))); err != nil {
			return fmt.Errorf("drain of host %q stopped at configuration %q: %w", w.s.hostName, name, err)
		}
	}
	if !plan.All {
		return nil
	}
	rest, err := w.undeployedHere(ctx)
	if err != nil {
		return err
	}
	for _, name := range rest {
		if err := w.stillDraining(ctx); err != nil {
			return err
		}
		d, err := moves{w.s}.place(ctx, name, "")
		if err == nil {
			_, err = moves{w.s}.moveTo(ctx, name, d.Host)
		}
		if err != nil {
			return fmt.Errorf("drain of host %q stopped at configuration %q: %w", w.s.hostName, name, err)
		}
		w.s.events.record(ctx, ObjectConfig, "drain", name, fmt.Sprintf("host %s drained: moved to host %s (undeployed)", w.s.hostName, d.Host))
	}
	return nil
}

// drainOne moves configuration name, deployed here when the drain was
// asked, to another host and deploys it there, from wherever a crash
// left it.
func (w homeWork) drainOne(ctx context.Context, name string, fenced bool, policy, progress string) error {
	var c *store.Config
	err := w.s.store.View(ctx, func(tx store.Tx) (err error) {
		c, err = tx.Configs().Get(name)
		return err
	})
	switch {
	case errors.Is(err, errdefs.ErrNotFound):
		return nil // deleted meanwhile: nothing to move
	case err != nil:
		return err
	}
	deployed := c.State == store.StateDeployed || c.State == store.StateDeploying
	if w.s.home(c) != w.s.hostName {
		if deployed {
			return nil // moved and resumed before an interruption
		}
		// Moved, then interrupted before its new home deployed it.
		return w.deployOn(ctx, w.s.home(c), name, fenced, policy)
	}
	switch c.State {
	case store.StateDeployed, store.StateUndeployed:
	default:
		return errdefs.Conflict("configuration %q is %s: a drain moves a deployed or undeployed one", name, c.State)
	}
	// Placement first: a configuration no host fits is not touched.
	d, err := moves{w.s}.place(ctx, name, "")
	if err != nil {
		return err
	}
	if deployed {
		if _, err := (Deployments{w.s}).Undeploy(ctx, name, true); err != nil {
			return fmt.Errorf("undeploy saving its state: %w", err)
		}
	}
	// The deploy places it again (this host is draining, so elsewhere),
	// moves it there and has that host deploy it, resuming the saved
	// state.
	v, err := Deployments{w.s}.Deploy(ctx, name, DeployOptions{Fenced: fenced, FencePolicy: policy, Allow: deploy.AllowList(c.FenceAllow)})
	if err != nil {
		return fmt.Errorf("undeployed here with its state saved; moving it to host %q and resuming it there failed (deploy it again to retry): %w", d.Host, err)
	}
	w.s.events.record(ctx, ObjectConfig, "drain", name, fmt.Sprintf("host %s drained: moved to host %s and resumed there (%s)", w.s.hostName, v.Host, progress))
	return nil
}

// deployOn has host, the home of name now, deploy it.
func (w homeWork) deployOn(ctx context.Context, host, name string, fenced bool, policy string) error {
	var p []hostlink.Peer
	if err := w.s.store.View(ctx, func(tx store.Tx) (err error) {
		p, err = peers(tx, w.s.hostName, host)
		return err
	}); err != nil {
		return err
	}
	if w.s.link == nil || len(p) == 0 {
		return errdefs.Unavailable("configuration %q moved to host %q, which this daemon cannot reach to deploy it", name, host)
	}
	return w.s.link.Deploy(ctx, p[0], name, hostlink.DeployRequest{Fenced: fenced, FencePolicy: policy})
}

// stillDraining checks that this host is still draining: an undrain
// stops the drain between two configurations.
func (w homeWork) stillDraining(ctx context.Context) error {
	return w.s.store.View(ctx, func(tx store.Tx) error {
		h, err := tx.Hosts().Get(w.s.hostName)
		if err != nil {
			return err
		}
		if h.State != store.HostDraining {
			return errdefs.Conflict("host %q is %s now: the drain stops", w.s.hostName, h.State)
		}
		return nil
	})
}

// undeployedHere names the undeployed configurations whose home is this
// host, by name.
func (w homeWork) undeployedHere(ctx context.Context) ([]string, error) {
	var out []string
	err := w.s.store.View(ctx, func(tx store.Tx) error {
		cs, err := tx.Configs().List()
		if err != nil {
			return err
		}
		for i := range cs {
			if cs[i].Host == w.s.hostName && cs[i].Kind == store.KindConfig && cs[i].State == store.StateUndeployed {
				out = append(out, cs[i].Name)
			}
		}
		return nil
	})
	slices.Sort(out)
	return out, err
}
