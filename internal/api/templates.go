package api

import (
	"context"
	"net/http"
	"net/url"

	"stagehand/internal/api/wire"
	"stagehand/internal/lab"
)

// Templates is what the template endpoints need (lab.Templates).
type Templates interface {
	Import(ctx context.Context, spec lab.TemplateSpec) (*lab.TemplateView, error)
	List(ctx context.Context) ([]lab.TemplateView, error)
	Get(ctx context.Context, name string) (*lab.TemplateView, error)
	Delete(ctx context.Context, name string) error
}

// location is the path of a resource, for Location headers.
func location(collection, name string) string {
	return wire.APIPrefix + "/" + collection + "/" + url.PathEscape(name)
}

func (h *Handler) importTemplate(w http.ResponseWriter, r *http.Request) error {
	var req wire.TemplateRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	t, err := h.lab.Templates.Import(r.Context(), lab.TemplateSpec{
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
	ts, err := h.lab.Templates.List(r.Context())
	if err != nil {
		return err
	}
	return writeList(w, ts, templateToWire)
}

func (h *Handler) getTemplate(w http.ResponseWriter, r *http.Request) error {
	t, err := h.lab.Templates.Get(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, templateToWire(t))
}

func (h *Handler) deleteTemplate(w http.ResponseWriter, r *http.Request) error {
	if err := h.lab.Templates.Delete(r.Context(), r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
