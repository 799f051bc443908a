package api

import (
	"context"
	"net/http"

	"stagehand/internal/api/wire"
	"stagehand/internal/lab"
)

// Networks is what the network and address endpoints need (lab.Networks).
type Networks interface {
	Create(ctx context.Context, spec lab.NetworkSpec) (*lab.NetworkView, error)
	List(ctx context.Context) ([]lab.NetworkView, error)
	Get(ctx context.Context, name string) (*lab.NetworkView, error)
	Delete(ctx context.Context, name string) error
	ChangeIPs(ctx context.Context, config string) (*lab.ConfigView, error)
	SetIP(ctx context.Context, config, vm string, nic int, ip string) (*lab.ConfigView, error)
}

func (h *Handler) createNetwork(w http.ResponseWriter, r *http.Request) error {
	var req wire.NetworkRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	n, err := h.lab.Networks.Create(r.Context(), lab.NetworkSpec{
		Name:    req.Name,
		Subnet:  req.Subnet,
		Gateway: req.Gateway,
		Pools:   req.Pools,
		DNS:     req.DNS,
	})
	if err != nil {
		return err
	}
	w.Header().Set("Location", location("networks", n.Name))
	return writeJSON(w, http.StatusCreated, networkToWire(n))
}

func (h *Handler) listNetworks(w http.ResponseWriter, r *http.Request) error {
	ns, err := h.lab.Networks.List(r.Context())
	if err != nil {
		return err
	}
	return writeList(w, ns, networkToWire)
}

func (h *Handler) getNetwork(w http.ResponseWriter, r *http.Request) error {
	n, err := h.lab.Networks.Get(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, networkToWire(n))
}

func (h *Handler) deleteNetwork(w http.ResponseWriter, r *http.Request) error {
	if err := h.lab.Networks.Delete(r.Context(), r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handler) changeIPs(w http.ResponseWriter, r *http.Request) error {
	c, err := h.lab.Networks.ChangeIPs(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, configToWire(c))
}

func (h *Handler) setIP(w http.ResponseWriter, r *http.Request) error {
	nic, err := pathIndex(r, "nic")
	if err != nil {
		return err
	}
	var req wire.SetIPRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	c, err := h.lab.Networks.SetIP(r.Context(), r.PathValue("name"), r.PathValue("vm"), nic, req.IP)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, configToWire(c))
}
