// Package webui is Stagehand's web console: server-rendered pages
// (html/template, embedded with the static files and the vendored
// JavaScript) under "/" and "/ui/", served by the daemon beside the API on
// one origin. Pages read the lab as the signed-in user (the request's
// auth.Identity), so lists and pages show only what that user may see, and
// offer only the actions access.Checker allows; every action the browser
// takes is a request to the REST API under /api/v1, the same the CLI
// sends, so authorization, validation and error messages are the API's.
//
// Handler only routes; the pages are methods of small types that each
// embed the shared renderer (*view: the lab, the templates, the assets)
// and hold only what else they need: configPages, consolePages,
// objectPages (templates, networks, library, archives), operationPages
// (cleanup, jobs, activity), accountPages (sign-in, tokens) and
// adminPages. Adding a page: write page_NAME.go with a handler method on
// the type of its group that builds the page's data and calls render,
// write templates/NAME.html defining "title" and "content", register the
// route in (*Handler).routes and, for a top-level page, add it to
// navItems (layout.go). Actions are built with the helpers of actions.go.
package webui

import (
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"stagehand/internal/auth"
	"stagehand/internal/errdefs"
)

// Paths of the console.
const (
	// Prefix holds every page but the root, which redirects into it.
	Prefix = "/ui/"
	// SignInPath is the sign-in page, public.
	SignInPath = "/ui/login"
	// AssetsPath holds the static files and vendored JavaScript, public.
	AssetsPath = "/ui/assets/"
	// homePath is where "/" and a successful sign-in lead.
	homePath = "/ui/configs"
)

// Options are the console's settings.
type Options struct {
	// OIDC shows the "sign in with single sign-on" button, which leads to
	// the API's OIDC login route.
	OIDC bool
	// Log is where failures to render are logged; nil: slog.Default().
	Log *slog.Logger
	// Assets replaces the embedded static files (tests: a tree without
	// the vendored JavaScript); nil: the embedded ones.
	Assets fs.FS
	// ConsoleLinks checks the console links whose page (LinkPathPrefix)
	// the console serves; nil: every link's page is not found.
	ConsoleLinks ConsoleLinks
}

// Handler serves the console's pages. Mount it with api.Handler.ServeUI,
// which authenticates requests as the API does: a page then finds the
// caller's identity in the request's context.
type Handler struct {
	mux *http.ServeMux
}

// view renders the console's pages: what every page type shares. It
// reads the lab, fills the frame (layout.go) and answers failures (fail).
type view struct {
	lab    Lab
	log    *slog.Logger
	pages  map[string]*template.Template // by template file name
	assets *assetServer
}

// New returns the console over l.
func New(l Lab, opts Options) *Handler {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	v := &view{lab: l, log: opts.Log, pages: parsePages(), assets: newAssetServer(opts.Assets)}
	h := &Handler{mux: http.NewServeMux()}
	h.routes(v, opts)
	return h
}

// routes registers every page. Each handler is a GET; actions are the
// API's.
func (h *Handler) routes(v *view, opts Options) {
	var (
		configs    = &configPages{v}
		consoles   = &consolePages{view: v, links: opts.ConsoleLinks}
		objects    = &objectPages{v}
		operations = &operationPages{v}
		account    = &accountPages{view: v, oidc: opts.OIDC}
		admin      = &adminPages{v}
	)
	h.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, homePath, http.StatusSeeOther)
	})
	h.mux.HandleFunc("GET "+SignInPath, account.signInPage)
	h.mux.Handle("GET "+AssetsPath, v.assets)
	h.mux.HandleFunc("GET "+LinkPathPrefix+"{config}/{vm}", consoles.linkPage)
	h.page("GET /ui/configs", configs.configsPage)
	h.page("GET /ui/config-rows", configs.configsRows) // not under /ui/configs/: "rows" may name a configuration
	h.page("GET /ui/configs/{name}", configs.configPage)
	h.page("GET /ui/configs/{name}/row", configs.configRow)
	h.page("GET /ui/configs/{name}/part/{part}", configs.configPart)
	h.page("GET /ui/configs/{name}/vms/{vm}/console", consoles.consolePage)
	h.page("GET /ui/templates", objects.templatesPage)
	h.page("GET /ui/templates/{name}", objects.templatePage)
	h.page("GET /ui/networks", objects.networksPage)
	h.page("GET /ui/networks/{name}", objects.networkPage)
	h.page("GET /ui/library", objects.libraryPage)
	h.page("GET /ui/library/{name}", objects.libraryEntryPage)
	h.page("GET /ui/archives", objects.archivesPage)
	h.page("GET /ui/archives/{name}", objects.archivePage)
	h.page("GET /ui/cleanup", operations.cleanupPage)
	h.page("GET /ui/jobs", operations.jobsPage)
	h.page("GET /ui/activity", operations.activityPage)
	h.page("GET /ui/tokens", account.tokensPage)
	h.page("GET /ui/admin", admin.adminPage)
	h.page("GET /ui/admin/users", admin.usersPage)
	h.page("GET /ui/admin/users/{name}", admin.userPage)
	h.page("GET /ui/admin/orgs", admin.orgsPage)
	h.page("GET /ui/admin/orgs/{org}/groups", admin.groupsPage)
	h.page("GET /ui/admin/workspaces", admin.workspacesPage)
	h.page("GET /ui/admin/workspaces/{org}/{name}", admin.workspaceAdminPage)
	h.page("GET /ui/admin/explain", admin.explainPage)
	h.mux.HandleFunc("GET /ui/", func(w http.ResponseWriter, r *http.Request) {
		v.fail(w, r, errdefs.NotFound("no page %s", r.URL.Path))
	})
}

// PublicPatterns are the routes a browser reaches without a session: the
// sign-in page, the static files and a console link's page, which checks
// its link itself (ServeMux patterns).
func (h *Handler) PublicPatterns() []string {
	return []string{"GET " + SignInPath, "GET " + AssetsPath, "GET " + LinkPathPrefix + "{config}/{vm}"}
}

// SignIn is the sign-in page's path, where a request without a session
// is sent.
func (h *Handler) SignIn() string { return SignInPath }

// ServeHTTP serves a page, with headers that keep pages from being framed
// by other sites or cached with a user's data.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "same-origin")
	// Scripts only from this origin (no inline script, no eval: htmx runs
	// with allowEval off); xterm.js sets inline styles, hence
	// style-src 'unsafe-inline'. Websockets and event streams go to this
	// origin only.
	hdr.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "+
		"img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
	hdr.Set("X-Frame-Options", "DENY")
	h.mux.ServeHTTP(w, r)
}

// page registers a page that needs a signed-in user: a request without
// one is sent to the sign-in page, which leads back afterwards.
func (h *Handler) page(pattern string, fn http.HandlerFunc) {
	h.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if _, ok := auth.FromContext(r.Context()); !ok {
			redirectToSignIn(w, r)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		fn(w, r)
	})
}

// redirectToSignIn sends the browser to the sign-in page with the page it
// asked for as next. An htmx request (a fragment) is told to load the
// sign-in page whole instead of swapping it into the page.
func redirectToSignIn(w http.ResponseWriter, r *http.Request) {
	to := SignInPath + "?next=" + url.QueryEscape(r.URL.RequestURI())
	if r.Header.Get("HX-Request") == "true" {
		w.Header().Set("HX-Redirect", to)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// safeNext returns next when it is a path of the console, else the home
// page: the sign-in page must not send the browser to another site.
func safeNext(next string) string {
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil ||
		!strings.HasPrefix(u.Path, Prefix) || strings.HasPrefix(next, "//") || strings.Contains(next, "\\") {
		return homePath
	}
	if strings.HasPrefix(u.Path, SignInPath) {
		return homePath
	}
	return u.RequestURI()
}

// statusOf maps an error's kind to the page's status, as the API does.
func statusOf(err error) int {
	switch errdefs.Kind(err) {
	case errdefs.ErrInvalid:
		return http.StatusBadRequest
	case errdefs.ErrNotFound:
		return http.StatusNotFound
	case errdefs.ErrConflict, errdefs.ErrCanceled:
		return http.StatusConflict
	case errdefs.ErrUnavailable:
		return http.StatusServiceUnavailable
	case errdefs.ErrUnauthenticated:
		return http.StatusUnauthorized
	case errdefs.ErrForbidden:
		return http.StatusForbidden
	}
	return http.StatusInternalServerError
}

// fail answers a page that could not be made: the error page with the
// lab's one-line message, or the sign-in page when the user is gone. An
// unexpected error is logged and shown without its details.
func (v *view) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := statusOf(err)
	msg := err.Error()
	switch {
	case status == http.StatusUnauthorized:
		redirectToSignIn(w, r)
		return
	case status == http.StatusInternalServerError:
		if errors.Is(err, r.Context().Err()) && r.Context().Err() != nil {
			return // the browser went away
		}
		v.log.Error("web console page", "path", r.URL.Path, "err", err)
		msg = "internal error (see the daemon log)"
	}
	w.Header().Set("Cache-Control", "no-store")
	if r.Header.Get("HX-Request") == "true" {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(msg))
		return
	}
	v.renderStatus(w, r, status, "error.html", errorPage{Status: status, StatusText: http.StatusText(status), Message: msg})
}

type errorPage struct {
	Status     int
	StatusText string
	Message    string
}
