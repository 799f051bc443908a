package client

import (
	"context"
	"net/http"

	"stagehand/internal/api/wire"
)

// LeasePolicy returns a workspace's ("org/ws" or "ws") graduated lease
// policy.
func (c Workspaces) LeasePolicy(ctx context.Context, ref string) (*wire.LeasePolicy, error) {
	org, name := SplitRef(ref)
	return call[wire.LeasePolicy](ctx, c.t, http.MethodGet, path("workspaces", org, name, "lease-policy"), nil, nil)
}

// SetLeasePolicy replaces a workspace's graduated lease policy; no ladder
// and no webhook removes it.
func (c Workspaces) SetLeasePolicy(ctx context.Context, ref string, req wire.LeasePolicyRequest) (*wire.LeasePolicy, error) {
	org, name := SplitRef(ref)
	return call[wire.LeasePolicy](ctx, c.t, http.MethodPut, path("workspaces", org, name, "lease-policy"), nil, req)
}
