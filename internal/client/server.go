package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"stagehand/internal/api/wire"
)

// Health checks that the daemon answers.
func (c Server) Health(ctx context.Context) error {
	_, err := call[wire.Health](ctx, c.t, http.MethodGet, "/healthz", nil, nil)
	return err
}

// Ready reports whether the daemon accepts writes (its recovery of
// interrupted operations is done); while it recovers the error is of kind
// unavailable.
func (c Server) Ready(ctx context.Context) error {
	_, err := call[wire.Ready](ctx, c.t, http.MethodGet, "/readyz", nil, nil)
	return err
}

// Status returns the daemon at a glance: version, uptime, accelerator (or
// that it is being probed), store, data dir, counts and recovery.
func (c Server) Status(ctx context.Context) (*wire.Status, error) {
	return call[wire.Status](ctx, c.t, http.MethodGet, path("status"), nil, nil)
}

// Doctor checks the store against the files; with repair it fixes what is
// safe to fix.
func (c Server) Doctor(ctx context.Context, repair bool) (*wire.DoctorReport, error) {
	if repair {
		return call[wire.DoctorReport](ctx, c.t, http.MethodPost, path("doctor", "repair"), nil, nil)
	}
	return call[wire.DoctorReport](ctx, c.t, http.MethodGet, path("doctor"), nil, nil)
}

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
