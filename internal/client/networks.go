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
