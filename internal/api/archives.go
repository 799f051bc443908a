package api

import (
	"context"
	"net/http"
	"stagehand/internal/jobs"
	"time"

	"stagehand/internal/api/wire"
	"stagehand/internal/lab"
)

// Archives is what the archive endpoints need (lab.Archives).
type Archives interface {
	StartCreate(ctx context.Context, config, name string, opts lab.CreateOptions) (jobs.Job, error)
	StartRestore(ctx context.Context, archive, config string, opts lab.CreateOptions) (jobs.Job, error)
	StartExport(ctx context.Context, archive, file string) (jobs.Job, error)
	StartImport(ctx context.Context, spec lab.ImportSpec) (jobs.Job, error)
	List(ctx context.Context) ([]lab.ArchiveView, error)
	Get(ctx context.Context, name string) (*lab.ArchiveView, error)
	Delete(ctx context.Context, name string) error
	SetLease(ctx context.Context, name string, storage time.Duration) (*lab.ArchiveView, error)
}

func (h *Handler) createArchive(w http.ResponseWriter, r *http.Request) error {
	var req wire.ArchiveRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	opts, err := createOptions(req.StorageLease)
	if err != nil {
		return err
	}
	j, err := h.lab.Archives.StartCreate(r.Context(), req.Config, req.Name, opts)
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
	j, err := h.lab.Archives.StartRestore(r.Context(), r.PathValue("name"), req.Name, opts)
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
	j, err := h.lab.Archives.StartExport(r.Context(), r.PathValue("name"), req.File)
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
	j, err := h.lab.Archives.StartImport(r.Context(), lab.ImportSpec{File: req.File, Name: req.Name, MapNetwork: req.MapNetwork, StorageLease: lease})
	if err != nil {
		return err
	}
	return writeAccepted(w, jobToWire(j))
}

func (h *Handler) listArchives(w http.ResponseWriter, r *http.Request) error {
	as, err := h.lab.Archives.List(r.Context())
	if err != nil {
		return err
	}
	return writeList(w, as, archiveToWire)
}

func (h *Handler) getArchive(w http.ResponseWriter, r *http.Request) error {
	a, err := h.lab.Archives.Get(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, archiveToWire(a))
}

func (h *Handler) deleteArchive(w http.ResponseWriter, r *http.Request) error {
	if err := h.lab.Archives.Delete(r.Context(), r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
