package client

import (
	"context"
	"net/http"

	"stagehand/internal/api/wire"
)

// Capture copies a configuration into the library.
func (c *Client) Capture(ctx context.Context, req wire.CaptureRequest) (*wire.Config, error) {
	return call[wire.Config](ctx, c, http.MethodPost, path("library"), nil, req)
}

// Checkout makes a configuration from a library entry.
func (c *Client) Checkout(ctx context.Context, entry string, req wire.CheckoutRequest) (*wire.Config, error) {
	return call[wire.Config](ctx, c, http.MethodPost, path("library", entry, "checkout"), nil, req)
}

// ListLibrary returns every library entry.
func (c *Client) ListLibrary(ctx context.Context) ([]wire.Config, error) {
	return c.ListLibraryIn(ctx, "")
}

// ListLibraryIn returns every library entry the caller may see in
// workspace ("ws" or "org/ws"; "" every workspace).
func (c *Client) ListLibraryIn(ctx context.Context, workspace string) ([]wire.Config, error) {
	return list[wire.Config](ctx, c, path("library"), workspaceQuery(workspace))
}

// GetLibraryEntry returns one library entry.
func (c *Client) GetLibraryEntry(ctx context.Context, name string) (*wire.Config, error) {
	return call[wire.Config](ctx, c, http.MethodGet, path("library", name), nil, nil)
}

// DeleteLibraryEntry deletes a library entry.
func (c *Client) DeleteLibraryEntry(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, path("library", name), nil, nil, nil)
}
