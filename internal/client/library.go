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
