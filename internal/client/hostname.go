package client

import (
	"context"
	"net/http"

	"stagehand/internal/api/wire"
)

// SetHostname sets a VM's hostname ("" for the default, VM-CONFIG); the
// guest sees it at the configuration's next deploy.
func (c VMs) SetHostname(ctx context.Context, config, vm, hostname string) (*wire.Config, error) {
	return call[wire.Config](ctx, c.t, http.MethodPut, path("configs", config, "vms", vm, "hostname"), nil, wire.SetHostnameRequest{Hostname: hostname})
}
