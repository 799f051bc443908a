package client

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"stagehand/internal/api/wire"
)

// WithUser makes the client name user in every request (the event log
// records it).
func WithUser(user string) Option { return func(c *Client) { c.user = user } }

func (c *Client) setUser(req *http.Request) {
	if c.user != "" {
		req.Header.Set(wire.UserHeader, c.user)
	}
}

// SetLease changes a configuration's (or library entry's) leases.
func (c *Client) SetLease(ctx context.Context, name string, req wire.LeaseRequest) (*wire.Config, error) {
	var cfg wire.Config
	if err := c.do(ctx, http.MethodPost, path("configs", name, "lease"), nil, req, &cfg); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// Capture copies a configuration into the library.
func (c *Client) Capture(ctx context.Context, req wire.CaptureRequest) (*wire.Config, error) {
	var cfg wire.Config
	if err := c.do(ctx, http.MethodPost, path("library"), nil, req, &cfg); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// Checkout makes a configuration from a library entry.
func (c *Client) Checkout(ctx context.Context, entry string, req wire.CheckoutRequest) (*wire.Config, error) {
	var cfg wire.Config
	if err := c.do(ctx, http.MethodPost, path("library", entry, "checkout"), nil, req, &cfg); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// ListLibrary returns every library entry.
func (c *Client) ListLibrary(ctx context.Context) ([]wire.Config, error) {
	var cs []wire.Config
	return cs, c.do(ctx, http.MethodGet, path("library"), nil, nil, &cs)
}

// GetLibraryEntry returns one library entry.
func (c *Client) GetLibraryEntry(ctx context.Context, name string) (*wire.Config, error) {
	var cfg wire.Config
	if err := c.do(ctx, http.MethodGet, path("library", name), nil, nil, &cfg); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// DeleteLibraryEntry deletes a library entry.
func (c *Client) DeleteLibraryEntry(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, path("library", name), nil, nil, nil)
}

// StartArchive starts archiving a configuration and returns the job.
func (c *Client) StartArchive(ctx context.Context, req wire.ArchiveRequest) (*wire.Job, error) {
	var j wire.Job
	if err := c.do(ctx, http.MethodPost, path("archives"), nil, req, &j); err != nil {
		return nil, err
	}
	return &j, nil
}

// StartRestore starts restoring an archive into a new configuration.
func (c *Client) StartRestore(ctx context.Context, archive string, req wire.RestoreRequest) (*wire.Job, error) {
	var j wire.Job
	if err := c.do(ctx, http.MethodPost, path("archives", archive, "restore"), nil, req, &j); err != nil {
		return nil, err
	}
	return &j, nil
}

// StartExport starts writing an archive as a bundle on the daemon's host.
func (c *Client) StartExport(ctx context.Context, archive, file string) (*wire.Job, error) {
	var j wire.Job
	if err := c.do(ctx, http.MethodPost, path("archives", archive, "export"), nil, wire.ExportRequest{File: file}, &j); err != nil {
		return nil, err
	}
	return &j, nil
}

// StartImport starts importing a bundle on the daemon's host.
func (c *Client) StartImport(ctx context.Context, req wire.ImportRequest) (*wire.Job, error) {
	var j wire.Job
	if err := c.do(ctx, http.MethodPost, path("archives", "import"), nil, req, &j); err != nil {
		return nil, err
	}
	return &j, nil
}

// ListArchives returns every archive.
func (c *Client) ListArchives(ctx context.Context) ([]wire.Archive, error) {
	var as []wire.Archive
	return as, c.do(ctx, http.MethodGet, path("archives"), nil, nil, &as)
}

// GetArchive returns one archive.
func (c *Client) GetArchive(ctx context.Context, name string) (*wire.Archive, error) {
	var a wire.Archive
	if err := c.do(ctx, http.MethodGet, path("archives", name), nil, nil, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// DeleteArchive deletes an archive.
func (c *Client) DeleteArchive(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, path("archives", name), nil, nil, nil)
}

// SetArchiveLease changes an archive's storage lease.
func (c *Client) SetArchiveLease(ctx context.Context, name, storage string) (*wire.Archive, error) {
	var a wire.Archive
	if err := c.do(ctx, http.MethodPost, path("archives", name, "lease"), nil, wire.LeaseRequest{Storage: storage}, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// Cleanup returns the cleanup view; idleDays > 0 adds what was idle that
// long.
func (c *Client) Cleanup(ctx context.Context, idleDays int) (*wire.CleanupReport, error) {
	var r wire.CleanupReport
	q := url.Values{}
	if idleDays > 0 {
		q.Set("idle_days", strconv.Itoa(idleDays))
	}
	if err := c.do(ctx, http.MethodGet, path("cleanup"), q, nil, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// ApplyCleanup deletes what the cleanup view lists as deletable (with
// DryRun only says so).
func (c *Client) ApplyCleanup(ctx context.Context, req wire.CleanupRequest) (*wire.CleanupReport, error) {
	var r wire.CleanupReport
	if err := c.do(ctx, http.MethodPost, path("cleanup"), nil, req, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Events returns up to limit events after event id after (limit 0: the
// daemon's default page, 100; it returns at most 1000 at once).
func (c *Client) Events(ctx context.Context, after int64, limit int) ([]wire.Event, error) {
	var es []wire.Event
	q := url.Values{}
	if after > 0 {
		q.Set("after", strconv.FormatInt(after, 10))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	return es, c.do(ctx, http.MethodGet, path("events"), q, nil, &es)
}

// FollowEvents calls fn with every event after event id after, then with
// each new one as it is recorded, until ctx ends or fn fails. A stream the
// daemon ends (a follower too far behind) is resumed from the last event
// seen; a daemon that goes away ends it with an error.
func (c *Client) FollowEvents(ctx context.Context, after int64, fn func(wire.Event) error) error {
	for {
		last, err := c.followOnce(ctx, after, fn)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			return err
		}
		after = last
	}
}

// followOnce reads one event stream until it ends and returns the last id
// seen.
func (c *Client) followOnce(ctx context.Context, after int64, fn func(wire.Event) error) (int64, error) {
	u := c.base + path("events") + "?follow=1"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return after, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if after > 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatInt(after, 10))
	}
	c.setUser(req)
	resp, err := c.hc.Do(req)
	if err != nil {
		return after, c.unreachable(ctx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return after, decodeError(resp)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var data strings.Builder
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if data.Len() == 0 {
				continue
			}
			var e wire.Event
			if err := json.Unmarshal([]byte(data.String()), &e); err != nil {
				return after, fmt.Errorf("event stream: %w", err)
			}
			data.Reset()
			if err := fn(e); err != nil {
				return after, err
			}
			after = e.ID
		case strings.HasPrefix(line, "data:"):
			data.WriteString(strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return after, fmt.Errorf("event stream: %w", err)
	}
	return after, nil
}

// LinkedCloneWith is LinkedClone with every field of the request (a
// storage lease).
func (c *Client) LinkedCloneWith(ctx context.Context, src string, req wire.CloneRequest) (*wire.Config, error) {
	var cfg wire.Config
	req.Mode = wire.CloneLinked
	if err := c.do(ctx, http.MethodPost, path("configs", src, "clone"), nil, req, &cfg); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// StartFullCloneWith is StartFullClone with every field of the request.
func (c *Client) StartFullCloneWith(ctx context.Context, src string, req wire.CloneRequest) (*wire.Job, error) {
	var j wire.Job
	req.Mode = wire.CloneFull
	if err := c.do(ctx, http.MethodPost, path("configs", src, "clone"), nil, req, &j); err != nil {
		return nil, err
	}
	return &j, nil
}

// DeployWith is Deploy with every field of the request (a deployment
// lease).
func (c *Client) DeployWith(ctx context.Context, name string, req wire.DeployRequest) (*wire.Config, error) {
	var cfg wire.Config
	if err := c.do(ctx, http.MethodPost, path("configs", name, "deploy"), nil, req, &cfg); err != nil {
		return nil, err
	}
	return &cfg, nil
}
