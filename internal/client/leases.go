package client

import (
	"context"
	"net/http"

	"stagehand/internal/api/wire"
)

// SetLease changes a configuration's (or library entry's) leases.
func (c Configs) SetLease(ctx context.Context, name string, req wire.LeaseRequest) (*wire.Config, error) {
	return call[wire.Config](ctx, c.t, http.MethodPost, path("configs", name, "lease"), nil, req)
}

// SetLease changes an archive's storage lease (req.Storage; the
// other fields do not apply to archives).
func (c Archives) SetLease(ctx context.Context, name string, req wire.LeaseRequest) (*wire.Archive, error) {
	return call[wire.Archive](ctx, c.t, http.MethodPost, path("archives", name, "lease"), nil, req)
}
