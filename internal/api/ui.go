package api

import (
	"net/http"
	"net/url"

	"stagehand/internal/auth"
)

// UI is a web console served on the API's origin (internal/webui): its
// pages under "/" and "/ui/", answered with HTML rather than JSON.
type UI interface {
	http.Handler
	// PublicPatterns are its routes a browser reaches without a session
	// (ServeMux patterns): the sign-in page and the static files.
	PublicPatterns() []string
	// SignIn is the sign-in page's path.
	SignIn() string
}

// ServeUI mounts ui beside the API. Requests are authenticated as the
// API's are (session cookie, bearer token, unix peer), behind the same
// host and cross-origin checks; the UI's public routes are served to
// anyone, and every other page only to an authenticated caller: a browser
// without a good session is sent to the sign-in page instead of the API's
// JSON 401. The UI answers GETs only: every action it offers is a request
// to the API. Call it before serving, at most once.
func (h *Handler) ServeUI(ui UI) {
	pages := signedIn(ui, ui.SignIn())
	for _, p := range []string{"GET /{$}", "GET /ui/"} {
		h.mux.Handle(p, pages)
		// Let the authentication middleware pass a request without (or
		// with stale) credentials: signedIn redirects it.
		h.public[p] = true
	}
	for _, p := range ui.PublicPatterns() {
		h.mux.Handle(p, ui)
		h.public[p] = true
	}
}

// signedIn serves next to a request that carries an identity, and sends
// any other to signIn, with the page it asked for as ?next=.
func signedIn(next http.Handler, signIn string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := auth.FromContext(r.Context()); ok {
			next.ServeHTTP(w, r)
			return
		}
		to := signIn + "?next=" + url.QueryEscape(r.URL.RequestURI())
		if r.Header.Get("HX-Request") == "true" {
			// A fragment's request: htmx loads the sign-in page whole.
			w.Header().Set("HX-Redirect", to)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		http.Redirect(w, r, to, http.StatusSeeOther)
	})
}
