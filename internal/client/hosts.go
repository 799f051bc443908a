package client

import (
	"context"
	"net/http"

	"stagehand/internal/api/wire"
)

// ListHosts returns the hosts of the installation.
func (c *Client) ListHosts(ctx context.Context) ([]wire.Host, error) {
	return list[wire.Host](ctx, c, path("hosts"), nil)
}

// GetHost returns one host with what is deployed on it.
func (c *Client) GetHost(ctx context.Context, name string) (*wire.Host, error) {
	return call[wire.Host](ctx, c, http.MethodGet, path("hosts", name), nil, nil)
}

// DrainHost marks a host draining: placement skips it; what runs there
// stays (Deployed says what).
func (c *Client) DrainHost(ctx context.Context, name string) (*wire.Host, error) {
	return call[wire.Host](ctx, c, http.MethodPost, path("hosts", name, "drain"), nil, nil)
}

// UndrainHost makes a draining host active again.
func (c *Client) UndrainHost(ctx context.Context, name string) (*wire.Host, error) {
	return call[wire.Host](ctx, c, http.MethodPost, path("hosts", name, "undrain"), nil, nil)
}

// RemoveHost marks a host removed; refused while configurations are
// deployed there.
func (c *Client) RemoveHost(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, path("hosts", name), nil, nil, nil)
}
