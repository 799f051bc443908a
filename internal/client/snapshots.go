package client

import (
	"context"
	"net/http"

	"stagehand/internal/api/wire"
)

// Snapshots are the snapshot trees of configurations: take, list,
// revert, delete and clone from them.
type Snapshots struct{ t *transport }

// Snapshots returns the endpoints of configurations' snapshots.
func (c *Client) Snapshots() Snapshots { return Snapshots{c.t} }

// Create takes snapshot req.Name of config and returns it (with each
// guest's pause when config is deployed).
func (s Snapshots) Create(ctx context.Context, config string, req wire.SnapshotRequest) (*wire.Snapshot, error) {
	return call[wire.Snapshot](ctx, s.t, http.MethodPost, path("configs", config, "snapshots"), nil, req)
}

// List returns config's snapshots in tree order.
func (s Snapshots) List(ctx context.Context, config string) ([]wire.Snapshot, error) {
	return list[wire.Snapshot](ctx, s.t, path("configs", config, "snapshots"), nil)
}

// Revert makes config continue from snapshot name and returns it.
func (s Snapshots) Revert(ctx context.Context, config, name string) (*wire.Config, error) {
	return call[wire.Config](ctx, s.t, http.MethodPost, path("configs", config, "snapshots", name, "revert"), nil, nil)
}

// Delete deletes snapshot name of config.
func (s Snapshots) Delete(ctx context.Context, config, name string) error {
	return s.t.do(ctx, http.MethodDelete, path("configs", config, "snapshots", name), nil, nil, nil)
}

// Clone makes req.Name, a linked clone of config at snapshot name.
func (s Snapshots) Clone(ctx context.Context, config, name string, req wire.CloneRequest) (*wire.Config, error) {
	req.Mode = wire.CloneLinked
	return call[wire.Config](ctx, s.t, http.MethodPost, path("configs", config, "snapshots", name, "clone"), nil, req)
}
