package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"stagehand/internal/api/wire"
)

// Cleanup returns the cleanup view; idleDays adds what was idle that long
// (0: none; the daemon refuses a negative count).
func (c Server) Cleanup(ctx context.Context, idleDays int) (*wire.CleanupReport, error) {
	q := url.Values{}
	if idleDays != 0 {
		q.Set("idle_days", strconv.Itoa(idleDays))
	}
	return call[wire.CleanupReport](ctx, c.t, http.MethodGet, path("cleanup"), q, nil)
}

// ApplyCleanup deletes what the cleanup view lists as deletable (with
// DryRun only says so).
func (c Server) ApplyCleanup(ctx context.Context, req wire.CleanupRequest) (*wire.CleanupReport, error) {
	return call[wire.CleanupReport](ctx, c.t, http.MethodPost, path("cleanup"), nil, req)
}
