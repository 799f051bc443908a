package webui

import (
	"net/http"
	"net/url"

	"stagehand/internal/auth"
)

// accountPages are the user's own: the sign-in page (with the single
// sign-on button when oidc) and their tokens.
type accountPages struct {
	*view
	oidc bool
}

// OIDCLoginPath is the API's route that starts a single sign-on
// (api.OIDCLoginPath; not imported, so that the api may import this
// package's handler type through its own interface).
const OIDCLoginPath = "/auth/oidc/login"

type signInData struct {
	OIDC     bool
	OIDCPath string
	Next     string
	SignedIn string // the user already signed in, if any
}

// signInPage is the sign-in form: app.js posts the user and password to
// POST /api/v1/login, which sets the session cookie, then goes to next.
// With OIDC configured, a link starts the single sign-on.
func (p *accountPages) signInPage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	d := signInData{OIDC: p.oidc, Next: safeNext(r.URL.Query().Get("next"))}
	// The single sign-on comes back to the same page (the callback's
	// ?next=).
	d.OIDCPath = OIDCLoginPath + "?next=" + url.QueryEscape(d.Next)
	if id, ok := auth.FromContext(r.Context()); ok {
		d.SignedIn = id.Name
	}
	f := frame{Title: "Sign in", AssetsMissing: p.assets.Missing(), Asset: p.assets.URL, Page: d}
	p.render(w, r, "login.html", f)
}
