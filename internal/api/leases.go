package api

import (
	"context"
	"net/http"
	"time"

	"stagehand/internal/api/wire"
	"stagehand/internal/lab"
)

// Leases is what the lease and cleanup endpoints need (lab.Leases).
type Leases interface {
	Set(ctx context.Context, name string, ch lab.LeaseChange) (*lab.ConfigView, error)
	Cleanup(ctx context.Context, opts lab.CleanupOptions) (*lab.CleanupReport, error)
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

// createOptions reads the options of a request that creates an object.
func createOptions(lease string) (lab.CreateOptions, error) {
	d, err := storageLease(lease)
	return lab.CreateOptions{StorageLease: d}, err
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

func (h *Handler) setLease(w http.ResponseWriter, r *http.Request) error {
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
	c, err := h.lab.Leases.Set(r.Context(), r.PathValue("name"), ch)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, configToWire(c))
}

func (h *Handler) setArchiveLease(w http.ResponseWriter, r *http.Request) error {
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
	a, err := h.lab.Archives.SetLease(r.Context(), r.PathValue("name"), *d)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, archiveToWire(a))
}
