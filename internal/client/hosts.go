package client

import (
	"context"
	"net/http"
	"net/url"

	"stagehand/internal/api/wire"
)

// List returns the hosts of the installation.
func (c Hosts) List(ctx context.Context) ([]wire.Host, error) {
	return list[wire.Host](ctx, c.t, path("hosts"), nil)
}

// Get returns one host with what is deployed on it.
func (c Hosts) Get(ctx context.Context, name string) (*wire.Host, error) {
	return call[wire.Host](ctx, c.t, http.MethodGet, path("hosts", name), nil, nil)
}

// Drain marks a host draining (placement skips it) and queues its drain:
// the host moves what runs there to other hosts, one configuration at a
// time (all: the undeployed configurations' tops too). Get shows how far
// it got.
func (c Hosts) Drain(ctx context.Context, name string, all bool) (*wire.Host, error) {
	var q url.Values
	if all {
		q = url.Values{"all": {"true"}}
	}
	return call[wire.Host](ctx, c.t, http.MethodPost, path("hosts", name, "drain"), q, nil)
}

// Undrain makes a draining host active again.
func (c Hosts) Undrain(ctx context.Context, name string) (*wire.Host, error) {
	return call[wire.Host](ctx, c.t, http.MethodPost, path("hosts", name, "undrain"), nil, nil)
}

// Remove marks a host removed; refused while configurations are
// deployed there.
func (c Hosts) Remove(ctx context.Context, name string) error {
	return c.t.do(ctx, http.MethodDelete, path("hosts", name), nil, nil, nil)
}
