package api

import (
	"net/http"

	"stagehand/internal/api/wire"
	"stagehand/internal/lab"
)

func (h *Handler) createArchive(w http.ResponseWriter, r *http.Request) error {
	var req wire.ArchiveRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	opts, err := createOptions(req.StorageLease)
	if err != nil {
		return err
	}
	j, err := h.lab.StartArchive(r.Context(), req.Config, req.Name, opts)
	if err != nil {
		return err
	}
	return writeAccepted(w, jobToWire(j))
}

func (h *Handler) restoreArchive(w http.ResponseWriter, r *http.Request) error {
	var req wire.RestoreRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	opts, err := createOptions(req.StorageLease)
	if err != nil {
		return err
	}
	j, err := h.lab.StartRestore(r.Context(), r.PathValue("name"), req.Name, opts)
	if err != nil {
		return err
	}
	return writeAccepted(w, jobToWire(j))
}

func (h *Handler) exportArchive(w http.ResponseWriter, r *http.Request) error {
	var req wire.ExportRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	j, err := h.lab.StartExport(r.Context(), r.PathValue("name"), req.File)
	if err != nil {
		return err
	}
	return writeAccepted(w, jobToWire(j))
}

func (h *Handler) importArchive(w http.ResponseWriter, r *http.Request) error {
	var req wire.ImportRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	lease, err := storageLease(req.StorageLease)
	if err != nil {
		return err
	}
	j, err := h.lab.StartImport(r.Context(), lab.ImportSpec{File: req.File, Name: req.Name, MapNetwork: req.MapNetwork, StorageLease: lease})
	if err != nil {
		return err
	}
	return writeAccepted(w, jobToWire(j))
}

func (h *Handler) listArchives(w http.ResponseWriter, r *http.Request) error {
	as, err := h.lab.ListArchives(r.Context())
	if err != nil {
		return err
	}
	return writeList(w, as, archiveToWire)
}

func (h *Handler) getArchive(w http.ResponseWriter, r *http.Request) error {
	a, err := h.lab.GetArchive(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, archiveToWire(a))
}

func (h *Handler) deleteArchive(w http.ResponseWriter, r *http.Request) error {
	if err := h.lab.DeleteArchive(r.Context(), r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
