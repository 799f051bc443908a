package client

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"stagehand/internal/api/wire"
)

// ListJobs returns every job, oldest first.
func (c *Client) ListJobs(ctx context.Context) ([]wire.Job, error) {
	return list[wire.Job](ctx, c, path("jobs"), nil)
}

// GetJob returns a job's snapshot.
func (c *Client) GetJob(ctx context.Context, id string) (*wire.Job, error) {
	return call[wire.Job](ctx, c, http.MethodGet, path("jobs", id), nil, nil)
}

// WaitJob returns the job's snapshot once it ends or timeout passes,
// whichever is first; look at its State.
func (c *Client) WaitJob(ctx context.Context, id string, timeout time.Duration) (*wire.Job, error) {
	return call[wire.Job](ctx, c, http.MethodGet, path("jobs", id, "wait"), url.Values{"timeout": {timeout.String()}}, nil)
}

// CancelJob asks a job to stop and returns its snapshot; the job ends once
// its work is rolled back.
func (c *Client) CancelJob(ctx context.Context, id string) (*wire.Job, error) {
	return call[wire.Job](ctx, c, http.MethodPost, path("jobs", id, "cancel"), nil, nil)
}
