package client

import (
	"context"
	"net/http"

	"stagehand/internal/api/wire"
)

// CreateNetwork creates a network.
func (c *Client) CreateNetwork(ctx context.Context, req wire.NetworkRequest) (*wire.Network, error) {
	return call[wire.Network](ctx, c, http.MethodPost, path("networks"), nil, req)
}

// ListNetworks returns every network with its usage.
func (c *Client) ListNetworks(ctx context.Context) ([]wire.Network, error) {
	return c.ListNetworksIn(ctx, "")
}

// ListNetworksIn returns every network the caller may see in
// workspace ("ws" or "org/ws"; "" every workspace).
func (c *Client) ListNetworksIn(ctx context.Context, workspace string) ([]wire.Network, error) {
	return list[wire.Network](ctx, c, path("networks"), workspaceQuery(workspace))
}

// GetNetwork returns one network with its usage.
func (c *Client) GetNetwork(ctx context.Context, name string) (*wire.Network, error) {
	return call[wire.Network](ctx, c, http.MethodGet, path("networks", name), nil, nil)
}

// DeleteNetwork deletes a network.
func (c *Client) DeleteNetwork(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, path("networks", name), nil, nil, nil)
}
