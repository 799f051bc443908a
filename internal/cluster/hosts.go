package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"stagehand/internal/errdefs"
	"stagehand/internal/store"
)

// HostView is a host as the operator sees it: the record, whether it is
// online (seen within OfflineAfter), and the configurations deployed on
// it.
type HostView struct {
	store.Host
	Online bool
	// Deployed names the configurations whose Host is this one and that
	// are deployed there (or being deployed or undeployed), by name.
	Deployed []string
	// Homed names every configuration whose home this host is, deployed
	// or not: what a drain --all still has to move.
	Homed []string
	// Drain is the host's latest drain work item (nil: never drained).
	Drain *store.WorkItem
}

// WorkDrain is the kind of work item a drain is: carried out by the
// draining host itself, one configuration at a time (lab). Its subject is
// the host's name and its payload a DrainPlan.
const WorkDrain = "drain"

// DrainPlan is what a drain moves: Deploy names the configurations
// deployed on the host when the drain was asked (each is saved, moved
// and resumed elsewhere; the list makes a drain that resumes after a
// crash know which undeployed ones it had undeployed itself); All also
// moves the tops of every undeployed configuration whose home it is.
type DrainPlan struct {
	Deploy []string `json:"deploy"`
	// Fenced holds the fence policy of each fenced one of Deploy: an
	// undeploy forgets it, and it is deployed fenced again.
	Fenced map[string]string `json:"fenced,omitempty"`
	All    bool              `json:"all,omitempty"`
}

// Hosts is the operator's view of the hosts sharing a store.
type Hosts struct {
	store store.Store
	now   func() time.Time
}

// NewHosts returns the hosts of st.
func NewHosts(st store.Store) *Hosts { return &Hosts{store: st, now: time.Now} }

// List returns every host, removed ones too, by registration order.
func (h *Hosts) List(ctx context.Context) ([]HostView, error) {
	var out []HostView
	err := h.store.View(ctx, func(tx store.Tx) error {
		hs, err := tx.Hosts().List()
		if err != nil {
			return err
		}
		on, err := deployedByHost(tx)
		if err != nil {
			return err
		}
		now := h.now()
		for _, x := range hs {
			out = append(out, HostView{Host: x, Online: !Offline(x, now), Deployed: on[x.Name]})
		}
		return nil
	})
	return out, err
}

// Get returns the host called name.
func (h *Hosts) Get(ctx context.Context, name string) (*HostView, error) {
	var v *HostView
	err := h.store.View(ctx, func(tx store.Tx) error {
		var err error
		v, err = h.view(tx, name)
		return err
	})
	return v, err
}

func (h *Hosts) view(tx store.Tx, name string) (*HostView, error) {
	x, err := tx.Hosts().Get(name)
	if err != nil {
		return nil, err
	}
	on, err := deployedByHost(tx)
	if err != nil {
		return nil, err
	}
	v := &HostView{Host: *x, Online: !Offline(*x, h.now()), Deployed: on[name]}
	if v.Drain, err = lastDrain(tx, x.ID, name); err != nil {
		return nil, err
	}
	cs, err := tx.Configs().List()
	if err != nil {
		return nil, err
	}
	for _, c := range cs {
		if c.Host == name {
			v.Homed = append(v.Homed, c.Name)
		}
	}
	slices.Sort(v.Homed)
	return v, nil
}

// Drain marks the host draining (placement skips it from now on) and, in
// the same transaction, queues a drain work item for it (WorkDrain): the
// host moves what runs there elsewhere, one configuration at a time, and
// with all the tops of its undeployed configurations too. A drain already
// queued or running is not queued twice; a removed host cannot be drained.
func (h *Hosts) Drain(ctx context.Context, name string, all bool) (*HostView, error) {
	return h.setState(ctx, name, store.HostDraining, func(tx store.Tx, x *store.Host) error {
		last, err := lastDrain(tx, x.ID, name)
		if err != nil || (last != nil && last.State != store.WorkDone && last.State != store.WorkFailed) {
			return err
		}
		plan, err := drainPlan(tx, name, all)
		if err != nil {
			return err
		}
		if err := tx.Work().Enqueue(&store.WorkItem{HostID: x.ID, Kind: WorkDrain, Subject: name, Payload: plan}); err != nil {
			return fmt.Errorf("queue the drain of host %q: %w", name, err)
		}
		return nil
	})
}

// drainPlan returns the payload of a drain of host name.
func drainPlan(tx store.Tx, name string, all bool) ([]byte, error) {
	on, err := deployedByHost(tx)
	if err != nil {
		return nil, err
	}
	p := DrainPlan{Deploy: on[name], All: all, Fenced: map[string]string{}}
	for _, c := range on[name] {
		x, err := tx.Configs().Get(c)
		if err != nil {
			return nil, err
		}
		if x.Fenced {
			p.Fenced[c] = x.FencePolicy
		}
	}
	return json.Marshal(p)
}

// lastDrain returns host name's latest drain item, nil when none.
func lastDrain(tx store.Tx, hostID int64, name string) (*store.WorkItem, error) {
	items, err := tx.Work().OfSubject(name)
	if err != nil {
		return nil, fmt.Errorf("drains of host %q: %w", name, err)
	}
	for i := len(items) - 1; i >= 0; i-- {
		if items[i].Kind == WorkDrain && items[i].HostID == hostID {
			return &items[i], nil
		}
	}
	return nil, nil
}

// Undrain makes a draining host active again.
func (h *Hosts) Undrain(ctx context.Context, name string) (*HostView, error) {
	return h.setState(ctx, name, store.HostActive, nil)
}

// setState sets the state of host name and, when then is not nil, runs
// it in the same transaction.
func (h *Hosts) setState(ctx context.Context, name, state string, then func(tx store.Tx, x *store.Host) error) (*HostView, error) {
	var v *HostView
	err := h.store.Update(ctx, func(tx store.Tx) error {
		x, err := tx.Hosts().Get(name)
		if err != nil {
			return err
		}
		if x.State == store.HostRemoved {
			return errdefs.Conflict("host %q is removed; it comes back, active, when its daemon starts again", name)
		}
		if err := tx.Hosts().SetState(name, state); err != nil {
			return err
		}
		if then != nil {
			if err := then(tx, x); err != nil {
				return err
			}
		}
		v, err = h.view(tx, name)
		return err
	})
	return v, err
}

// Remove marks the host removed. It refuses while configurations are
// deployed there: they would be left running on a host nobody places on
// or looks after.
func (h *Hosts) Remove(ctx context.Context, name string) error {
	return h.store.Update(ctx, func(tx store.Tx) error {
		if _, err := tx.Hosts().Get(name); err != nil {
			return err
		}
		on, err := deployedByHost(tx)
		if err != nil {
			return err
		}
		if d := on[name]; len(d) > 0 {
			return errdefs.Conflict("host %q still has %d deployed configuration(s): %s; undeploy them (or drain the host and move them) first",
				name, len(d), strings.Join(d, ", "))
		}
		return tx.Hosts().SetState(name, store.HostRemoved)
	})
}

// deployedByHost maps each host name to the configurations deployed on
// it, sorted by name.
func deployedByHost(tx store.Tx) (map[string][]string, error) {
	cs, err := tx.Configs().List()
	if err != nil {
		return nil, fmt.Errorf("configurations by host: %w", err)
	}
	on := map[string][]string{}
	for _, c := range cs {
		if c.Host == "" {
			continue
		}
		switch c.State {
		case store.StateDeployed, store.StateDeploying, store.StateUndeploying:
			on[c.Host] = append(on[c.Host], c.Name)
		}
	}
	for _, names := range on {
		slices.Sort(names)
	}
	return on, nil
}
