package client

import (
	"context"
	"net/http"
	"net/url"

	"stagehand/internal/api/wire"
)

// Client talks to one Stagehand daemon. It is safe for concurrent use.
// Its endpoints are grouped by resource: c.Configs().Get(ctx, name),
// c.Jobs().Wait(ctx, id, d) and so on. Every group is a small value over
// the client's one transport, so getting one costs nothing and groups
// share the connection, credentials and error handling.
type Client struct{ t *transport }

// BaseURL returns the daemon's address as the client was given it.
func (c *Client) BaseURL() string { return c.t.server }

// Configs are configurations: create, clone, deploy, lease and share them.
type Configs struct{ named[wire.Config] }

// Configs returns the endpoints of configurations.
func (c *Client) Configs() Configs { return Configs{named[wire.Config]{c.t, "configs"}} }

// VMs are the virtual machines of a configuration: power, logs,
// console, screen, addresses and disks.
type VMs struct{ t *transport }

// VMs returns the endpoints of a configuration's VMs.
func (c *Client) VMs() VMs { return VMs{c.t} }

// ConsoleLinks are shareable links to a VM's console.
type ConsoleLinks struct{ t *transport }

// ConsoleLinks returns the endpoints of console links.
func (c *Client) ConsoleLinks() ConsoleLinks { return ConsoleLinks{c.t} }

// Templates are the disk images configurations are made from.
type Templates struct{ named[wire.Template] }

// Templates returns the endpoints of templates.
func (c *Client) Templates() Templates { return Templates{named[wire.Template]{c.t, "templates"}} }

// Networks are the virtual networks VMs attach to.
type Networks struct{ named[wire.Network] }

// Networks returns the endpoints of networks.
func (c *Client) Networks() Networks { return Networks{named[wire.Network]{c.t, "networks"}} }

// Library holds captured configurations to check out again.
type Library struct{ named[wire.Config] }

// Library returns the endpoints of the library.
func (c *Client) Library() Library { return Library{named[wire.Config]{c.t, "library"}} }

// Archives are configurations stored away from the lab, and their bundles.
type Archives struct{ named[wire.Archive] }

// Archives returns the endpoints of archives.
func (c *Client) Archives() Archives { return Archives{named[wire.Archive]{c.t, "archives"}} }

// Jobs are the daemon's long-running operations.
type Jobs struct{ t *transport }

// Jobs returns the endpoints of jobs.
func (c *Client) Jobs() Jobs { return Jobs{c.t} }

// Events is the audit log.
type Events struct{ t *transport }

// Events returns the endpoints of the audit log.
func (c *Client) Events() Events { return Events{c.t} }

// Hosts are the machines that run VMs.
type Hosts struct{ t *transport }

// Hosts returns the endpoints of hosts.
func (c *Client) Hosts() Hosts { return Hosts{c.t} }

// Users are the accounts that sign in.
type Users struct{ t *transport }

// Users returns the endpoints of users.
func (c *Client) Users() Users { return Users{c.t} }

// Orgs are organisations and their administrators.
type Orgs struct{ t *transport }

// Orgs returns the endpoints of organisations.
func (c *Client) Orgs() Orgs { return Orgs{c.t} }

// Workspaces are an organisation's workspaces, their members and quotas.
type Workspaces struct{ t *transport }

// Workspaces returns the endpoints of workspaces.
func (c *Client) Workspaces() Workspaces { return Workspaces{c.t} }

// Groups are an organisation's groups of users.
type Groups struct{ t *transport }

// Groups returns the endpoints of groups.
func (c *Client) Groups() Groups { return Groups{c.t} }

// Tokens are API tokens.
type Tokens struct{ t *transport }

// Tokens returns the endpoints of API tokens.
func (c *Client) Tokens() Tokens { return Tokens{c.t} }

// Auth signs in and out and explains what a user may do.
type Auth struct{ t *transport }

// Auth returns the endpoints of signing in and permissions.
func (c *Client) Auth() Auth { return Auth{c.t} }

// Server is the daemon as a whole: health, status, doctor and cleanup.
type Server struct{ t *transport }

// Server returns the endpoints about the daemon itself.
func (c *Client) Server() Server { return Server{c.t} }

// named holds the endpoints every kind of named object in a workspace
// has alike (configurations, templates, networks, library entries,
// archives): list them, get and delete one by name, under the API path
// of its kind.
type named[T any] struct {
	t    *transport
	kind string // the path segment: configs, templates, ...
}

// List returns every object of the kind the caller may see.
func (n named[T]) List(ctx context.Context) ([]T, error) { return n.ListIn(ctx, "") }

// ListIn returns every object of the kind the caller may see in
// workspace ("ws" or "org/ws"; "" every workspace).
func (n named[T]) ListIn(ctx context.Context, workspace string) ([]T, error) {
	return list[T](ctx, n.t, path(n.kind), workspaceQuery(workspace))
}

// Get returns the object called name.
func (n named[T]) Get(ctx context.Context, name string) (*T, error) {
	return call[T](ctx, n.t, http.MethodGet, path(n.kind, name), nil, nil)
}

// Delete deletes the object called name.
func (n named[T]) Delete(ctx context.Context, name string) error {
	return n.t.do(ctx, http.MethodDelete, path(n.kind, name), nil, nil, nil)
}

// workspaceQuery narrows a list to workspace ("" none).
func workspaceQuery(workspace string) url.Values { return filter("workspace", workspace) }

// filter is the query that narrows a list by key=value: none when value
// is "".
func filter(key, value string) url.Values {
	if value == "" {
		return nil
	}
	return url.Values{key: {value}}
}
