package client

import (
	"context"
	"net/http"

	"stagehand/internal/api/wire"
)

// StartArchive starts archiving a configuration and returns the job.
func (c *Client) StartArchive(ctx context.Context, req wire.ArchiveRequest) (*wire.Job, error) {
	return call[wire.Job](ctx, c, http.MethodPost, path("archives"), nil, req)
}

// StartRestore starts restoring an archive into a new configuration.
func (c *Client) StartRestore(ctx context.Context, archive string, req wire.RestoreRequest) (*wire.Job, error) {
	return call[wire.Job](ctx, c, http.MethodPost, path("archives", archive, "restore"), nil, req)
}

// StartImport starts importing a bundle on the daemon's host, which only
// the system administrator on the unix socket may name, under a directory
// given with serve --import-dir. Others upload it (UploadBundle); an
// export is a download (DownloadBundle).
func (c *Client) StartImport(ctx context.Context, req wire.ImportRequest) (*wire.Job, error) {
	return call[wire.Job](ctx, c, http.MethodPost, path("archives", "import"), nil, req)
}

// ListArchives returns every archive.
func (c *Client) ListArchives(ctx context.Context) ([]wire.Archive, error) {
	return c.ListArchivesIn(ctx, "")
}

// ListArchivesIn returns every archive the caller may see in
// workspace ("ws" or "org/ws"; "" every workspace).
func (c *Client) ListArchivesIn(ctx context.Context, workspace string) ([]wire.Archive, error) {
	return list[wire.Archive](ctx, c, path("archives"), workspaceQuery(workspace))
}

// GetArchive returns one archive.
func (c *Client) GetArchive(ctx context.Context, name string) (*wire.Archive, error) {
	return call[wire.Archive](ctx, c, http.MethodGet, path("archives", name), nil, nil)
}

// DeleteArchive deletes an archive.
func (c *Client) DeleteArchive(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, path("archives", name), nil, nil, nil)
}
