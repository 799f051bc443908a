package client

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"stagehand/internal/api/wire"
)

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

// SetIP sets one NIC's address ("pool", "dhcp" or an address).
func (c VMs) SetIP(ctx context.Context, config, vm string, nic int, req wire.SetIPRequest) (*wire.Config, error) {
	return call[wire.Config](ctx, c.t, http.MethodPut, path("configs", config, "vms", vm, "nics", strconv.Itoa(nic), "ip"), nil, req)
}

// DiskChain returns a VM disk's layers, top first.
func (c VMs) DiskChain(ctx context.Context, config, vm string, disk int) ([]wire.Layer, error) {
	return list[wire.Layer](ctx, c.t, path("configs", config, "vms", vm, "disks", strconv.Itoa(disk), "chain"), nil)
}

// StartConsolidate starts rewriting a VM disk's chain into one base.
func (c VMs) StartConsolidate(ctx context.Context, config, vm string, disk int) (*wire.Job, error) {
	return call[wire.Job](ctx, c.t, http.MethodPost, path("configs", config, "vms", vm, "disks", strconv.Itoa(disk), "consolidate"), nil, nil)
}
