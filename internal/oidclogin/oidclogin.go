// Package oidclogin signs users in through an OpenID Connect provider: the
// authorization-code flow with PKCE, state and nonce, the verification of the
// ID token, and the mapping of the provider's groups to workspace roles.
//
// Users are pre-registered by e-mail: a login yields verified Claims, and the
// caller looks the Stagehand user up by Claims.Email (an unverified e-mail is
// refused here, so that nobody signs in as someone else by typing their
// address at a provider that does not check it). The package keeps no
// server-side state: what a login needs between Begin and Finish travels in a
// signed, short-lived cookie.
package oidclogin

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"stagehand/internal/errdefs"
)

// RoleGrant is a role in a workspace, granted to whoever belongs to an OIDC
// group. The names are the caller's (workspace names, role names): this
// package only maps groups to them.
type RoleGrant struct {
	Workspace string `json:"workspace"`
	Role      string `json:"role"`
}

// Config is what a Provider needs to know about the issuer and about itself.
type Config struct {
	// Issuer is the issuer's URL exactly as its discovery document names it
	// (https, or http on a loopback address for tests).
	Issuer       string
	ClientID     string
	ClientSecret string // empty for a public client: PKCE still protects the code
	// RedirectURL is the absolute URL of the callback route (the one that
	// calls Finish), registered at the issuer. Its path scopes the flow cookie,
	// and Begin must be served on the same host for the browser to send the
	// cookie back.
	RedirectURL string
	// Scopes are asked for besides "openid"; nil means "email" and "profile".
	// Dex and Keycloak want "groups" here too before they send the groups claim.
	Scopes []string
	// GroupsClaim names the ID token claim that lists the user's groups;
	// empty means "groups".
	GroupsClaim string
	// GroupRoles maps an OIDC group to the grant its members receive.
	GroupRoles map[string]RoleGrant
	// CookieKey signs the flow cookie (HMAC-SHA256); at least 32 bytes. Nil
	// means a random key made by New: logins in flight when the process
	// restarts then fail, which costs the user one more click.
	CookieKey []byte
	// HTTPClient talks to the issuer (discovery, keys, token exchange); nil
	// means a client with a 15 s timeout, so that a hung issuer never holds a
	// request for ever.
	HTTPClient *http.Client
}

// Claims is what a successful login proves about the user.
type Claims struct {
	Issuer        string   `json:"issuer"`
	Subject       string   `json:"subject"`
	Email         string   `json:"email"`
	EmailVerified bool     `json:"email_verified"` // always true in a Claims that Finish returned
	Name          string   `json:"name,omitempty"`
	Groups        []string `json:"groups,omitempty"`
}

// Names a caller needs when it wires the flow into its routes.
const (
	// FlowCookieName is the cookie Begin sets and Finish reads and clears.
	FlowCookieName = "stagehand_oidc_flow"
	// FlowLifetime bounds the time between Begin and Finish.
	FlowLifetime = 10 * time.Minute
)

// ErrRefused is matched (errors.Is) by every error that Finish returns
// because the login itself is not acceptable, as opposed to the issuer being
// unreachable. Such errors are also of kind errdefs.ErrInvalid.
var ErrRefused = errors.New("oidc login refused")

// The reasons for a refusal; each refusal matches exactly one of them, which
// lets the tests tell that the intended check fired.
var (
	errIssuerError     = errors.New("issuer returned an error")
	errFlowCookie      = errors.New("flow cookie missing or invalid")
	errState           = errors.New("state mismatch")
	errCodeExchange    = errors.New("code exchange refused")
	errIDToken         = errors.New("id token invalid")
	errNonce           = errors.New("nonce mismatch")
	errEmailUnverified = errors.New("e-mail not verified")
)

// refusal is a refused login: a user-facing message, the reason it matches,
// and the underlying cause (for example *oidc.TokenExpiredError).
type refusal struct {
	reason error
	msg    string
	cause  error
}

func (e *refusal) Error() string { return e.msg }
func (e *refusal) Unwrap() error { return e.cause }
func (e *refusal) Is(target error) bool {
	return target == ErrRefused || target == errdefs.ErrInvalid || target == e.reason
}

func refuse(reason, cause error, format string, args ...any) error {
	msg := "oidc login refused: " + fmt.Sprintf(format, args...)
	if cause != nil {
		msg += ": " + cause.Error()
	}
	return &refusal{reason: reason, msg: msg, cause: cause}
}

// Provider runs logins against one issuer. It is safe for concurrent use.
type Provider struct {
	cfg        Config
	oauth      oauth2.Config
	verifier   *oidc.IDTokenVerifier
	client     *http.Client
	cookiePath string
	now        func() time.Time // the flow cookie's clock; tests move it
}

// New checks cfg and discovers the issuer (its endpoints and keys' URL). ctx
// bounds the discovery; the returned Provider does not keep it.
func New(ctx context.Context, cfg Config) (*Provider, error) {
	if cfg.ClientID == "" {
		return nil, errdefs.Invalid("oidc: client id is required")
	}
	if err := checkURL("issuer", cfg.Issuer); err != nil {
		return nil, err
	}
	if err := checkURL("redirect URL", cfg.RedirectURL); err != nil {
		return nil, err
	}
	redirect, _ := url.Parse(cfg.RedirectURL) // checked just above
	if cfg.GroupsClaim == "" {
		cfg.GroupsClaim = "groups"
	}
	if cfg.Scopes == nil {
		cfg.Scopes = []string{"email", "profile"}
	}
	switch {
	case cfg.CookieKey == nil:
		cfg.CookieKey = make([]byte, 32)
		rand.Read(cfg.CookieKey) // never fails (crypto/rand crashes the program instead)
	case len(cfg.CookieKey) < 32:
		return nil, errdefs.Invalid("oidc: cookie key has %d bytes, want at least 32", len(cfg.CookieKey))
	}
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: 15 * time.Second}
	}

	// go-oidc keeps the client it finds in this context for fetching keys later.
	op, err := oidc.NewProvider(oidc.ClientContext(ctx, client), cfg.Issuer)
	if err != nil {
		return nil, errdefs.Unavailable("oidc issuer %q: discovery: %w", cfg.Issuer, err)
	}
	p := &Provider{
		cfg:    cfg,
		client: client,
		oauth: oauth2.Config{
			ClientID:     cfg.ClientID,
			ClientSecret: cfg.ClientSecret,
			Endpoint:     op.Endpoint(),
			RedirectURL:  cfg.RedirectURL,
			Scopes:       append([]string{oidc.ScopeOpenID}, slices.DeleteFunc(slices.Clone(cfg.Scopes), func(s string) bool { return s == oidc.ScopeOpenID })...),
		},
		// Issuer, audience, expiry and signature (with the issuer's published
		// keys and algorithms) are checked by the verifier; the nonce and the
		// authorized party are checked in Finish.
		verifier:   op.Verifier(&oidc.Config{ClientID: cfg.ClientID}),
		cookiePath: redirect.Path,
		now:        time.Now,
	}
	if p.cookiePath == "" {
		p.cookiePath = "/"
	}
	slog.Info("oidc issuer discovered", "issuer", cfg.Issuer, "client_id", cfg.ClientID,
		"authorization_endpoint", p.oauth.Endpoint.AuthURL)
	return p, nil
}

// checkURL refuses a URL that is not absolute, or that is plain http on
// anything but a loopback address: the code and the flow cookie travel on it.
func checkURL(what, raw string) error {
	if raw == "" {
		return errdefs.Invalid("oidc: %s is required", what)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return errdefs.Invalid("oidc: %s %q: %w", what, raw, err)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopback(u.Hostname()) {
			return errdefs.Invalid("oidc: %s %q: plain http is allowed only on a loopback address; use https", what, raw)
		}
	default:
		return errdefs.Invalid("oidc: %s %q: want an absolute https URL", what, raw)
	}
	if u.Host == "" {
		return errdefs.Invalid("oidc: %s %q: no host", what, raw)
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// CallbackPath is the path of Config.RedirectURL: the route on which the
// caller serves Finish (and to which the flow cookie is scoped).
func (p *Provider) CallbackPath() string { return p.cookiePath }

// Begin starts a login: it sets the flow cookie (state, nonce and PKCE
// verifier, signed) and redirects the browser to the issuer. Serve it on a
// GET route of the same host as Config.RedirectURL.
func (p *Provider) Begin(w http.ResponseWriter, r *http.Request) {
	f := flow{
		State:    randomToken(),
		Nonce:    randomToken(),
		Verifier: oauth2.GenerateVerifier(),
		Expires:  p.now().Add(FlowLifetime).Unix(),
	}
	http.SetCookie(w, &http.Cookie{
		Name:     FlowCookieName,
		Value:    f.seal(p.cfg.CookieKey),
		Path:     p.cookiePath,
		MaxAge:   int(FlowLifetime / time.Second),
		HttpOnly: true,
		Secure:   r.TLS != nil,
		// Lax, not Strict: the callback is a top-level navigation coming
		// from the issuer's site, and Strict would leave the cookie behind.
		SameSite: http.SameSiteLaxMode,
	})
	// The flow must not be cached by anything between browser and daemon.
	w.Header().Set("Cache-Control", "no-store")
	authURL := p.oauth.AuthCodeURL(f.State, oidc.Nonce(f.Nonce), oauth2.S256ChallengeOption(f.Verifier))
	http.Redirect(w, r, authURL, http.StatusFound)
}

// Finish completes a login on the callback route (Config.RedirectURL): it
// checks the state against the flow cookie, exchanges the code (with the
// PKCE verifier), verifies the ID token (signature, issuer, audience,
// expiry, nonce) and returns its claims. It refuses an e-mail the issuer has
// not verified. It clears the flow cookie whatever the outcome, so a flow is
// used once. Errors match ErrRefused when the login is not acceptable, and
// are of kind errdefs.ErrUnavailable when the issuer cannot be reached.
func (p *Provider) Finish(w http.ResponseWriter, r *http.Request) (Claims, error) {
	http.SetCookie(w, &http.Cookie{
		Name: FlowCookieName, Value: "", Path: p.cookiePath, MaxAge: -1,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode,
	})
	w.Header().Set("Cache-Control", "no-store")
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		return Claims{}, refuse(errIssuerError, nil, "issuer %q answered %s: %s",
			p.cfg.Issuer, clip(e), clip(q.Get("error_description")))
	}
	c, err := r.Cookie(FlowCookieName)
	if err != nil {
		return Claims{}, refuse(errFlowCookie, nil, "no flow cookie %q (login not started here, expired, or cookies blocked)", FlowCookieName)
	}
	f, err := openFlow(c.Value, p.cfg.CookieKey, p.now())
	if err != nil {
		return Claims{}, refuse(errFlowCookie, err, "flow cookie %q", FlowCookieName)
	}
	if !equal(q.Get("state"), f.State) {
		return Claims{}, refuse(errState, nil, "the state in the callback is not the one this browser's login started with")
	}
	code := q.Get("code")
	if code == "" {
		return Claims{}, refuse(errCodeExchange, nil, "no code in the callback")
	}

	ctx := oidc.ClientContext(r.Context(), p.client)
	tok, err := p.oauth.Exchange(ctx, code, oauth2.VerifierOption(f.Verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			return Claims{}, refuse(errCodeExchange, err, "issuer %q refused the code", p.cfg.Issuer)
		}
		return Claims{}, errdefs.Unavailable("oidc issuer %q: code exchange: %w", p.cfg.Issuer, err)
	}
	rawID, _ := tok.Extra("id_token").(string)
	if rawID == "" {
		return Claims{}, refuse(errIDToken, nil, "issuer %q sent no id_token", p.cfg.Issuer)
	}
	idt, err := p.verifier.Verify(ctx, rawID)
	if err != nil {
		return Claims{}, refuse(errIDToken, err, "id token")
	}
	if !equal(idt.Nonce, f.Nonce) {
		return Claims{}, refuse(errNonce, nil, "the id token's nonce is not the one this login sent")
	}
	if idt.AccessTokenHash != "" {
		if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
			return Claims{}, refuse(errIDToken, err, "id token at_hash")
		}
	}
	var raw json.RawMessage
	if err := idt.Claims(&raw); err != nil {
		return Claims{}, refuse(errIDToken, err, "id token claims")
	}
	claims, err := decodeClaims(raw, p.cfg.GroupsClaim, p.cfg.ClientID)
	if err != nil {
		return Claims{}, err
	}
	claims.Issuer = idt.Issuer
	claims.Subject = idt.Subject
	if claims.Email == "" {
		return Claims{}, refuse(errEmailUnverified, nil, "the id token carries no e-mail (ask for the %q scope)", "email")
	}
	if !claims.EmailVerified {
		return Claims{}, refuse(errEmailUnverified, nil, "issuer %q has not verified the e-mail %q", p.cfg.Issuer, claims.Email)
	}
	slog.Info("oidc login", "issuer", claims.Issuer, "subject", claims.Subject,
		"email", claims.Email, "groups", claims.Groups)
	return claims, nil
}

// Roles maps the groups of claims to the grants Config.GroupRoles names for
// them; groups without a mapping give nothing. The result is sorted and has
// no duplicates.
func (p *Provider) Roles(claims Claims) []RoleGrant {
	var grants []RoleGrant
	for _, g := range claims.Groups {
		if grant, ok := p.cfg.GroupRoles[g]; ok {
			grants = append(grants, grant)
		}
	}
	slices.SortFunc(grants, func(a, b RoleGrant) int {
		if c := strings.Compare(a.Workspace, b.Workspace); c != 0 {
			return c
		}
		return strings.Compare(a.Role, b.Role)
	})
	return slices.Compact(grants)
}

// decodeClaims reads the claims go-oidc does not: e-mail, its verification,
// name, groups, and the authorized party. Providers differ in small ways
// (email_verified as the string "true", a single group as a string), and
// both forms are accepted.
func decodeClaims(raw []byte, groupsClaim, clientID string) (Claims, error) {
	var all map[string]json.RawMessage
	if err := json.Unmarshal(raw, &all); err != nil {
		return Claims{}, refuse(errIDToken, err, "id token claims")
	}
	var c Claims
	var azp string
	for name, dst := range map[string]*string{"email": &c.Email, "name": &c.Name, "azp": &azp} {
		if v, ok := all[name]; ok {
			if err := json.Unmarshal(v, dst); err != nil {
				return Claims{}, refuse(errIDToken, err, "id token claim %q", name)
			}
		}
	}
	// With several audiences, the token must say it was issued to us
	// (OpenID Connect Core 3.1.3.7, item 4-5).
	if azp != "" && azp != clientID {
		return Claims{}, refuse(errIDToken, nil, "id token issued to %q (azp), not to %q", azp, clientID)
	}
	if v, ok := all["email_verified"]; ok {
		var b bool
		var s string
		switch {
		case json.Unmarshal(v, &b) == nil:
			c.EmailVerified = b
		case json.Unmarshal(v, &s) == nil:
			c.EmailVerified = s == "true"
		default:
			return Claims{}, refuse(errIDToken, nil, "id token claim %q is %s, want a boolean", "email_verified", clip(string(v)))
		}
	}
	if v, ok := all[groupsClaim]; ok && string(v) != "null" {
		var one string
		if err := json.Unmarshal(v, &c.Groups); err != nil {
			if json.Unmarshal(v, &one) != nil {
				return Claims{}, refuse(errIDToken, err, "id token claim %q: want a list of group names", groupsClaim)
			}
			c.Groups = []string{one}
		}
	}
	return c, nil
}

// randomToken returns 32 random bytes, base64url: for state and nonce.
func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// equal compares secrets in constant time; an empty value never matches.
func equal(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// clip keeps text an issuer or a browser sent from flooding an error message.
func clip(s string) string {
	const max = 200
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}
