package client

import (
	"context"
	"net/http"

	"stagehand/internal/api/wire"
)

// Start starts archiving a configuration and returns the job.
func (c Archives) Start(ctx context.Context, req wire.ArchiveRequest) (*wire.Job, error) {
	return call[wire.Job](ctx, c.t, http.MethodPost, path("archives"), nil, req)
}

// StartRestore starts restoring an archive into a new configuration.
func (c Archives) StartRestore(ctx context.Context, archive string, req wire.RestoreRequest) (*wire.Job, error) {
	return call[wire.Job](ctx, c.t, http.MethodPost, path("archives", archive, "restore"), nil, req)
}

// StartImport starts importing a bundle on the daemon's host, which only
// the system administrator on the unix socket may name, under a directory
// given with serve --import-dir. Others upload it (UploadBundle); an
// export is a download (DownloadBundle).
func (c Archives) StartImport(ctx context.Context, req wire.ImportRequest) (*wire.Job, error) {
	return call[wire.Job](ctx, c.t, http.MethodPost, path("archives", "import"), nil, req)
}

// List returns every archive.
func (c Archives) List(ctx context.Context) ([]wire.Archive, error) {
	return c.ListIn(ctx, "")
}

// ListIn returns every archive the caller may see in
// workspace ("ws" or "org/ws"; "" every workspace).
func (c Archives) ListIn(ctx context.Context, workspace string) ([]wire.Archive, error) {
	return list[wire.Archive](ctx, c.t, path("archives"), workspaceQuery(workspace))
}

// Get returns one archive.
func (c Archives) Get(ctx context.Context, name string) (*wire.Archive, error) {
	return call[wire.Archive](ctx, c.t, http.MethodGet, path("archives", name), nil, nil)
}

// Delete deletes an archive.
func (c Archives) Delete(ctx context.Context, name string) error {
	return c.t.do(ctx, http.MethodDelete, path("archives", name), nil, nil, nil)
}
