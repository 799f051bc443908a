package api

import (
	"context"
	"net/http"
	"time"

	"stagehand/internal/api/wire"
	"stagehand/internal/auth"
	"stagehand/internal/lab"
)

// Snapshots is what the snapshot endpoints need (lab.Snapshots, and
// lab.Configs for a clone from a snapshot).
type Snapshots interface {
	Create(ctx context.Context, config, name string, withState bool) (*lab.SnapshotView, error)
	List(ctx context.Context, config string) ([]lab.SnapshotView, error)
	Revert(ctx context.Context, config, name string) (*lab.ConfigView, error)
	Delete(ctx context.Context, config, name string) error
	CloneFromSnapshot(ctx context.Context, src, snapshot, dst string, opts lab.CreateOptions) (*lab.ConfigView, error)
}

// SnapshotsOf joins the lab's two halves of the snapshot endpoints.
func SnapshotsOf(s lab.Snapshots, c lab.Configs) Snapshots { return snapshotLab{s, c} }

type snapshotLab struct {
	lab.Snapshots
	configs lab.Configs
}

func (l snapshotLab) CloneFromSnapshot(ctx context.Context, src, snapshot, dst string, opts lab.CreateOptions) (*lab.ConfigView, error) {
	return l.configs.CloneFromSnapshot(ctx, src, snapshot, dst, opts)
}

// snapshotsHandler serves the snapshot trees of configurations. Taking,
// reverting and deleting a snapshot change the configuration's disks:
// config.edit, what a "change" share allows; a clone from a snapshot is
// a clone (config.clone, and config.create where the clone goes).
type snapshotsHandler struct{ lab Snapshots }

func (h snapshotsHandler) register(r *router) {
	p := wire.APIPrefix + "/configs/{name}/snapshots"
	r.route("GET "+p, auth.ConfigRead, object("config", "name"), h.list)
	r.route("POST "+p, auth.ConfigEdit, object("config", "name"), h.create)
	r.route("DELETE "+p+"/{snapshot}", auth.ConfigEdit, object("config", "name"), h.delete)
	r.route("POST "+p+"/{snapshot}/revert", auth.ConfigEdit, object("config", "name"), h.revert)
	r.route("POST "+p+"/{snapshot}/clone", auth.ConfigClone, object("config", "name"), h.clone)
}

func (h snapshotsHandler) list(w http.ResponseWriter, r *http.Request) error {
	ss, err := h.lab.List(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	return writeList(w, ss, snapshotToWire)
}

func (h snapshotsHandler) create(w http.ResponseWriter, r *http.Request) error {
	var req wire.SnapshotRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	s, err := h.lab.Create(r.Context(), r.PathValue("name"), req.Name, req.WithState)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, snapshotToWire(s))
}

func (h snapshotsHandler) delete(w http.ResponseWriter, r *http.Request) error {
	if err := h.lab.Delete(r.Context(), r.PathValue("name"), r.PathValue("snapshot")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// revert answers 200 with the configuration as it continues from the
// snapshot (deployed again when it was).
func (h snapshotsHandler) revert(w http.ResponseWriter, r *http.Request) error {
	c, err := h.lab.Revert(r.Context(), r.PathValue("name"), r.PathValue("snapshot"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, configToWire(c))
}

// clone answers 201 with the new configuration, a linked clone of the
// snapshot's point.
func (h snapshotsHandler) clone(w http.ResponseWriter, r *http.Request) error {
	var req wire.CloneRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.Mode != "" && req.Mode != wire.CloneLinked {
		return errMalformed("a clone from a snapshot is %s, not %q", wire.CloneLinked, req.Mode)
	}
	opts, err := createOptions(req.StorageLease, req.Workspace)
	if err != nil {
		return err
	}
	c, err := h.lab.CloneFromSnapshot(r.Context(), r.PathValue("name"), r.PathValue("snapshot"), req.Name, opts)
	if err != nil {
		return err
	}
	w.Header().Set("Location", location("configs", c.Name))
	return writeJSON(w, http.StatusCreated, configToWire(c))
}

func snapshotToWire(s *lab.SnapshotView) wire.Snapshot {
	out := wire.Snapshot{Name: s.Name, Parent: s.Parent, Depth: s.Depth, CreatedAt: s.CreatedAt, WithState: s.WithState,
		Current: s.Current, ExclusiveBytes: s.ExclusiveBytes, Layers: []wire.SnapshotLayer{}}
	for _, l := range s.Layers {
		out.Layers = append(out.Layers, wire.SnapshotLayer{VM: l.VM, Disk: l.Disk, Path: l.Path, State: l.State})
	}
	for _, p := range s.Pauses {
		out.Pauses = append(out.Pauses, wire.GuestPause{VM: p.VM, PauseMS: float64(p.Pause) / float64(time.Millisecond)})
	}
	return out
}
