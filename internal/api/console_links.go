package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"time"

	"stagehand/internal/api/wire"
	"stagehand/internal/auth"
	"stagehand/internal/errdefs"
	"stagehand/internal/store"
)

// Console links: a token of kind console (store.TokenConsole) that opens
// the consoles of one VM and nothing else, for a colleague or a student
// who has no account, or a browser tab that should hold nothing more. It
// travels in the query (wire.ConsoleLinkParam), since a browser's
// websocket cannot send an Authorization header; it acts with its
// creator's rights, checked at every use, so a creator who loses the
// console loses their links too.

// Console link lifetimes: short by default, bounded.
const (
	DefaultConsoleLinkLifetime = time.Hour
	MaxConsoleLinkLifetime     = 30 * 24 * time.Hour
)

// consoleLinkRoutes are the only routes a console link opens.
var consoleLinkRoutes = map[string]bool{
	"GET " + wire.APIPrefix + "/configs/{name}/vms/{vm}/serial/ws":  true,
	"GET " + wire.APIPrefix + "/configs/{name}/vms/{vm}/vnc/ws":     true,
	"GET " + wire.APIPrefix + "/configs/{name}/vms/{vm}/screen.png": true,
}

// consoleLinkScope is what a request authenticated by a console link may
// reach: one VM of one configuration.
type consoleLinkScope struct {
	linkID   string
	configID int64
	vm       string
}

type consoleLinkKey struct{}

func consoleLinkScopeOf(ctx context.Context) (consoleLinkScope, bool) {
	s, ok := ctx.Value(consoleLinkKey{}).(consoleLinkScope)
	return s, ok
}

// hasConsoleLink reports whether r presents a console link.
func hasConsoleLink(r *http.Request) bool { return r.URL.Query().Has(wire.ConsoleLinkParam) }

// consoleLink authenticates a request that presents a console link: it
// returns r carrying the link creator's identity and the link's scope, or
// an Unauthenticated error (malformed, unknown, revoked, expired, of a
// disabled or deleted user), named without echoing the secret.
func (a *authenticator) consoleLink(r *http.Request) (*http.Request, error) {
	tokID, secret, err := auth.ParseToken(r.URL.Query().Get(wire.ConsoleLinkParam))
	if err != nil {
		return nil, errdefs.Unauthenticated("console link: %v", err)
	}
	if a.store == nil {
		return nil, errdefs.Unauthenticated("console link %s: this server keeps no tokens", tokID)
	}
	now := a.now()
	var (
		id    auth.Identity
		scope consoleLinkScope
	)
	err = a.store.View(r.Context(), func(tx store.Tx) error {
		tk, err := tx.Tokens().Get(tokID)
		if errors.Is(err, errdefs.ErrNotFound) {
			return errdefs.Unauthenticated("console link %s is unknown", tokID)
		}
		if err != nil {
			return err
		}
		switch {
		case tk.Kind != store.TokenConsole || !auth.VerifyToken(tk.Hash, secret):
			return errdefs.Unauthenticated("console link %s: wrong secret", tokID)
		case !tk.RevokedAt.IsZero():
			return errdefs.Unauthenticated("console link %s was revoked on %s", tokID, tk.RevokedAt.UTC().Format(time.RFC3339))
		case !tk.ExpiresAt.IsZero() && !now.Before(tk.ExpiresAt):
			return errdefs.Unauthenticated("console link %s expired on %s", tokID, tk.ExpiresAt.UTC().Format(time.RFC3339))
		}
		u, err := tx.Users().GetByID(tk.UserID)
		if errors.Is(err, errdefs.ErrNotFound) {
			return errdefs.Unauthenticated("console link %s: its user no longer exists", tokID)
		}
		if err != nil {
			return err
		}
		if u.Disabled {
			return errdefs.Unauthenticated("console link %s: user %q is disabled", tokID, u.Name)
		}
		id = auth.Identity{UserID: u.ID, Name: u.Name, SystemAdmin: u.SystemAdmin, Via: auth.ViaToken, TokenID: tk.ID}
		scope = consoleLinkScope{linkID: tk.ID, configID: tk.ConsoleConfigID, vm: tk.ConsoleVM}
		return nil
	})
	if err != nil {
		return nil, err
	}
	a.touch(r.Context(), tokID, now)
	ctx := context.WithValue(auth.WithIdentity(r.Context(), id), consoleLinkKey{}, scope)
	return r.WithContext(ctx), nil
}

// consoleLinkRequest authenticates a request that presents a console
// link, on its VM's console routes only: a public route (a web console
// page, the sign-in) is served as to anyone, without the link's identity,
// and any other route is refused, so that no page or endpoint ever acts
// with the link creator's identity beyond the consoles (the UI's pages do
// not pass through authorize).
func (h *Handler) consoleLinkRequest(r *http.Request) (*http.Request, error) {
	_, pattern := h.mux.Handler(r)
	switch {
	case consoleLinkRoutes[pattern]:
		return h.auth.consoleLink(r)
	case h.public[pattern]:
		return r, nil
	}
	return nil, errdefs.Forbidden("a console link opens only the serial console, the screen and the VNC console of its VM")
}

// authorizeConsoleLink lets a request authenticated by a console link
// reach only the consoles of the link's VM; there its creator's right to
// the console is checked as for any request.
func (h *Handler) authorizeConsoleLink(r *http.Request, ri RouteInfo, scope consoleLinkScope) error {
	if !consoleLinkRoutes[ri.Pattern] {
		return errdefs.Forbidden("a console link opens only the serial console, the screen and the VNC console of its VM")
	}
	config, vm := r.PathValue("name"), r.PathValue("vm")
	var configID int64
	err := h.auth.store.View(r.Context(), func(tx store.Tx) error {
		c, err := tx.Configs().Get(config)
		if err != nil {
			return err
		}
		configID = c.ID
		return nil
	})
	if err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		return err
	}
	if configID != scope.configID || vm != scope.vm {
		return errdefs.Forbidden("console link %s opens another VM's consoles", scope.linkID)
	}
	return nil
}

// CheckConsoleLink returns nil when token is a console link, good now,
// to the consoles of VM vm of configuration config, whose creator may
// still open them: the decision a request of the link to that VM's serial
// console gets. The web console asks it before it serves a link's page,
// which is public (its visitor has no account). The error is the
// request's: Unauthenticated, Forbidden, NotFound.
func (h *Handler) CheckConsoleLink(ctx context.Context, token, config, vm string) error {
	pattern := "GET " + wire.APIPrefix + "/configs/{name}/vms/{vm}/serial/ws"
	r, err := http.NewRequestWithContext(ctx, http.MethodGet, "/?"+url.Values{wire.ConsoleLinkParam: {token}}.Encode(), nil)
	if err != nil {
		return err
	}
	r.SetPathValue("name", config)
	r.SetPathValue("vm", vm)
	linked, err := h.auth.consoleLink(r)
	if err != nil {
		return err
	}
	for _, ri := range h.table {
		if ri.Pattern == pattern {
			return h.authorize(linked, ri)
		}
	}
	return errdefs.Unavailable("no console route %s", pattern)
}

func (h consoleHandler) registerLinks(r *router) {
	p := wire.APIPrefix
	// Making a link shares the VM's console: the action of a share.
	r.route("POST "+p+"/configs/{name}/vms/{vm}/console-links", auth.ConfigShare, object("config", "name"), h.createLink)
	// Links are tokens: one's own, as for tokens (status.read is every
	// user's), everyone's for the system administrator; the handlers
	// decide on each.
	r.add(RouteInfo{Pattern: "GET " + p + "/console-links", Action: auth.StatusRead, Kind: "token"}, h.listLinks)
	r.add(RouteInfo{Pattern: "DELETE " + p + "/console-links/{id}", Action: auth.StatusRead, Kind: "token", Param: "id"}, h.revokeLink)
}

// parseLinkLifetime reads a console link's expires_in.
func parseLinkLifetime(s string) (time.Duration, error) {
	if s == "" {
		return DefaultConsoleLinkLifetime, nil
	}
	d, err := ParseLifetime(s)
	if err != nil {
		return 0, err
	}
	if d > MaxConsoleLinkLifetime {
		return 0, errdefs.Invalid("console link lifetime %q: at most 30d", s)
	}
	return d, nil
}

// linkUser returns the directory user making or listing links: the unix
// socket's root is none.
func (h consoleHandler) linkUser(ctx context.Context) (auth.Identity, error) {
	if h.directory == nil {
		return auth.Identity{}, errdefs.Unavailable("this server keeps no tokens")
	}
	id, _ := auth.FromContext(ctx)
	if id.UserID == 0 {
		return auth.Identity{}, errdefs.Invalid("console links belong to a user of the directory; the unix socket's root is none (use a user's token)")
	}
	if _, ok := consoleLinkScopeOf(ctx); ok {
		return auth.Identity{}, errdefs.Forbidden("a console link cannot manage console links")
	}
	return id, nil
}

func (h consoleHandler) createLink(w http.ResponseWriter, r *http.Request) error {
	var req wire.ConsoleLinkRequest
	if err := decodeOptional(w, r, &req); err != nil {
		return err
	}
	life, err := parseLinkLifetime(req.ExpiresIn)
	if err != nil {
		return err
	}
	id, err := h.linkUser(r.Context())
	if err != nil {
		return err
	}
	if id.Restrict != nil {
		return errdefs.Forbidden("a token restricted to one workspace cannot make console links")
	}
	config, vm := r.PathValue("name"), r.PathValue("vm")
	plaintext, tokID, hash := auth.NewToken()
	now := time.Now()
	tk := store.Token{ID: tokID, UserID: id.UserID, Hash: hash, Kind: store.TokenConsole,
		Name: "console of " + config + "/" + vm, CreatedAt: now, ExpiresAt: now.Add(life), ConsoleVM: vm}
	err = h.updateDirectory(r.Context(), h.directory, func(tx store.Tx) error {
		c, err := tx.Configs().Get(config)
		if err != nil {
			return err
		}
		found := false
		for _, v := range c.VMs {
			found = found || v.Name == vm
		}
		if !found {
			return errdefs.NotFound("configuration %q has no VM %q", config, vm)
		}
		tk.ConsoleConfigID = c.ID
		if err := tx.Tokens().Create(&tk); err != nil {
			return err
		}
		return record(tx, callerOf(r.Context()), "config", "console-link create", config,
			fmt.Sprintf("link %s to VM %s, expires %s", tk.ID, vm, tk.ExpiresAt.UTC().Format(time.RFC3339)))
	})
	if err != nil {
		return err
	}
	out := linkToWire(&tk, config, id.Name, now)
	out.Token = plaintext
	out.URL = "/console/" + url.PathEscape(config) + "/" + url.PathEscape(vm) + "?" + wire.ConsoleLinkParam + "=" + url.QueryEscape(plaintext)
	return writeJSON(w, http.StatusCreated, out)
}

func linkToWire(tk *store.Token, config, user string, now time.Time) wire.ConsoleLink {
	state := wire.TokenActive
	switch {
	case !tk.RevokedAt.IsZero():
		state = wire.TokenRevoked
	case !tk.ExpiresAt.IsZero() && !now.Before(tk.ExpiresAt):
		state = wire.TokenExpired
	}
	return wire.ConsoleLink{ID: tk.ID, Config: config, VM: tk.ConsoleVM, User: user, State: state,
		CreatedAt: tk.CreatedAt, ExpiresAt: tk.ExpiresAt, RevokedAt: tk.RevokedAt}
}

// listLinks answers the caller's console links; a system administrator's
// list holds everyone's.
func (h consoleHandler) listLinks(w http.ResponseWriter, r *http.Request) error {
	id, err := h.linkUser(r.Context())
	if err != nil {
		return err
	}
	now := time.Now()
	out := []wire.ConsoleLink{}
	err = h.directory.View(r.Context(), func(tx store.Tx) error {
		users := []store.User{{ID: id.UserID, Name: id.Name}}
		if id.SystemAdmin && id.Restrict == nil {
			all, err := tx.Users().List()
			if err != nil {
				return err
			}
			users = all
		}
		for _, u := range users {
			tks, err := tx.Tokens().List(u.ID)
			if err != nil {
				return err
			}
			for i := range tks {
				if tks[i].Kind != store.TokenConsole {
					continue
				}
				c, err := tx.Configs().GetByID(tks[i].ConsoleConfigID)
				if err != nil {
					return err
				}
				out = append(out, linkToWire(&tks[i], c.Name, u.Name, now))
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return writeJSON(w, http.StatusOK, out)
}

// revokeLink revokes one of the caller's console links (anyone's, for a
// system administrator). Another user's link is not found.
func (h consoleHandler) revokeLink(w http.ResponseWriter, r *http.Request) error {
	id, err := h.linkUser(r.Context())
	if err != nil {
		return err
	}
	linkID := r.PathValue("id")
	err = h.updateDirectory(r.Context(), h.directory, func(tx store.Tx) error {
		tk, err := tx.Tokens().Get(linkID)
		if err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			return err
		}
		if err != nil || tk.Kind != store.TokenConsole || (tk.UserID != id.UserID && !(id.SystemAdmin && id.Restrict == nil)) {
			return errdefs.NotFound("console link %q not found", linkID)
		}
		if err := tx.Tokens().Revoke(linkID, time.Now()); err != nil {
			return err
		}
		c, err := tx.Configs().GetByID(tk.ConsoleConfigID)
		if err != nil {
			return err
		}
		return record(tx, callerOf(r.Context()), "config", "console-link revoke", c.Name,
			fmt.Sprintf("link %s to VM %s", linkID, tk.ConsoleVM))
	})
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
