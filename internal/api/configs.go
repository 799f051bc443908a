package api

import (
	"context"
	"net/http"

	"stagehand/internal/api/wire"
	"stagehand/internal/auth"
	"stagehand/internal/jobs"
	"stagehand/internal/lab"
)

// Configs is what the configuration, clone and disk endpoints need
// (lab.Configs).
type Configs interface {
	Create(ctx context.Context, spec lab.ConfigSpec) (*lab.ConfigView, error)
	// ListIn lists one workspace ("ws" or "org/ws"), or all for "".
	ListIn(ctx context.Context, workspace string) ([]lab.ConfigView, error)
	Get(ctx context.Context, name string) (*lab.ConfigView, error)
	Delete(ctx context.Context, name string) error
	LinkedClone(ctx context.Context, src, dst string, opts lab.CreateOptions) (*lab.ConfigView, error)
	StartFullClone(ctx context.Context, src, dst string, opts lab.CreateOptions) (jobs.Job, error)
	DiskChain(ctx context.Context, config, vm string, disk int) ([]lab.LayerView, error)
	StartConsolidate(ctx context.Context, config, vm string, disk int) (jobs.Job, error)
	SetHostname(ctx context.Context, config, vm, hostname string) (*lab.ConfigView, error)
}

// configsHandler serves the configuration and clone endpoints.
type configsHandler struct{ lab Configs }

func (h configsHandler) register(r *router) {
	p := wire.APIPrefix
	r.route("POST "+p+"/configs", auth.ConfigCreate, noObject, h.create)
	r.route("GET "+p+"/configs", auth.ConfigRead, noObject, h.list)
	r.route("GET "+p+"/configs/{name}", auth.ConfigRead, object("config", "name"), h.get)
	r.route("DELETE "+p+"/configs/{name}", auth.ConfigDelete, object("config", "name"), h.delete)
	r.route("PUT "+p+"/configs/{name}/vms/{vm}/hostname", auth.ConfigEdit, object("config", "name"), h.setHostname)
	r.route("POST "+p+"/configs/{name}/clone", auth.ConfigClone, object("config", "name"), h.clone)
}

func (h configsHandler) create(w http.ResponseWriter, r *http.Request) error {
	var req wire.ConfigRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	spec := lab.ConfigSpec{Name: req.Name, Description: req.Description, Owner: req.Owner, Workspace: req.Workspace}
	for _, v := range req.VMs {
		spec.VMs = append(spec.VMs, lab.VMSpec{Name: v.Name, Template: v.Template, Network: v.Network, IP: v.IP, Hostname: v.Hostname})
	}
	var err error
	if spec.StorageLease, err = storageLease(req.StorageLease); err != nil {
		return err
	}
	c, err := h.lab.Create(r.Context(), spec)
	if err != nil {
		return err
	}
	w.Header().Set("Location", location("configs", c.Name))
	return writeJSON(w, http.StatusCreated, configToWire(c))
}

func (h configsHandler) list(w http.ResponseWriter, r *http.Request) error {
	cs, err := h.lab.ListIn(r.Context(), r.URL.Query().Get("workspace"))
	if err != nil {
		return err
	}
	return writeList(w, cs, configToWire)
}

func (h configsHandler) get(w http.ResponseWriter, r *http.Request) error {
	c, err := h.lab.Get(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, configToWire(c))
}

func (h configsHandler) delete(w http.ResponseWriter, r *http.Request) error {
	if err := h.lab.Delete(r.Context(), r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// clone answers a linked clone with 201 and the new configuration, and
// a full clone with 202, the job and its Location.
func (h configsHandler) clone(w http.ResponseWriter, r *http.Request) error {
	var req wire.CloneRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	src := r.PathValue("name")
	opts, err := createOptions(req.StorageLease, req.Workspace)
	if err != nil {
		return err
	}
	opts.WithState = req.WithState
	switch req.Mode {
	case "", wire.CloneLinked:
		c, err := h.lab.LinkedClone(r.Context(), src, req.Name, opts)
		if err != nil {
			return err
		}
		w.Header().Set("Location", location("configs", c.Name))
		return writeJSON(w, http.StatusCreated, configToWire(c))
	case wire.CloneFull:
		if req.WithState {
			return errMalformed("with_state makes a linked clone (it shares the frozen layers the state was saved with)")
		}
		j, err := h.lab.StartFullClone(r.Context(), src, req.Name, opts)
		if err != nil {
			return err
		}
		return writeAccepted(w, jobToWire(j))
	default:
		return errMalformed("clone mode %q is not %s or %s", req.Mode, wire.CloneLinked, wire.CloneFull)
	}
}
