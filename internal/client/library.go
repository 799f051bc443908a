package client

import (
	"context"
	"net/http"

	"stagehand/internal/api/wire"
)

// Capture copies a configuration into the library.
func (c Library) Capture(ctx context.Context, req wire.CaptureRequest) (*wire.Config, error) {
	return call[wire.Config](ctx, c.t, http.MethodPost, path("library"), nil, req)
}

// Checkout makes a configuration from a library entry.
func (c Library) Checkout(ctx context.Context, entry string, req wire.CheckoutRequest) (*wire.Config, error) {
	return call[wire.Config](ctx, c.t, http.MethodPost, path("library", entry, "checkout"), nil, req)
}

// List returns every library entry.
func (c Library) List(ctx context.Context) ([]wire.Config, error) {
	return c.ListIn(ctx, "")
}

// ListIn returns every library entry the caller may see in
// workspace ("ws" or "org/ws"; "" every workspace).
func (c Library) ListIn(ctx context.Context, workspace string) ([]wire.Config, error) {
	return list[wire.Config](ctx, c.t, path("library"), workspaceQuery(workspace))
}

// Get returns one library entry.
func (c Library) Get(ctx context.Context, name string) (*wire.Config, error) {
	return call[wire.Config](ctx, c.t, http.MethodGet, path("library", name), nil, nil)
}

// Delete deletes a library entry.
func (c Library) Delete(ctx context.Context, name string) error {
	return c.t.do(ctx, http.MethodDelete, path("library", name), nil, nil, nil)
}
