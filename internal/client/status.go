package client

import (
	"context"
	"net/http"

	"stagehand/internal/api/wire"
)

// Status returns the daemon at a glance: version, uptime, accelerator (or
// that it is being probed), store, data dir, counts and recovery.
func (c *Client) Status(ctx context.Context) (*wire.Status, error) {
	var s wire.Status
	if err := c.do(ctx, http.MethodGet, path("status"), nil, nil, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// Ready reports whether the daemon accepts writes (its recovery of
// interrupted operations is done); while it recovers the error is of kind
// unavailable.
func (c *Client) Ready(ctx context.Context) error {
	var r wire.Ready
	return c.do(ctx, http.MethodGet, "/readyz", nil, nil, &r)
}
