package api

import (
	"context"
	"net/http"
	"time"

	"stagehand/internal/api/wire"
	"stagehand/internal/auth"
	"stagehand/internal/lab"
)

// Leases is what the lease and cleanup endpoints need (lab.Leases).
type Leases interface {
	Set(ctx context.Context, name string, ch lab.LeaseChange) (*lab.ConfigView, error)
	Cleanup(ctx context.Context, opts lab.CleanupOptions) (*lab.CleanupReport, error)
	Space(ctx context.Context, name string) (*lab.ConfigSpace, error)
}

// leasesHandler serves the lease and cleanup endpoints.
type leasesHandler struct{ lab Leases }

// register adds the lease route of a configuration and the cleanup
// routes. The cleanup view is filtered: each caller sees the candidates
// they may see, and applying it deletes only those of them the caller may
// delete (the lab decides each item's delete action), so both take
// cleanup.read.
func (h leasesHandler) register(r *router) {
	p := wire.APIPrefix
	r.route("POST "+p+"/configs/{name}/lease", auth.ConfigEdit, object("config", "name"), h.set)
	r.route("GET "+p+"/configs/{name}/space", auth.ConfigRead, object("config", "name"), h.space)
	r.filtered("GET "+p+"/cleanup", auth.CleanupRead, h.cleanupView)
	r.filtered("POST "+p+"/cleanup", auth.CleanupRead, h.cleanupApply)
}

// storageLease reads a request's storage lease: nil when not given (the
// daemon's default applies).
func storageLease(lease string) (*time.Duration, error) {
	if lease == "" {
		return nil, nil
	}
	d, err := lab.ParseLease(lease)
	if err != nil {
		return nil, err
	}
	return &d, nil
}

// createOptions reads the options of a request that makes an object from
// another: its storage lease and its workspace ("" is the source's).
func createOptions(lease, workspace string) (lab.CreateOptions, error) {
	d, err := storageLease(lease)
	return lab.CreateOptions{StorageLease: d, Workspace: workspace}, err
}

func parseLeaseField(name, v string) (*time.Duration, error) {
	if v == "" {
		return nil, nil
	}
	d, err := lab.ParseLease(v)
	if err != nil {
		return nil, errMalformed("%s: %v", name, err)
	}
	return &d, nil
}

func (h leasesHandler) set(w http.ResponseWriter, r *http.Request) error {
	var req wire.LeaseRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	var ch lab.LeaseChange
	var err error
	if ch.Storage, err = parseLeaseField("storage", req.Storage); err != nil {
		return err
	}
	if ch.Deploy, err = parseLeaseField("deploy", req.Deploy); err != nil {
		return err
	}
	ch.UndeployAction = req.UndeployAction
	if ch.Storage == nil && ch.Deploy == nil && ch.UndeployAction == "" {
		return errMalformed("give storage, deploy or undeploy_action")
	}
	c, err := h.lab.Set(r.Context(), r.PathValue("name"), ch)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, configToWire(c))
}

// space answers what deleting one configuration would free.
func (h leasesHandler) space(w http.ResponseWriter, r *http.Request) error {
	sp, err := h.lab.Space(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	out := wire.ConfigSpace{FreesBytes: sp.Frees, Layers: []wire.FreedLayer{}}
	for _, l := range sp.Layers {
		out.Layers = append(out.Layers, wire.FreedLayer{ID: l.ID, Path: l.Path, Bytes: l.Bytes})
	}
	return writeJSON(w, http.StatusOK, out)
}
