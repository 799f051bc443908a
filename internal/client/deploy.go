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
func (c Configs) Deploy(ctx context.Context, name string, req wire.DeployRequest) (*wire.Config, error) {
	return call[wire.Config](ctx, c.t, http.MethodPost, path("configs", name, "deploy"), nil, req)
}

// Undeploy stops a configuration's VMs: powered off, or with
// req.SaveState suspended to state files that the next Deploy resumes.
func (c Configs) Undeploy(ctx context.Context, name string, req wire.UndeployRequest) (*wire.Config, error) {
	return call[wire.Config](ctx, c.t, http.MethodPost, path("configs", name, "undeploy"), nil, req)
}

// Action runs action (wire.VMStop, VMStart or VMReset) on one VM of a
// deployed configuration.
func (c VMs) Action(ctx context.Context, config, vm, action string) (*wire.Config, error) {
	return call[wire.Config](ctx, c.t, http.MethodPost, path("configs", config, "vms", vm, action), nil, nil)
}

// Log returns a VM's serial log as it is now. Close it when done.
func (c VMs) Log(ctx context.Context, config, vm string) (io.ReadCloser, error) {
	return c.t.stream(ctx, path("configs", config, "vms", vm, "log"), nil)
}

// FollowLog returns a VM's serial log and then what the VM writes, until
// ctx ends or the reader is closed.
func (c VMs) FollowLog(ctx context.Context, config, vm string) (io.ReadCloser, error) {
	return c.t.stream(ctx, path("configs", config, "vms", vm, "log"), url.Values{"follow": {"1"}})
}
