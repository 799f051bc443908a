package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"stagehand/internal/api/wire"
)

// Create creates a configuration.
func (c Configs) Create(ctx context.Context, req wire.ConfigRequest) (*wire.Config, error) {
	return call[wire.Config](ctx, c.t, http.MethodPost, path("configs"), nil, req)
}

// List returns every configuration.
func (c Configs) List(ctx context.Context) ([]wire.Config, error) {
	return c.ListIn(ctx, "")
}

// ListIn returns every configuration the caller may see in
// workspace ("ws" or "org/ws"; "" every workspace).
func (c Configs) ListIn(ctx context.Context, workspace string) ([]wire.Config, error) {
	return list[wire.Config](ctx, c.t, path("configs"), workspaceQuery(workspace))
}

// Get returns one configuration.
func (c Configs) Get(ctx context.Context, name string) (*wire.Config, error) {
	return call[wire.Config](ctx, c.t, http.MethodGet, path("configs", name), nil, nil)
}

// Delete deletes a configuration.
func (c Configs) Delete(ctx context.Context, name string) error {
	return c.t.do(ctx, http.MethodDelete, path("configs", name), nil, nil, nil)
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

// workspaceQuery is the query that limits a list to workspace; nil for "".
func workspaceQuery(workspace string) url.Values {
	if workspace == "" {
		return nil
	}
	return url.Values{"workspace": {workspace}}
}
