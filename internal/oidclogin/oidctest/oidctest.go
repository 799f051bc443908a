// Package oidctest runs an in-process OpenID Connect issuer for tests, on
// 127.0.0.1: discovery, keys (JWKS), an /authorize endpoint that approves a
// configured user at once, and a /token endpoint that checks the code, the
// client and the PKCE verifier and returns an RS256-signed ID token. Tests
// can change the user and edit the next ID tokens to provoke each refusal.
// It is a test helper: the product never imports it.
package oidctest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// User is who the issuer says signs in.
type User struct {
	Subject       string
	Email         string
	EmailVerified bool
	Name          string
	Groups        []string
}

// Options configure an Issuer.
type Options struct {
	ClientID     string
	ClientSecret string // empty: a public client, authenticated by PKCE only
	User         User
}

// Issuer is a running test issuer. Its setters may be called while requests
// are served.
type Issuer struct {
	URL string // the issuer identifier and base URL, http://127.0.0.1:PORT

	opts      Options
	key       *rsa.PrivateKey // published in the JWKS
	rogue     *rsa.PrivateKey // never published: signs tokens that must be refused
	keyID     string
	mu        sync.Mutex
	user      User
	edit      func(claims map[string]any)
	deny      bool
	useRogue  bool
	codes     map[string]grant
	tokens    int
	authorize url.Values
}

// grant is an issued, not yet redeemed authorization code.
type grant struct {
	user        User
	nonce       string
	challenge   string
	redirectURI string
}

// Start runs an issuer until the test ends.
func Start(t testing.TB, opts Options) *Issuer {
	t.Helper()
	i := &Issuer{
		opts:  opts,
		key:   newKey(t),
		rogue: newKey(t),
		keyID: "oidctest-" + randomString(6),
		user:  opts.User,
		codes: map[string]grant{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", i.discovery)
	mux.HandleFunc("GET /keys", i.jwks)
	mux.HandleFunc("GET /authorize", i.authorizeHandler)
	mux.HandleFunc("POST /token", i.token)

	// httptest.NewServer may fall back to [::1]; the tests' rules want 127.0.0.1 only.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("oidctest: listen: %v", err)
	}
	srv := httptest.NewUnstartedServer(mux)
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	i.URL = srv.URL
	return i
}

func newKey(t testing.TB) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("oidctest: rsa key: %v", err)
	}
	return k
}

// SetUser changes who signs in at the next /authorize.
func (i *Issuer) SetUser(u User) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.user = u
}

// EditIDToken makes the issuer pass the claims of every following ID token
// through edit before signing them (nil stops it): to send a wrong nonce,
// audience, issuer or expiry.
func (i *Issuer) EditIDToken(edit func(claims map[string]any)) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.edit = edit
}

// Deny makes /authorize send the browser back with error=access_denied, as
// an issuer does when the user declines.
func (i *Issuer) Deny(deny bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.deny = deny
}

// SignWithUnpublishedKey makes /token sign ID tokens with a key that is not
// in the JWKS (with the published key's id), as a forger would.
func (i *Issuer) SignWithUnpublishedKey(on bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.useRogue = on
}

// TokenRequests is how many code exchanges /token has answered successfully.
func (i *Issuer) TokenRequests() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.tokens
}

// LastAuthorize is the query of the last /authorize request.
func (i *Issuer) LastAuthorize() url.Values {
	i.mu.Lock()
	defer i.mu.Unlock()
	return maps.Clone(i.authorize)
}

func (i *Issuer) discovery(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                i.URL,
		"authorization_endpoint":                i.URL + "/authorize",
		"token_endpoint":                        i.URL + "/token",
		"jwks_uri":                              i.URL + "/keys",
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"code_challenge_methods_supported":      []string{"S256"},
		"scopes_supported":                      []string{"openid", "email", "profile", "groups"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
	})
}

func (i *Issuer) jwks(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
		Key: &i.key.PublicKey, KeyID: i.keyID, Algorithm: string(jose.RS256), Use: "sig",
	}}})
}

// authorizeHandler checks the request as a strict issuer would (a
// registered client, a code request for openid, state, PKCE with S256)
// and approves the configured user without asking.
func (i *Issuer) authorizeHandler(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	i.mu.Lock()
	i.authorize = maps.Clone(q)
	user, deny := i.user, i.deny
	i.mu.Unlock()

	redirect, err := url.Parse(q.Get("redirect_uri"))
	switch {
	case q.Get("client_id") != i.opts.ClientID:
		http.Error(w, "unknown client_id", http.StatusBadRequest)
		return
	case err != nil || !redirect.IsAbs():
		http.Error(w, "redirect_uri must be absolute", http.StatusBadRequest)
		return
	case q.Get("response_type") != "code":
		http.Error(w, "response_type must be code", http.StatusBadRequest)
		return
	case !slices.Contains(strings.Fields(q.Get("scope")), "openid"):
		http.Error(w, "scope must include openid", http.StatusBadRequest)
		return
	case q.Get("state") == "":
		http.Error(w, "state is required", http.StatusBadRequest)
		return
	case q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "":
		http.Error(w, "PKCE with S256 is required", http.StatusBadRequest)
		return
	}

	back := redirect.Query()
	back.Set("state", q.Get("state"))
	if deny {
		back.Set("error", "access_denied")
		back.Set("error_description", "the user declined")
	} else {
		code := randomString(24)
		i.mu.Lock()
		i.codes[code] = grant{user: user, nonce: q.Get("nonce"), challenge: q.Get("code_challenge"), redirectURI: redirect.String()}
		i.mu.Unlock()
		back.Set("code", code)
	}
	redirect.RawQuery = back.Encode()
	http.Redirect(w, r, redirect.String(), http.StatusFound)
}

// token redeems a code once, for the client it was issued to, with the
// verifier whose challenge /authorize saw.
func (i *Issuer) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		oauthError(w, "invalid_request", err.Error())
		return
	}
	id, secret, basic := r.BasicAuth()
	if basic {
		// RFC 6749 2.3.1: the client id and secret are form-encoded first.
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id != i.opts.ClientID || subtle.ConstantTimeCompare([]byte(secret), []byte(i.opts.ClientSecret)) != 1 {
		w.Header().Set("WWW-Authenticate", `Basic realm="oidctest"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
		return
	}
	if r.PostForm.Get("grant_type") != "authorization_code" {
		oauthError(w, "unsupported_grant_type", "")
		return
	}
	i.mu.Lock()
	code := r.PostForm.Get("code")
	g, ok := i.codes[code]
	delete(i.codes, code) // a code is redeemed at most once, even by a failed attempt
	edit, useRogue := i.edit, i.useRogue
	i.mu.Unlock()
	if !ok {
		oauthError(w, "invalid_grant", "unknown or used code")
		return
	}
	if r.PostForm.Get("redirect_uri") != g.redirectURI {
		oauthError(w, "invalid_grant", "redirect_uri differs from the authorization request's")
		return
	}
	sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
	if base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge {
		oauthError(w, "invalid_grant", "code_verifier does not match code_challenge")
		return
	}

	now := time.Now()
	claims := map[string]any{
		"iss":            i.URL,
		"sub":            g.user.Subject,
		"aud":            i.opts.ClientID,
		"iat":            now.Unix(),
		"exp":            now.Add(time.Hour).Unix(),
		"email":          g.user.Email,
		"email_verified": g.user.EmailVerified,
		"name":           g.user.Name,
		"groups":         g.user.Groups,
	}
	if g.nonce != "" {
		claims["nonce"] = g.nonce
	}
	if edit != nil {
		edit(claims)
	}
	key := i.key
	if useRogue {
		key = i.rogue
	}
	idToken, err := sign(key, i.keyID, claims)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "server_error", "error_description": err.Error()})
		return
	}
	i.mu.Lock()
	i.tokens++
	i.mu.Unlock()
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": randomString(24),
		"token_type":   "Bearer",
		"expires_in":   3600,
		"id_token":     idToken,
	})
}

func sign(key *rsa.PrivateKey, keyID string, claims map[string]any) (string, error) {
	signer, err := jose.NewSigner(jose.SigningKey{
		Algorithm: jose.RS256,
		Key:       jose.JSONWebKey{Key: key, KeyID: keyID, Algorithm: string(jose.RS256)},
	}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}

func oauthError(w http.ResponseWriter, code, desc string) {
	writeJSON(w, http.StatusBadRequest, map[string]string{"error": code, "error_description": desc})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func randomString(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
