package client

import (
	"context"
	"net/http"

	"stagehand/internal/api/wire"
)

// SetLease changes a configuration's (or library entry's) leases.
func (c *Client) SetLease(ctx context.Context, name string, req wire.LeaseRequest) (*wire.Config, error) {
	return call[wire.Config](ctx, c, http.MethodPost, path("configs", name, "lease"), nil, req)
}

// SetArchiveLease changes an archive's storage lease (req.Storage; the
// other fields do not apply to archives).
func (c *Client) SetArchiveLease(ctx context.Context, name string, req wire.LeaseRequest) (*wire.Archive, error) {
	return call[wire.Archive](ctx, c, http.MethodPost, path("archives", name, "lease"), nil, req)
}
