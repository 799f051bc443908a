package api

import (
	"net/http"
	"net/url"

	"stagehand/internal/api/wire"
	"stagehand/internal/lab"
)

// location is the path of a resource, for Location headers.
func location(collection, name string) string {
	return wire.APIPrefix + "/" + collection + "/" + url.PathEscape(name)
}

func (h *Handler) importTemplate(w http.ResponseWriter, r *http.Request) error {
	var req wire.TemplateRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	t, err := h.lab.ImportTemplate(r.Context(), lab.TemplateSpec{
		Name:        req.Name,
		Description: req.Description,
		Disks:       req.Disks,
		Format:      req.Format,
		CPUs:        req.CPUs,
		MemoryMiB:   req.MemoryMiB,
		Kernel:      req.Kernel,
		Initrd:      req.Initrd,
		Cmdline:     req.Cmdline,
	})
	if err != nil {
		return err
	}
	w.Header().Set("Location", location("templates", t.Name))
	return writeJSON(w, http.StatusCreated, templateToWire(t))
}

func (h *Handler) listTemplates(w http.ResponseWriter, r *http.Request) error {
	ts, err := h.lab.ListTemplates(r.Context())
	if err != nil {
		return err
	}
	return writeList(w, ts, templateToWire)
}

func (h *Handler) getTemplate(w http.ResponseWriter, r *http.Request) error {
	t, err := h.lab.GetTemplate(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, templateToWire(t))
}

func (h *Handler) deleteTemplate(w http.ResponseWriter, r *http.Request) error {
	if err := h.lab.DeleteTemplate(r.Context(), r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handler) createNetwork(w http.ResponseWriter, r *http.Request) error {
	var req wire.NetworkRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	n, err := h.lab.CreateNetwork(r.Context(), lab.NetworkSpec{
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
	ns, err := h.lab.ListNetworks(r.Context())
	if err != nil {
		return err
	}
	return writeList(w, ns, networkToWire)
}

func (h *Handler) getNetwork(w http.ResponseWriter, r *http.Request) error {
	n, err := h.lab.GetNetwork(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, networkToWire(n))
}

func (h *Handler) deleteNetwork(w http.ResponseWriter, r *http.Request) error {
	if err := h.lab.DeleteNetwork(r.Context(), r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
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
	c, err := h.lab.CreateConfig(r.Context(), spec)
	if err != nil {
		return err
	}
	w.Header().Set("Location", location("configs", c.Name))
	return writeJSON(w, http.StatusCreated, configToWire(c))
}

func (h *Handler) listConfigs(w http.ResponseWriter, r *http.Request) error {
	cs, err := h.lab.ListConfigs(r.Context())
	if err != nil {
		return err
	}
	return writeList(w, cs, configToWire)
}

func (h *Handler) getConfig(w http.ResponseWriter, r *http.Request) error {
	c, err := h.lab.GetConfig(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, configToWire(c))
}

func (h *Handler) deleteConfig(w http.ResponseWriter, r *http.Request) error {
	if err := h.lab.DeleteConfig(r.Context(), r.PathValue("name")); err != nil {
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
		c, err := h.lab.LinkedClone(r.Context(), src, req.Name, opts)
		if err != nil {
			return err
		}
		w.Header().Set("Location", location("configs", c.Name))
		return writeJSON(w, http.StatusCreated, configToWire(c))
	case wire.CloneFull:
		j, err := h.lab.StartFullClone(r.Context(), src, req.Name, opts)
		if err != nil {
			return err
		}
		return writeAccepted(w, jobToWire(j))
	default:
		return errMalformed("clone mode %q is not %s or %s", req.Mode, wire.CloneLinked, wire.CloneFull)
	}
}

func (h *Handler) changeIPs(w http.ResponseWriter, r *http.Request) error {
	c, err := h.lab.ChangeIPs(r.Context(), r.PathValue("name"))
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
	c, err := h.lab.SetIP(r.Context(), r.PathValue("name"), r.PathValue("vm"), nic, req.IP)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, configToWire(c))
}

func (h *Handler) diskChain(w http.ResponseWriter, r *http.Request) error {
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

func (h *Handler) consolidate(w http.ResponseWriter, r *http.Request) error {
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

func (h *Handler) doctor(w http.ResponseWriter, r *http.Request) error {
	rep, err := h.lab.Doctor(r.Context(), false)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, doctorToWire(rep))
}

func (h *Handler) doctorRepair(w http.ResponseWriter, r *http.Request) error {
	rep, err := h.lab.Doctor(r.Context(), true)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, doctorToWire(rep))
}
