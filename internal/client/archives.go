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

// SetLease changes an archive's storage lease (req.Storage; the
// other fields do not apply to archives).
func (c Archives) SetLease(ctx context.Context, name string, req wire.LeaseRequest) (*wire.Archive, error) {
	return call[wire.Archive](ctx, c.t, http.MethodPost, path("archives", name, "lease"), nil, req)
}
