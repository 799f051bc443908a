package client

import (
	"context"
	"net/http"
	"strconv"

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
