package api

import (
	"context"
	"net/http"

	"stagehand/internal/api/wire"
	"stagehand/internal/jobs"
	"stagehand/internal/lab"
)

// Configs is what the configuration, clone and disk endpoints need
// (lab.Configs).
type Configs interface {
	Create(ctx context.Context, spec lab.ConfigSpec) (*lab.ConfigView, error)
	List(ctx context.Context) ([]lab.ConfigView, error)
	Get(ctx context.Context, name string) (*lab.ConfigView, error)
	Delete(ctx context.Context, name string) error
	LinkedClone(ctx context.Context, src, dst string, opts lab.CreateOptions) (*lab.ConfigView, error)
	StartFullClone(ctx context.Context, src, dst string, opts lab.CreateOptions) (jobs.Job, error)
	DiskChain(ctx context.Context, config, vm string, disk int) ([]lab.LayerView, error)
	StartConsolidate(ctx context.Context, config, vm string, disk int) (jobs.Job, error)
}

func (h *Handler) createConfig(w http.ResponseWriter, r *http.Request) error {
	var req wire.ConfigRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	spec := lab.ConfigSpec{Name: req.Name, Description: req.Description, Owner: req.Owner}
	for _, v := range req.VMs {
		spec.VMs = append(spec.VMs, lab.VMSpec{Name: v.Name, Template: v.Template, Network: v.Network, IP: v.IP})
	}
	var err error
	if spec.StorageLease, err = storageLease(req.StorageLease); err != nil {
		return err
	}
	c, err := h.lab.Configs.Create(r.Context(), spec)
	if err != nil {
		return err
	}
	w.Header().Set("Location", location("configs", c.Name))
	return writeJSON(w, http.StatusCreated, configToWire(c))
}

func (h *Handler) listConfigs(w http.ResponseWriter, r *http.Request) error {
	cs, err := h.lab.Configs.List(r.Context())
	if err != nil {
		return err
	}
	return writeList(w, cs, configToWire)
}

func (h *Handler) getConfig(w http.ResponseWriter, r *http.Request) error {
	c, err := h.lab.Configs.Get(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, configToWire(c))
}

func (h *Handler) deleteConfig(w http.ResponseWriter, r *http.Request) error {
	if err := h.lab.Configs.Delete(r.Context(), r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// cloneConfig answers a linked clone with 201 and the new configuration, and
// a full clone with 202, the job and its Location.
func (h *Handler) cloneConfig(w http.ResponseWriter, r *http.Request) error {
	var req wire.CloneRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	src := r.PathValue("name")
	opts, err := createOptions(req.StorageLease)
	if err != nil {
		return err
	}
	switch req.Mode {
	case "", wire.CloneLinked:
		c, err := h.lab.Configs.LinkedClone(r.Context(), src, req.Name, opts)
		if err != nil {
			return err
		}
		w.Header().Set("Location", location("configs", c.Name))
		return writeJSON(w, http.StatusCreated, configToWire(c))
	case wire.CloneFull:
		j, err := h.lab.Configs.StartFullClone(r.Context(), src, req.Name, opts)
		if err != nil {
			return err
		}
		return writeAccepted(w, jobToWire(j))
	default:
		return errMalformed("clone mode %q is not %s or %s", req.Mode, wire.CloneLinked, wire.CloneFull)
	}
}

func (h *Handler) diskChain(w http.ResponseWriter, r *http.Request) error {
	disk, err := pathIndex(r, "disk")
	if err != nil {
		return err
	}
	ls, err := h.lab.Configs.DiskChain(r.Context(), r.PathValue("name"), r.PathValue("vm"), disk)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, layersToWire(ls))
}

func (h *Handler) consolidate(w http.ResponseWriter, r *http.Request) error {
	disk, err := pathIndex(r, "disk")
	if err != nil {
		return err
	}
	j, err := h.lab.Configs.StartConsolidate(r.Context(), r.PathValue("name"), r.PathValue("vm"), disk)
	if err != nil {
		return err
	}
	return writeAccepted(w, jobToWire(j))
}
