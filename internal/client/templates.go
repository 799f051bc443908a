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

// List returns every template.
func (c Templates) List(ctx context.Context) ([]wire.Template, error) {
	return c.ListIn(ctx, "")
}

// ListIn returns every template the caller may see in
// workspace ("ws" or "org/ws"; "" every workspace).
func (c Templates) ListIn(ctx context.Context, workspace string) ([]wire.Template, error) {
	return list[wire.Template](ctx, c.t, path("templates"), workspaceQuery(workspace))
}

// Get returns one template.
func (c Templates) Get(ctx context.Context, name string) (*wire.Template, error) {
	return call[wire.Template](ctx, c.t, http.MethodGet, path("templates", name), nil, nil)
}

// Delete deletes a template.
func (c Templates) Delete(ctx context.Context, name string) error {
	return c.t.do(ctx, http.MethodDelete, path("templates", name), nil, nil, nil)
}
