package cluster

import (
	"context"
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
	return &HostView{Host: *x, Online: !Offline(*x, h.now()), Deployed: on[name]}, nil
}

// Drain marks the host draining: placement skips it from now on, and what
// runs there stays until it is moved (Deployed says what). Draining a
// draining host changes nothing; a removed host cannot be drained.
func (h *Hosts) Drain(ctx context.Context, name string) (*HostView, error) {
	return h.setState(ctx, name, store.HostDraining)
}

// Undrain makes a draining host active again.
func (h *Hosts) Undrain(ctx context.Context, name string) (*HostView, error) {
	return h.setState(ctx, name, store.HostActive)
}

func (h *Hosts) setState(ctx context.Context, name, state string) (*HostView, error) {
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
