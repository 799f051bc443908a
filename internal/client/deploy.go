package client

import (
	"context"
	"io"
	"net/http"
	"net/url"

	"stagehand/internal/api/wire"
)

// Deploy starts a configuration's VMs and returns it once they run (fenced
// or not, with a deployment lease, as req says).
func (c *Client) Deploy(ctx context.Context, name string, req wire.DeployRequest) (*wire.Config, error) {
	return call[wire.Config](ctx, c, http.MethodPost, path("configs", name, "deploy"), nil, req)
}

// Undeploy stops a configuration's VMs: powered off, or with
// req.SaveState suspended to state files that the next Deploy resumes.
func (c *Client) Undeploy(ctx context.Context, name string, req wire.UndeployRequest) (*wire.Config, error) {
	return call[wire.Config](ctx, c, http.MethodPost, path("configs", name, "undeploy"), nil, req)
}

// VMAction runs action (wire.VMStop, VMStart or VMReset) on one VM of a
// deployed configuration.
func (c *Client) VMAction(ctx context.Context, config, vm, action string) (*wire.Config, error) {
	return call[wire.Config](ctx, c, http.MethodPost, path("configs", config, "vms", vm, action), nil, nil)
}

// VMLog returns a VM's serial log as it is now. Close it when done.
func (c *Client) VMLog(ctx context.Context, config, vm string) (io.ReadCloser, error) {
	return c.stream(ctx, path("configs", config, "vms", vm, "log"), nil)
}

// FollowVMLog returns a VM's serial log and then what the VM writes, until
// ctx ends or the reader is closed.
func (c *Client) FollowVMLog(ctx context.Context, config, vm string) (io.ReadCloser, error) {
	return c.stream(ctx, path("configs", config, "vms", vm, "log"), url.Values{"follow": {"1"}})
}
