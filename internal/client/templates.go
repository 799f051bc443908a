package client

import (
	"context"
	"net/http"

	"stagehand/internal/api/wire"
)

// Import imports a template from files on the daemon's host, which
// only the system administrator on the unix socket may name, under a
// directory given with serve --import-dir. Others upload the files
// (UploadTemplate).
func (c Templates) Import(ctx context.Context, req wire.TemplateRequest) (*wire.Template, error) {
	return call[wire.Template](ctx, c.t, http.MethodPost, path("templates"), nil, req)
}
