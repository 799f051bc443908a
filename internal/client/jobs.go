package client

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"stagehand/internal/api/wire"
)

// List returns every job, oldest first.
func (c Jobs) List(ctx context.Context) ([]wire.Job, error) {
	return list[wire.Job](ctx, c.t, path("jobs"), nil)
}

// Get returns a job's snapshot.
func (c Jobs) Get(ctx context.Context, id string) (*wire.Job, error) {
	return call[wire.Job](ctx, c.t, http.MethodGet, path("jobs", id), nil, nil)
}

// Wait returns the job's snapshot once it ends or timeout passes,
// whichever is first; look at its State.
func (c Jobs) Wait(ctx context.Context, id string, timeout time.Duration) (*wire.Job, error) {
	return call[wire.Job](ctx, c.t, http.MethodGet, path("jobs", id, "wait"), url.Values{"timeout": {timeout.String()}}, nil)
}

// Cancel asks a job to stop and returns its snapshot; the job ends once
// its work is rolled back.
func (c Jobs) Cancel(ctx context.Context, id string) (*wire.Job, error) {
	return call[wire.Job](ctx, c.t, http.MethodPost, path("jobs", id, "cancel"), nil, nil)
}
