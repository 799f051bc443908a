package daemon

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"stagehand/internal/api"
	"stagehand/internal/auth"
	"stagehand/internal/errdefs"
	"stagehand/internal/oidclogin"
)

// OIDCConfig is serve's --oidc-* flags: sign-in in a browser through an
// OpenID Connect issuer, for users registered beforehand by e-mail.
type OIDCConfig struct {
	Issuer   string // --oidc-issuer: the issuer's URL; empty: no OIDC sign-in
	ClientID string // --oidc-client-id: the client registered at the issuer
	// ClientSecretFile is --oidc-client-secret-file: a file holding the
	// client's secret (surrounding white space ignored); empty for a
	// public client, which PKCE alone protects. A file, not a flag, so
	// the secret is not in the process list.
	ClientSecretFile string
	// RedirectURL is --oidc-redirect-url: the callback URL registered at
	// the issuer. Empty: the --listen URL + api.OIDCCallbackPath.
	RedirectURL string
	// GroupRoles are --oidc-group-role GROUP=WORKSPACE:ROLE (repeatable):
	// the members of the issuer's GROUP get ROLE in WORKSPACE ("ws" in
	// organization default, or "org/ws") at each sign-in.
	GroupRoles []string
	// Scopes are --oidc-scope (repeatable): asked for besides openid;
	// none means email and profile.
	Scopes []string
}

// OIDCKeyFile, in the data dir, holds the key (32 random bytes, 0600)
// that signs the cookie carrying a sign-in from its start to the issuer's
// callback. It is kept so that a sign-in in flight survives a restart.
const OIDCKeyFile = "oidc.key"

// oidcKeySize is the flow cookie key's size (HMAC-SHA256).
const oidcKeySize = 32

// Discovery of the issuer: each attempt is bounded, and a failed one is
// tried again after a delay that doubles up to oidcRetryMax.
const (
	oidcDiscoveryTimeout = 20 * time.Second
	oidcRetryFirst       = 2 * time.Second
	oidcRetryMax         = time.Minute
)

// set reports whether any --oidc-* flag is given.
func (c OIDCConfig) set() bool {
	return c.Issuer != "" || c.ClientID != "" || c.ClientSecretFile != "" || c.RedirectURL != "" ||
		len(c.GroupRoles) > 0 || len(c.Scopes) > 0
}

// check refuses --oidc-* flags the daemon cannot run with; listen is
// --listen, already checked. Its errors are errdefs.Invalid and name the
// flag. The issuer's and redirect URL's own rules (https, or http on
// loopback) are oidclogin's, checked when the daemon starts.
func (c OIDCConfig) check(listen string) error {
	if c.Issuer == "" {
		if c.set() {
			return errdefs.Invalid("--oidc-client-id, --oidc-client-secret-file, --oidc-redirect-url, --oidc-group-role and --oidc-scope need --oidc-issuer")
		}
		return nil
	}
	if c.ClientID == "" {
		return errdefs.Invalid("--oidc-issuer needs --oidc-client-id, the client registered at the issuer")
	}
	if _, err := parseGroupRoles(c.GroupRoles); err != nil {
		return err
	}
	for _, s := range c.Scopes {
		if s == "" || strings.ContainsAny(s, " \t") {
			return errdefs.Invalid("--oidc-scope %q: want one scope name, without spaces (repeat the flag for more)", s)
		}
	}
	if c.RedirectURL != "" {
		return nil
	}
	if listen == "" {
		return errdefs.Invalid("--oidc-issuer needs --oidc-redirect-url, or --listen to derive it: browsers reach the daemon over TCP, not through its socket")
	}
	a, err := parseListen(listen)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(a.host); a.host == "" || ip != nil && ip.IsUnspecified() {
		return errdefs.Invalid("--oidc-issuer with --listen %q needs --oidc-redirect-url: the daemon cannot tell which of its addresses browsers use", listen)
	}
	return nil
}

// parseGroupRoles reads --oidc-group-role GROUP=WORKSPACE:ROLE values.
// The group is cut at the last "=" and the workspace from the role at the
// last ":", since workspace and role names have neither while the group
// names of some issuers have both (an LDAP DN: cn=devs,ou=groups).
func parseGroupRoles(specs []string) (map[string]oidclogin.RoleGrant, error) {
	grants := make(map[string]oidclogin.RoleGrant, len(specs))
	for _, spec := range specs {
		bad := func(why string) error {
			return errdefs.Invalid("--oidc-group-role %q: %s; want GROUP=WORKSPACE:ROLE, e.g. lab-admins=main:admin or devs=acme/web:author", spec, why)
		}
		i := strings.LastIndex(spec, "=")
		if i < 0 {
			return nil, bad("no \"=\" after the group")
		}
		group, target := strings.TrimSpace(spec[:i]), spec[i+1:]
		j := strings.LastIndex(target, ":")
		if j < 0 {
			return nil, bad("no \":\" between workspace and role")
		}
		ws, role := strings.TrimSpace(target[:j]), strings.TrimSpace(target[j+1:])
		switch {
		case group == "":
			return nil, bad("no group")
		case ws == "":
			return nil, bad("no workspace")
		case role == "":
			return nil, bad("no role")
		}
		if org, name, ok := strings.Cut(ws, "/"); ok && (org == "" || name == "" || strings.Contains(name, "/")) {
			return nil, bad(fmt.Sprintf("workspace %q is not ws or org/ws", ws))
		}
		if _, err := auth.ParseRole(role); err != nil {
			return nil, bad(err.Error())
		}
		if prev, dup := grants[group]; dup {
			return nil, bad(fmt.Sprintf("group %q is already mapped to %s:%s", group, prev.Workspace, prev.Role))
		}
		grants[group] = oidclogin.RoleGrant{Workspace: ws, Role: role}
	}
	return grants, nil
}

// oidcRedirectURL is --oidc-redirect-url, or the daemon's own URL (the
// --listen host with the port it bound) + api.OIDCCallbackPath.
func oidcRedirectURL(cfg Config, tcp net.Listener, https bool) (string, error) {
	if cfg.OIDC.RedirectURL != "" {
		return cfg.OIDC.RedirectURL, nil
	}
	if tcp == nil {
		return "", errdefs.Invalid("--oidc-issuer needs --oidc-redirect-url or --listen")
	}
	a, err := parseListen(cfg.Listen)
	if err != nil {
		return "", err
	}
	_, port, err := net.SplitHostPort(tcp.Addr().String())
	if err != nil {
		return "", fmt.Errorf("oidc redirect URL: address %s: %w", tcp.Addr(), err)
	}
	u := url.URL{Scheme: "http", Host: net.JoinHostPort(a.host, port), Path: api.OIDCCallbackPath}
	if https {
		u.Scheme = "https"
	}
	return u.String(), nil
}

// readOIDCSecret reads --oidc-client-secret-file ("" when not given).
func readOIDCSecret(file string, log *slog.Logger) (string, error) {
	if file == "" {
		return "", nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", errdefs.Invalid("--oidc-client-secret-file: %v", err)
	}
	secret := strings.TrimSpace(string(b))
	if secret == "" {
		return "", errdefs.Invalid("--oidc-client-secret-file %s is empty (leave the flag out for a public client)", file)
	}
	if fi, err := os.Stat(file); err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.Warn("the OIDC client secret file is readable by other users; chmod 600 it", "file", file, "mode", fi.Mode().Perm())
	}
	return secret, nil
}

// oidcKey returns the flow cookie key kept in DATA/OIDCKeyFile, making it
// on the first start. The file is written aside and linked into place,
// so a crash never leaves a short key; one that is not exactly
// oidcKeySize bytes is refused rather than replaced silently.
func oidcKey(dataDir string, log *slog.Logger) ([]byte, error) {
	file := filepath.Join(dataDir, OIDCKeyFile)
	key, err := readOIDCKey(file, log)
	if !errors.Is(err, os.ErrNotExist) {
		return key, err
	}
	key = make([]byte, oidcKeySize)
	rand.Read(key) // never fails (crypto/rand crashes the program instead)
	tmp, err := os.CreateTemp(dataDir, OIDCKeyFile+".new-*")
	if err != nil {
		return nil, fmt.Errorf("oidc key %s: %w", file, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("oidc key %s: %w", file, err)
	}
	_, err = tmp.Write(key)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("oidc key %s: %w", file, err)
	}
	if err := os.Link(tmp.Name(), file); err != nil {
		if errors.Is(err, os.ErrExist) { // made meanwhile: that one is the key
			return readOIDCKey(file, log)
		}
		return nil, fmt.Errorf("oidc key %s: %w", file, err)
	}
	log.Info("made the OIDC flow cookie key", "file", file)
	return key, nil
}

// readOIDCKey reads the key file: a regular file (a symlink is refused),
// of exactly oidcKeySize bytes, narrowed to 0600 when it is wider.
func readOIDCKey(file string, log *slog.Logger) ([]byte, error) {
	f, err := os.OpenFile(file, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("oidc key %s: %w", file, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("oidc key %s: %w", file, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("oidc key %s: not a regular file", file)
	}
	if fi.Mode().Perm() != 0o600 {
		log.Warn("the OIDC key file had a wider mode; making it 0600", "file", file, "mode", fi.Mode().Perm())
		if err := f.Chmod(0o600); err != nil {
			return nil, fmt.Errorf("oidc key %s: %w", file, err)
		}
	}
	key, err := io.ReadAll(io.LimitReader(f, oidcKeySize+1))
	if err != nil {
		return nil, fmt.Errorf("oidc key %s: %w", file, err)
	}
	if len(key) != oidcKeySize {
		return nil, fmt.Errorf("oidc key %s: %d bytes, want %d (remove it to make a new one; sign-ins in flight then fail once)", file, len(key), oidcKeySize)
	}
	return key, nil
}

// startOIDC registers the OIDC sign-in on h when --oidc-issuer is given,
// and discovers the issuer in the background; stop ends the discovery.
//
// A flag the issuer's configuration refuses (a plain http issuer that is
// not loopback, a bad redirect URL), an unreadable secret file or key
// refuse the start, like any bad flag. An issuer that cannot be reached
// does not: the daemon serves, logs the failure at ERROR, answers the
// sign-in routes 503 naming the issuer, and tries again (from 2 s, doubling
// to a minute) until it succeeds. An issuer's outage must not take the lab
// down with it (tokens, password logins and the socket still work), and
// what the daemon probes at start runs while the API answers; the retries
// mean it heals without a restart.
func startOIDC(ctx context.Context, cfg Config, dataDir string, tcp net.Listener, https bool, h *api.Handler, log *slog.Logger) (stop func(), err error) {
	c := cfg.OIDC
	if c.Issuer == "" {
		return func() {}, nil
	}
	grants, err := parseGroupRoles(c.GroupRoles)
	if err != nil {
		return nil, err
	}
	redirect, err := oidcRedirectURL(cfg, tcp, https)
	if err != nil {
		return nil, err
	}
	secret, err := readOIDCSecret(c.ClientSecretFile, log)
	if err != nil {
		return nil, err
	}
	key, err := oidcKey(dataDir, log)
	if err != nil {
		return nil, err
	}
	oc := oidclogin.Config{
		Issuer: c.Issuer, ClientID: c.ClientID, ClientSecret: secret, RedirectURL: redirect,
		Scopes: c.Scopes, GroupRoles: grants, CookieKey: key,
	}
	// New checks the configuration before it discovers anything: with a
	// context already done it checks and goes no further, so a bad flag
	// is refused now rather than found by the background discovery.
	checked, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := oidclogin.New(checked, oc); errdefs.Kind(err) == errdefs.ErrInvalid {
		return nil, err
	}
	login, err := api.NewOIDCLogin(c.Issuer, redirect)
	if err != nil {
		return nil, err
	}
	h.ServeOIDC(login)
	if u, err := url.Parse(redirect); err == nil {
		h.SetAllowedHosts(u.Host) // the issuer sends browsers back under this name
	}
	log.Info("oidc sign-in", "issuer", c.Issuer, "client_id", c.ClientID, "login", api.OIDCLoginPath,
		"redirect_url", redirect, "group_roles", len(grants))

	ctx, cancel = context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		discoverOIDC(ctx, oc, login, log)
	}()
	return func() { cancel(); wg.Wait() }, nil
}

// discoverOIDC discovers the issuer until it succeeds, ctx ends, or the
// configuration is refused; each failure is logged at ERROR and shown by
// the sign-in routes.
func discoverOIDC(ctx context.Context, oc oidclogin.Config, login *api.OIDCLogin, log *slog.Logger) {
	delay := oidcRetryFirst
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, oidcDiscoveryTimeout)
		p, err := oidclogin.New(actx, oc)
		cancel()
		if err == nil {
			login.Ready(p)
			log.Info("oidc sign-in ready", "issuer", oc.Issuer, "attempt", attempt)
			return
		}
		if ctx.Err() != nil {
			return
		}
		login.Failed(err)
		if errdefs.Kind(err) == errdefs.ErrInvalid {
			log.Error("oidc sign-in disabled: the issuer's configuration is refused", "issuer", oc.Issuer, "err", err)
			return
		}
		log.Error("oidc issuer discovery failed; sign-in answers 503 until it succeeds", "issuer", oc.Issuer,
			"attempt", attempt, "retry_in", delay, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, oidcRetryMax)
	}
}
