package client

import (
	"context"
	"net/http"

	"stagehand/internal/api/wire"
)

// Create creates a configuration.
func (c Configs) Create(ctx context.Context, req wire.ConfigRequest) (*wire.Config, error) {
	return call[wire.Config](ctx, c.t, http.MethodPost, path("configs"), nil, req)
}

// LinkedClone makes req.Name from src by linked clone and returns it (the
// clone endpoint with mode linked; the daemon answers at once).
func (c Configs) LinkedClone(ctx context.Context, src string, req wire.CloneRequest) (*wire.Config, error) {
	req.Mode = wire.CloneLinked
	return call[wire.Config](ctx, c.t, http.MethodPost, path("configs", src, "clone"), nil, req)
}

// StartFullClone starts a full clone of src into req.Name and returns its
// job (the clone endpoint with mode full; the daemon answers with a job).
func (c Configs) StartFullClone(ctx context.Context, src string, req wire.CloneRequest) (*wire.Job, error) {
	req.Mode = wire.CloneFull
	return call[wire.Job](ctx, c.t, http.MethodPost, path("configs", src, "clone"), nil, req)
}

// ChangeIPs gives every pool NIC of a configuration a new address.
func (c Configs) ChangeIPs(ctx context.Context, name string) (*wire.Config, error) {
	return call[wire.Config](ctx, c.t, http.MethodPost, path("configs", name, "change-ips"), nil, nil)
}

// Deploy starts a configuration's VMs and returns it once they run (fenced
// or not, with a deployment lease, as req says).
func (c Configs) Deploy(ctx context.Context, name string, req wire.DeployRequest) (*wire.Config, error) {
	return call[wire.Config](ctx, c.t, http.MethodPost, path("configs", name, "deploy"), nil, req)
}

// Move makes another host an undeployed configuration's home (its tops
// and the frozen layers that host lacks move there).
func (c Configs) Move(ctx context.Context, name string, req wire.MoveRequest) (*wire.Config, error) {
	return call[wire.Config](ctx, c.t, http.MethodPost, path("configs", name, "move"), nil, req)
}

// Undeploy stops a configuration's VMs: powered off, or with
// req.SaveState suspended to state files that the next Deploy resumes.
func (c Configs) Undeploy(ctx context.Context, name string, req wire.UndeployRequest) (*wire.Config, error) {
	return call[wire.Config](ctx, c.t, http.MethodPost, path("configs", name, "undeploy"), nil, req)
}

// SetLease changes a configuration's (or library entry's) leases.
func (c Configs) SetLease(ctx context.Context, name string, req wire.LeaseRequest) (*wire.Config, error) {
	return call[wire.Config](ctx, c.t, http.MethodPost, path("configs", name, "lease"), nil, req)
}

// Share shares a configuration with a user or "group:G", or changes
// that grantee's level.
func (c Configs) Share(ctx context.Context, config string, req wire.ShareRequest) (*wire.Share, error) {
	return call[wire.Share](ctx, c.t, http.MethodPost, path("configs", config, "shares"), nil, req)
}

// Unshare removes a grantee's share of a configuration.
func (c Configs) Unshare(ctx context.Context, config, with string) error {
	return c.t.do(ctx, http.MethodDelete, path("configs", config, "shares", with), nil, nil, nil)
}

// Shares returns the shares of a configuration.
func (c Configs) Shares(ctx context.Context, config string) ([]wire.Share, error) {
	return list[wire.Share](ctx, c.t, path("configs", config, "shares"), nil)
}
