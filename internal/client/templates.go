package client

import (
	"context"
	"net/http"

	"stagehand/internal/api/wire"
)

// ImportTemplate imports a template from files on the daemon's host, which
// only the system administrator on the unix socket may name, under a
// directory given with serve --import-dir. Others upload the files
// (UploadTemplate).
func (c *Client) ImportTemplate(ctx context.Context, req wire.TemplateRequest) (*wire.Template, error) {
	return call[wire.Template](ctx, c, http.MethodPost, path("templates"), nil, req)
}

// ListTemplates returns every template.
func (c *Client) ListTemplates(ctx context.Context) ([]wire.Template, error) {
	return c.ListTemplatesIn(ctx, "")
}

// ListTemplatesIn returns every template the caller may see in
// workspace ("ws" or "org/ws"; "" every workspace).
func (c *Client) ListTemplatesIn(ctx context.Context, workspace string) ([]wire.Template, error) {
	return list[wire.Template](ctx, c, path("templates"), workspaceQuery(workspace))
}

// GetTemplate returns one template.
func (c *Client) GetTemplate(ctx context.Context, name string) (*wire.Template, error) {
	return call[wire.Template](ctx, c, http.MethodGet, path("templates", name), nil, nil)
}

// DeleteTemplate deletes a template.
func (c *Client) DeleteTemplate(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, path("templates", name), nil, nil, nil)
}
