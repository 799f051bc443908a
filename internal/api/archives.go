package api

import (
	"context"
	"io"
	"net/http"
	"net/textproto"
	"strings"
	"time"

	"stagehand/internal/api/wire"
	"stagehand/internal/auth"
	"stagehand/internal/jobs"
	"stagehand/internal/lab"
)

// Archives is what the archive endpoints need (lab.Archives).
type Archives interface {
	StartCreate(ctx context.Context, config, name string, opts lab.CreateOptions) (jobs.Job, error)
	StartRestore(ctx context.Context, archive, config string, opts lab.CreateOptions) (jobs.Job, error)
	Export(ctx context.Context, archive string, w io.Writer) error
	StartImport(ctx context.Context, spec lab.ImportSpec) (jobs.Job, error)
	// ListIn lists one workspace ("ws" or "org/ws"), or all for "".
	ListIn(ctx context.Context, workspace string) ([]lab.ArchiveView, error)
	Get(ctx context.Context, name string) (*lab.ArchiveView, error)
	Delete(ctx context.Context, name string) error
	SetLease(ctx context.Context, name string, storage time.Duration) (*lab.ArchiveView, error)
}

// archivesHandler serves the archive endpoints.
type archivesHandler struct {
	lab     Archives
	uploads Uploads
}

// register adds the archive routes. Creating an archive names the
// configuration archived in its body (see auth.ArchiveCreate). An
// archive's storage lease says when it is deleted, so setting it takes
// archive.delete (auth has no archive.edit).
func (h archivesHandler) register(r *router) {
	p := wire.APIPrefix
	r.route("POST "+p+"/archives", auth.ArchiveCreate, bodyObject("config", "config"), h.create)
	r.route("POST "+p+"/archives/import", auth.ArchiveImport, noObject, h.importFile)
	r.route("POST "+p+"/archives/upload", auth.ArchiveImport, noObject, h.upload)
	r.route("GET "+p+"/archives", auth.ArchiveRead, noObject, h.list)
	r.route("GET "+p+"/archives/{name}", auth.ArchiveRead, object("archive", "name"), h.get)
	r.route("DELETE "+p+"/archives/{name}", auth.ArchiveDelete, object("archive", "name"), h.delete)
	r.route("POST "+p+"/archives/{name}/restore", auth.ArchiveRestore, object("archive", "name"), h.restore)
	r.route("GET "+p+"/archives/{name}/bundle", auth.ArchiveExport, object("archive", "name"), h.download)
	r.route("POST "+p+"/archives/{name}/lease", auth.ArchiveDelete, object("archive", "name"), h.setLease)
}

func (h archivesHandler) create(w http.ResponseWriter, r *http.Request) error {
	var req wire.ArchiveRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	opts, err := createOptions(req.StorageLease, req.Workspace)
	if err != nil {
		return err
	}
	opts.WithSnapshots = req.WithSnapshots
	j, err := h.lab.StartCreate(r.Context(), req.Config, req.Name, opts)
	if err != nil {
		return err
	}
	return writeAccepted(w, jobToWire(j))
}

func (h archivesHandler) restore(w http.ResponseWriter, r *http.Request) error {
	var req wire.RestoreRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	opts, err := createOptions(req.StorageLease, req.Workspace)
	if err != nil {
		return err
	}
	j, err := h.lab.StartRestore(r.Context(), r.PathValue("name"), req.Name, opts)
	if err != nil {
		return err
	}
	return writeAccepted(w, jobToWire(j))
}

// download streams the archive's bundle as the answer, its sha256 as the
// trailer (see wire/uploads.go). The daemon writes no file for it. An
// export that fails once the answer has begun cuts the connection, so the
// client sees a bundle without its trailer, never a short one that looks
// whole.
func (h archivesHandler) download(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	if _, err := h.lab.Get(r.Context(), name); err != nil {
		return err
	}
	dw := newDownloadWriter(w)
	if err := h.lab.Export(r.Context(), name, dw); err != nil {
		if !dw.started {
			return err
		}
		panic(http.ErrAbortHandler)
	}
	dw.finish()
	return nil
}

// upload imports the bundle in the request's body as a new archive (see
// wire/uploads.go): the body is streamed into an upload, then the import
// runs as a job. The parameters are in the query.
func (h archivesHandler) upload(w http.ResponseWriter, r *http.Request) error {
	body, done := startUpload(w, r)
	defer done()
	q := r.URL.Query()
	lease, err := storageLease(q.Get("storage_lease"))
	if err != nil {
		return err
	}
	var mapping map[string]string
	for _, m := range q["map_network"] {
		old, nw, ok := strings.Cut(m, "=")
		if !ok || old == "" || nw == "" {
			return errMalformed("map_network %q is not OLD=NEW", m)
		}
		if mapping == nil {
			mapping = map[string]string{}
		}
		mapping[old] = nw
	}
	name := r.Header.Get(wire.HeaderFileName)
	if name == "" {
		name = "bundle.tar"
	}
	u, err := h.uploads.Receive(r.Context(), name, body, r.ContentLength, wantSHA256(textproto.MIMEHeader(r.Header)))
	if err != nil {
		return uploadError(w, err)
	}
	done()
	j, err := h.lab.StartImport(r.Context(), lab.ImportSpec{Upload: u, Name: q.Get("name"), MapNetwork: mapping, StorageLease: lease, Workspace: q.Get("workspace")})
	if err != nil {
		return err
	}
	return writeAccepted(w, jobToWire(j))
}

func (h archivesHandler) importFile(w http.ResponseWriter, r *http.Request) error {
	var req wire.ImportRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	lease, err := storageLease(req.StorageLease)
	if err != nil {
		return err
	}
	j, err := h.lab.StartImport(r.Context(), lab.ImportSpec{File: req.File, Name: req.Name, MapNetwork: req.MapNetwork, StorageLease: lease, Workspace: req.Workspace})
	if err != nil {
		return err
	}
	return writeAccepted(w, jobToWire(j))
}

func (h archivesHandler) list(w http.ResponseWriter, r *http.Request) error {
	as, err := h.lab.ListIn(r.Context(), r.URL.Query().Get("workspace"))
	if err != nil {
		return err
	}
	return writeList(w, as, archiveToWire)
}

func (h archivesHandler) get(w http.ResponseWriter, r *http.Request) error {
	a, err := h.lab.Get(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, archiveToWire(a))
}

func (h archivesHandler) delete(w http.ResponseWriter, r *http.Request) error {
	if err := h.lab.Delete(r.Context(), r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h archivesHandler) setLease(w http.ResponseWriter, r *http.Request) error {
	var req wire.LeaseRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.Deploy != "" || req.UndeployAction != "" {
		return errMalformed("an archive has only a storage lease")
	}
	d, err := parseLeaseField("storage", req.Storage)
	if err != nil {
		return err
	}
	if d == nil {
		return errMalformed("give storage")
	}
	a, err := h.lab.SetLease(r.Context(), r.PathValue("name"), *d)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, archiveToWire(a))
}
