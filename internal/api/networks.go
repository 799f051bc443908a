package api

import (
	"context"
	"net/http"

	"stagehand/internal/api/wire"
	"stagehand/internal/auth"
	"stagehand/internal/lab"
)

// Networks is what the network and address endpoints need (lab.Networks).
type Networks interface {
	Create(ctx context.Context, spec lab.NetworkSpec) (*lab.NetworkView, error)
	// ListIn lists one workspace ("ws" or "org/ws"), or all for "".
	ListIn(ctx context.Context, workspace string) ([]lab.NetworkView, error)
	Get(ctx context.Context, name string) (*lab.NetworkView, error)
	Delete(ctx context.Context, name string) error
	ChangeIPs(ctx context.Context, config string) (*lab.ConfigView, error)
	SetIP(ctx context.Context, config, vm string, nic int, ip string) (*lab.ConfigView, error)
}

// networksHandler serves the network and address endpoints.
type networksHandler struct{ lab Networks }

// register adds the network routes, and the address routes of a
// configuration, whose addresses come from its networks' pools.
func (h networksHandler) register(r *router) {
	p := wire.APIPrefix
	r.route("POST "+p+"/networks", auth.NetworkCreate, noObject, h.create)
	r.route("GET "+p+"/networks", auth.NetworkRead, noObject, h.list)
	r.route("GET "+p+"/networks/{name}", auth.NetworkRead, object("network", "name"), h.get)
	r.route("DELETE "+p+"/networks/{name}", auth.NetworkDelete, object("network", "name"), h.delete)
	r.route("POST "+p+"/configs/{name}/change-ips", auth.ConfigEdit, object("config", "name"), h.changeIPs)
	r.route("PUT "+p+"/configs/{name}/vms/{vm}/nics/{nic}/ip", auth.ConfigEdit, object("config", "name"), h.setIP)
}

func (h networksHandler) create(w http.ResponseWriter, r *http.Request) error {
	var req wire.NetworkRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	n, err := h.lab.Create(r.Context(), lab.NetworkSpec{
		Name:      req.Name,
		Subnet:    req.Subnet,
		Gateway:   req.Gateway,
		Pools:     req.Pools,
		DNS:       req.DNS,
		Workspace: req.Workspace,
	})
	if err != nil {
		return err
	}
	w.Header().Set("Location", location("networks", n.Name))
	return writeJSON(w, http.StatusCreated, networkToWire(n))
}

func (h networksHandler) list(w http.ResponseWriter, r *http.Request) error {
	ns, err := h.lab.ListIn(r.Context(), r.URL.Query().Get("workspace"))
	if err != nil {
		return err
	}
	return writeList(w, ns, networkToWire)
}

func (h networksHandler) get(w http.ResponseWriter, r *http.Request) error {
	n, err := h.lab.Get(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, networkToWire(n))
}

func (h networksHandler) delete(w http.ResponseWriter, r *http.Request) error {
	if err := h.lab.Delete(r.Context(), r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h networksHandler) changeIPs(w http.ResponseWriter, r *http.Request) error {
	c, err := h.lab.ChangeIPs(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, configToWire(c))
}

func (h networksHandler) setIP(w http.ResponseWriter, r *http.Request) error {
	nic, err := pathIndex(r, "nic")
	if err != nil {
		return err
	}
	var req wire.SetIPRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	c, err := h.lab.SetIP(r.Context(), r.PathValue("name"), r.PathValue("vm"), nic, req.IP)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, configToWire(c))
}
