package api

import (
	"net/http"

	"stagehand/internal/api/wire"
)

// setHostname sets a VM's hostname (PUT /configs/{name}/vms/{vm}/hostname):
// what its cloud-init seed says from the next deploy on.
func (h configsHandler) setHostname(w http.ResponseWriter, r *http.Request) error {
	var req wire.SetHostnameRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	c, err := h.lab.SetHostname(r.Context(), r.PathValue("name"), r.PathValue("vm"), req.Hostname)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, configToWire(c))
}
