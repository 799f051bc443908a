package client

import (
	"context"
	"net/http"
	"net/url"

	"stagehand/internal/api/wire"
)

// Shortcut runs the shortcut pass for a configuration now (vm "" is
// every VM): deep chains get a shortcut layer, and the children of its
// run move onto it (running disks live).
func (c VMs) Shortcut(ctx context.Context, config, vm string) (*wire.ShortcutReport, error) {
	var q url.Values
	if vm != "" {
		q = url.Values{"vm": {vm}}
	}
	return call[wire.ShortcutReport](ctx, c.t, http.MethodPost, path("configs", config, "shortcut"), q, nil)
}
