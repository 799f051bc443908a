package api

import (
	"context"
	"encoding/json"
	"net/http"

	"stagehand/internal/api/wire"
	"stagehand/internal/auth"
	"stagehand/internal/cluster"
	"stagehand/internal/errdefs"
)

// Hosts is what the host endpoints need (*cluster.Hosts).
type Hosts interface {
	List(ctx context.Context) ([]cluster.HostView, error)
	Get(ctx context.Context, name string) (*cluster.HostView, error)
	Drain(ctx context.Context, name string, all bool) (*cluster.HostView, error)
	Undrain(ctx context.Context, name string) (*cluster.HostView, error)
	Remove(ctx context.Context, name string) error
}

// hostsHandler serves the hosts of the installation. Hosts are the
// system's records: every route is decided on the system (the system
// administrator's actions host.read and host.admin); the host a path
// names is an argument, not an object of a workspace.
type hostsHandler struct{ lab Hosts }

func (h hostsHandler) register(r *router) {
	p := wire.APIPrefix
	r.route("GET "+p+"/hosts", auth.HostRead, noObject, h.list)
	r.route("GET "+p+"/hosts/{name}", auth.HostRead, noObject, h.get)
	r.route("POST "+p+"/hosts/{name}/drain", auth.HostAdmin, noObject, h.drain)
	r.route("POST "+p+"/hosts/{name}/undrain", auth.HostAdmin, noObject, h.undrain)
	r.route("DELETE "+p+"/hosts/{name}", auth.HostAdmin, noObject, h.remove)
}

func (h hostsHandler) served() error {
	if h.lab == nil {
		return errdefs.Unavailable("hosts are not served by this daemon")
	}
	return nil
}

func (h hostsHandler) list(w http.ResponseWriter, r *http.Request) error {
	if err := h.served(); err != nil {
		return err
	}
	hs, err := h.lab.List(r.Context())
	if err != nil {
		return err
	}
	return writeList(w, hs, hostToWire)
}

func (h hostsHandler) get(w http.ResponseWriter, r *http.Request) error {
	return h.one(w, r, Hosts.Get)
}

// drain marks the host draining and queues its drain (?all=true: the
// undeployed configurations' tops move too); it answers at once, and
// GET /hosts/{name} shows the drain's progress.
func (h hostsHandler) drain(w http.ResponseWriter, r *http.Request) error {
	all := r.URL.Query().Get("all")
	if all != "" && all != "true" && all != "false" {
		return errdefs.Invalid("all=%q: want true or false", all)
	}
	return h.one(w, r, func(hs Hosts, ctx context.Context, name string) (*cluster.HostView, error) {
		return hs.Drain(ctx, name, all == "true")
	})
}

func (h hostsHandler) undrain(w http.ResponseWriter, r *http.Request) error {
	return h.one(w, r, Hosts.Undrain)
}

// one answers with the host fn returns for the path's name.
func (h hostsHandler) one(w http.ResponseWriter, r *http.Request, fn func(Hosts, context.Context, string) (*cluster.HostView, error)) error {
	if err := h.served(); err != nil {
		return err
	}
	v, err := fn(h.lab, r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, hostToWire(v))
}

func (h hostsHandler) remove(w http.ResponseWriter, r *http.Request) error {
	if err := h.served(); err != nil {
		return err
	}
	if err := h.lab.Remove(r.Context(), r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func hostToWire(v *cluster.HostView) wire.Host {
	d, homed := v.Deployed, v.Homed
	if d == nil {
		d = []string{}
	}
	if homed == nil {
		homed = []string{}
	}
	out := wire.Host{
		Name: v.Name, AdvertiseURL: v.AdvertiseURL, State: v.State, Online: v.Online,
		MemoryMiB: v.MemoryMiB, CPUs: v.CPUs, StartedAt: v.StartedAt, LastSeen: v.LastSeen, Deployed: d, Homed: homed,
	}
	if w := v.Drain; w != nil {
		var plan cluster.DrainPlan
		_ = json.Unmarshal(w.Payload, &plan) // a plan that does not read shows as not --all
		out.Drain = &wire.HostDrain{State: w.State, All: plan.All, Error: w.Error, Attempts: w.Attempts, CreatedAt: w.CreatedAt, DoneAt: w.DoneAt}
	}
	return out
}
