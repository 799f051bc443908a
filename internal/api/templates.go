package api

import (
	"context"
	"net/http"
	"net/url"

	"stagehand/internal/api/wire"
	"stagehand/internal/auth"
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

// templatesHandler serves the template endpoints.
type templatesHandler struct{ lab Templates }

func (h templatesHandler) register(r *router) {
	p := wire.APIPrefix
	r.route("POST "+p+"/templates", auth.TemplateCreate, noObject, h.importTemplate)
	r.route("GET "+p+"/templates", auth.TemplateRead, noObject, h.list)
	r.route("GET "+p+"/templates/{name}", auth.TemplateRead, object("template", "name"), h.get)
	r.route("DELETE "+p+"/templates/{name}", auth.TemplateDelete, object("template", "name"), h.delete)
}

func (h templatesHandler) importTemplate(w http.ResponseWriter, r *http.Request) error {
	var req wire.TemplateRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	t, err := h.lab.Import(r.Context(), lab.TemplateSpec{
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

func (h templatesHandler) list(w http.ResponseWriter, r *http.Request) error {
	ts, err := h.lab.List(r.Context())
	if err != nil {
		return err
	}
	return writeList(w, ts, templateToWire)
}

func (h templatesHandler) get(w http.ResponseWriter, r *http.Request) error {
	t, err := h.lab.Get(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, templateToWire(t))
}

func (h templatesHandler) delete(w http.ResponseWriter, r *http.Request) error {
	if err := h.lab.Delete(r.Context(), r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
