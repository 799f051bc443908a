package api

import (
	"net/http"

	"stagehand/internal/api/wire"
	"stagehand/internal/auth"
)

// disksHandler serves the endpoints of a VM's disks: their layer chains
// and consolidation (lab.Configs, which owns the layers).
type disksHandler struct{ lab Configs }

// register adds the disk routes. Consolidating rewrites a configuration's
// storage, an edit of it.
func (h disksHandler) register(r *router) {
	p := wire.APIPrefix
	r.route("GET "+p+"/configs/{name}/vms/{vm}/disks/{disk}/chain", auth.ConfigRead, object("config", "name"), h.chain)
	r.route("POST "+p+"/configs/{name}/vms/{vm}/disks/{disk}/consolidate", auth.ConfigEdit, object("config", "name"), h.consolidate)
}

func (h disksHandler) chain(w http.ResponseWriter, r *http.Request) error {
	disk, err := pathIndex(r, "disk")
	if err != nil {
		return err
	}
	ls, err := h.lab.DiskChain(r.Context(), r.PathValue("name"), r.PathValue("vm"), disk)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, layersToWire(ls))
}

func (h disksHandler) consolidate(w http.ResponseWriter, r *http.Request) error {
	disk, err := pathIndex(r, "disk")
	if err != nil {
		return err
	}
	j, err := h.lab.StartConsolidate(r.Context(), r.PathValue("name"), r.PathValue("vm"), disk)
	if err != nil {
		return err
	}
	return writeAccepted(w, jobToWire(j))
}
