package client

import (
	"context"
	"net/http"

	"stagehand/internal/api/wire"
)

// Create creates a network.
func (c Networks) Create(ctx context.Context, req wire.NetworkRequest) (*wire.Network, error) {
	return call[wire.Network](ctx, c.t, http.MethodPost, path("networks"), nil, req)
}

// List returns every network with its usage.
func (c Networks) List(ctx context.Context) ([]wire.Network, error) {
	return c.ListIn(ctx, "")
}

// ListIn returns every network the caller may see in
// workspace ("ws" or "org/ws"; "" every workspace).
func (c Networks) ListIn(ctx context.Context, workspace string) ([]wire.Network, error) {
	return list[wire.Network](ctx, c.t, path("networks"), workspaceQuery(workspace))
}

// Get returns one network with its usage.
func (c Networks) Get(ctx context.Context, name string) (*wire.Network, error) {
	return call[wire.Network](ctx, c.t, http.MethodGet, path("networks", name), nil, nil)
}

// Delete deletes a network.
func (c Networks) Delete(ctx context.Context, name string) error {
	return c.t.do(ctx, http.MethodDelete, path("networks", name), nil, nil, nil)
}
