package api

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"stagehand/internal/api/wire"
	"stagehand/internal/auth"
	"stagehand/internal/lab"
)

// Templates is what the template endpoints need (lab.Templates).
type Templates interface {
	Import(ctx context.Context, spec lab.TemplateSpec) (*lab.TemplateView, error)
	// ListIn lists one workspace ("ws" or "org/ws"), or all for "".
	ListIn(ctx context.Context, workspace string) ([]lab.TemplateView, error)
	Get(ctx context.Context, name string) (*lab.TemplateView, error)
	Delete(ctx context.Context, name string) error
}

// location is the path of a resource, for Location headers.
func location(collection, name string) string {
	return wire.APIPrefix + "/" + collection + "/" + url.PathEscape(name)
}

// templatesHandler serves the template endpoints.
type templatesHandler struct {
	lab     Templates
	uploads Uploads
}

func (h templatesHandler) register(r *router) {
	p := wire.APIPrefix
	r.route("POST "+p+"/templates", auth.TemplateCreate, noObject, h.importTemplate)
	r.route("POST "+p+"/templates/upload", auth.TemplateCreate, noObject, h.upload)
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
		Workspace:   req.Workspace,
		UserData:    req.UserData,
		NoSeed:      req.NoSeed,
	})
	if err != nil {
		return err
	}
	w.Header().Set("Location", location("templates", t.Name))
	return writeJSON(w, http.StatusCreated, templateToWire(t))
}

// maxTemplateParts bounds the files of one template upload.
const maxTemplateParts = 16

// upload imports a template from the files in the request: a multipart
// body, its parts (disks, then kernel and initrd) each streamed into an
// upload as it arrives (see wire/uploads.go). The parameters are in the
// query.
func (h templatesHandler) upload(w http.ResponseWriter, r *http.Request) error {
	body, done := startUpload(w, r)
	defer done()
	q := r.URL.Query()
	spec := lab.TemplateSpec{
		Name: q.Get("name"), Description: q.Get("description"), Format: q.Get("format"),
		Cmdline: q.Get("cmdline"), Workspace: q.Get("workspace"),
	}
	switch v := q.Get("no_seed"); v {
	case "", "0", "false":
	case "1", "true":
		spec.NoSeed = true
	default:
		return errMalformed("no_seed %q is not 1 or 0", v)
	}
	for _, f := range []struct {
		key string
		to  *int
	}{{"cpus", &spec.CPUs}, {"memory_mib", &spec.MemoryMiB}} {
		if v := q.Get(f.key); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				return errMalformed("%s %q is not a number", f.key, v)
			}
			*f.to = n
		}
	}
	// Import closes the uploads; this is for the refusals before it.
	defer func() {
		for _, u := range append(append([]*lab.Upload(nil), spec.DiskUploads...), spec.KernelUpload, spec.InitrdUpload, spec.UserDataUpload) {
			if u != nil {
				u.Close()
			}
		}
	}()
	r.Body = io.NopCloser(body)
	mr, err := r.MultipartReader()
	if err != nil {
		return errMalformed("a template upload is a multipart/form-data body of parts %q, %q and %q: %v", wire.PartDisk, wire.PartKernel, wire.PartInitrd, err)
	}
	for n := 0; ; n++ {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return errMalformed("template upload: %v", err)
		}
		if n == maxTemplateParts {
			return errMalformed("template upload: more than %d files", maxTemplateParts)
		}
		field := part.FormName()
		switch {
		case field != wire.PartDisk && field != wire.PartKernel && field != wire.PartInitrd && field != wire.PartUserData:
			return errMalformed("template upload: part %q is not %q, %q, %q or %q", field, wire.PartDisk, wire.PartKernel, wire.PartInitrd, wire.PartUserData)
		case field == wire.PartDisk && (spec.KernelUpload != nil || spec.InitrdUpload != nil || spec.UserDataUpload != nil),
			field == wire.PartKernel && spec.KernelUpload != nil, field == wire.PartInitrd && spec.InitrdUpload != nil,
			field == wire.PartUserData && spec.UserDataUpload != nil:
			return errMalformed("template upload: the disks come first, then at most one kernel, one initrd and one user-data")
		}
		u, err := h.uploads.Receive(r.Context(), part.FileName(), part, declaredSize(part.Header), wantSHA256(part.Header))
		if err != nil {
			return uploadError(w, err)
		}
		switch field {
		case wire.PartDisk:
			spec.DiskUploads = append(spec.DiskUploads, u)
		case wire.PartKernel:
			spec.KernelUpload = u
		case wire.PartInitrd:
			spec.InitrdUpload = u
		case wire.PartUserData:
			spec.UserDataUpload = u
		}
	}
	t, err := h.lab.Import(r.Context(), spec)
	done()
	if err != nil {
		return err
	}
	w.Header().Set("Location", location("templates", t.Name))
	return writeJSON(w, http.StatusCreated, templateToWire(t))
}

func (h templatesHandler) list(w http.ResponseWriter, r *http.Request) error {
	ts, err := h.lab.ListIn(r.Context(), r.URL.Query().Get("workspace"))
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
