// Package api serves Stagehand's REST API under /api/v1: it decodes
// requests, checks their JSON shape, calls the lab, converts the lab's views
// into wire types and maps error kinds to HTTP status codes in one place
// (errors.go). It holds no business logic.
package api

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"stagehand/internal/api/wire"
	"stagehand/internal/auth"
	"stagehand/internal/cluster"
	"stagehand/internal/jobs"
	"stagehand/internal/lab"
	"stagehand/internal/lab/access"
	"stagehand/internal/lab/events"
	"stagehand/internal/store"
)

// Lab is what the API serves: the lab's resources, each behind the small
// interface the handler file that serves it defines. LabOf gives the real
// lab's; tests may wrap one to inject errors (see apitest.Failing).
type Lab struct {
	Templates   Templates
	Networks    Networks
	Configs     Configs
	Deployments Deployments
	Library     Library
	Archives    Archives
	Leases      Leases
	Snapshots   Snapshots // snapshot trees (snapshots.go)
	Shortcuts   Shortcuts // shortcut layers of deep chains (shortcuts.go)
	Uploads     Uploads   // files callers send (uploads.go)
	Checks      Checks
	Events      Events        // listed and followed (events.go)
	Jobs        *jobs.Manager // the background operations the lab starts
	Directory   store.Store   // users, workspaces, tokens, shares (identity.go); nil: not served
	// EventLog records the directory's changes in their own transactions
	// and tells live followers (events --follow) once they commit; nil:
	// a log over Directory that no follower reads.
	EventLog EventAppender
	// Access decides every route's action (Handler.authorize); nil
	// refuses every route but the public ones.
	Access Access
	// Hosts are the installation's hosts (hosts.go); nil: not served.
	Hosts Hosts
}

// Access is what the api asks of the lab's authorization (access.Checker).
type Access interface {
	Check(ctx context.Context, action auth.Action, obj access.Ref) error
}

// LabOf returns the resources of svc.
func LabOf(svc *lab.Service) Lab {
	l := Lab{
		Templates: svc.Templates, Networks: svc.Networks, Configs: svc.Configs,
		Deployments: svc.Deployments, Library: svc.Library, Archives: svc.Archives,
		Leases: svc.Leases, Snapshots: SnapshotsOf(svc.Snapshots, svc.Configs), Shortcuts: svc.Shortcuts, Uploads: svc.Uploads, Checks: svc, Events: svc.EventReader, Jobs: svc.Jobs(),
		Directory: svc.Store(), Hosts: cluster.NewHosts(svc.Store()),
	}
	if svc.Events != nil { // a nil *events.Log must stay a nil EventAppender
		l.EventLog = svc.Events
	}
	if svc.Access != nil { // a nil *Checker must stay a nil Access
		l.Access = svc.Access
	}
	return l
}

// Handler is the http.Handler of the API. It holds the wiring, the
// middleware and the error mapping; each resource's endpoints are served by
// a small handler of their own (templatesHandler, configsHandler, …), in
// the file named after the resource.
type Handler struct {
	*env
	mux    *http.ServeMux
	table  []RouteInfo
	public map[string]bool // patterns of the public routes

	auth  *authenticator
	hosts *hostCheck // see SetAllowedHosts
	fwd   *forwarder // see SetHostLink; nil: one host, everything served here

	stopDrain context.CancelFunc
	status    *statusHandler  // see SetDaemon
	metrics   *metricsHandler // GET /metrics and the request histogram (metrics.go)
}

// env is what the resource handlers share with Handler.
type env struct {
	log *slog.Logger

	// drain ends long-polling waits, log follows and console sessions when
	// the server shuts down, so that http.Server.Shutdown does not sit out
	// their timeouts (and hijacked consoles, which Shutdown does not track,
	// are closed).
	drain context.Context

	limits   Limits    // see NewServer
	recovery *recovery // see StartRecovery; nil: writes accepted at once
	access   Access    // nil: every non-public route is unavailable
	events   EventAppender
}

// NewHandler returns the API over the lab svc. A nil log means
// slog.Default().
func NewHandler(svc *lab.Service, log *slog.Logger) *Handler { return NewLabHandler(LabOf(svc), log) }

// NewLabHandler returns the API over l's resources.
func NewLabHandler(l Lab, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.Default()
	}
	e := &env{log: log, limits: DefaultLimits, access: l.Access, events: l.EventLog}
	if e.events == nil && l.Directory != nil {
		e.events = events.New(l.Directory, time.Now, log)
	}
	h := &Handler{env: e, mux: http.NewServeMux(), auth: newAuthenticator(l.Directory), hosts: newHostCheck()}
	h.drain, h.stopDrain = context.WithCancel(context.Background())
	h.status = &statusHandler{env: e, lab: l.Checks}
	h.metrics = newMetricsHandler(e, l)
	r := &router{mux: h.mux, serve: h.endpoint}
	for _, res := range []interface{ register(*router) }{
		h.status,
		h.metrics,
		&openapiHandler{h: h},
		templatesHandler{lab: l.Templates, uploads: l.Uploads},
		networksHandler{lab: l.Networks},
		configsHandler{lab: l.Configs},
		deployHandler{env: e, lab: l.Deployments},
		consoleHandler{env: e, lab: l.Deployments, directory: l.Directory},
		disksHandler{lab: l.Configs},
		leasesHandler{lab: l.Leases},
		snapshotsHandler{lab: l.Snapshots},
		shortcutsHandler{lab: l.Shortcuts},
		libraryHandler{lab: l.Library},
		archivesHandler{lab: l.Archives, uploads: l.Uploads},
		jobsHandler{env: e, lab: l.Jobs},
		doctorHandler{lab: l.Checks},
		hostsHandler{lab: l.Hosts},
		eventsHandler{env: e, lab: l.Events},
		directoryHandler{env: e, store: l.Directory, jobs: l.Jobs},
		newLoginHandler(e, l.Directory),
	} {
		res.register(r)
	}
	h.table = r.routes
	h.public = map[string]bool{}
	for _, ri := range h.table {
		if ri.Public {
			h.public[ri.Pattern] = true
		}
	}
	return h
}

// Routes returns the route table: every route the API serves, with the
// action it performs and how its object is named.
func (h *Handler) Routes() []RouteInfo { return append([]RouteInfo(nil), h.table...) }

// ServeHTTP logs the request, refuses it when a browser sends it from
// another site or under a foreign host name, authenticates it, reads its
// body within the body timeout, holds it while the daemon recovers if it
// changes state, and serves it (authorizing it first: endpoint).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.logRequests(h.browserSafe(h.authenticate(h.readBody(h.holdWrites(http.HandlerFunc(h.serveMux)))))).ServeHTTP(w, r)
}

// serveMux serves r through the mux, answering unknown paths and methods with
// the JSON error body rather than the mux's plain text.
func (h *Handler) serveMux(w http.ResponseWriter, r *http.Request) {
	if _, pattern := h.mux.Handler(r); pattern != "" {
		h.mux.ServeHTTP(w, r)
		return
	}
	var allowed []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := h.mux.Handler(probe); pattern != "" {
			allowed = append(allowed, m)
		}
	}
	if len(allowed) == 0 {
		_ = writeJSON(w, http.StatusNotFound, wire.Error{Error: fmt.Sprintf("no endpoint %s", r.URL.Path), Kind: wire.KindNotFound})
		return
	}
	w.Header().Set("Allow", strings.Join(allowed, ", "))
	_ = writeJSON(w, http.StatusMethodNotAllowed, wire.Error{
		Error: fmt.Sprintf("method %s not allowed on %s (allowed: %s)", r.Method, r.URL.Path, strings.Join(allowed, ", ")),
		Kind:  wire.KindInvalid,
	})
}

// Drain makes pending and future job waits return their snapshot at once,
// ends log follows and closes console sessions. Pass it to
// http.Server.RegisterOnShutdown.
func (h *Handler) Drain() { h.stopDrain() }

// apiFunc is an endpoint: it writes its success response, or returns an
// error for writeError to map.
type apiFunc func(w http.ResponseWriter, r *http.Request) error

// endpoint is the handler of the route ri: it decides whether the caller
// may do ri's action (authorize) before fn runs, bounds the writes of a
// stream and maps fn's error to its answer.
func (h *Handler) endpoint(ri RouteInfo, fn apiFunc) http.HandlerFunc {
	stream := streamingRoutes[ri.Pattern]
	return func(w http.ResponseWriter, r *http.Request) {
		if h.fwd != nil {
			w.Header().Set(HostHeader, h.fwd.link.Self)
		}
		if host := h.fwd.jobHost(r, ri); host != "" { // forward.go: that host authorizes
			h.fwd.forward(w, r, host, "job "+r.PathValue(ri.Param))
			return
		}
		if err := h.authorize(r, ri); err != nil {
			h.writeError(w, r, err)
			return
		}
		if home, err := h.fwd.home(r, ri); err != nil || home != "" {
			if err != nil {
				h.writeError(w, r, err)
			} else {
				local := func(w http.ResponseWriter, r *http.Request) { // forward.go: orLocal
					if err := fn(w, withActor(r)); err != nil {
						h.writeError(w, r, err)
					}
				}
				h.fwd.forward(w, orLocal(r, ri, local), home, objectOf(r, ri))
			}
			return
		}
		if stream {
			w = newStreamWriter(w, h.limits.StreamWriteTimeout)
		}
		if err := fn(w, withActor(r)); err != nil {
			h.writeError(w, r, err)
		}
	}
}

// streamingRoutes answer for as long as their client wants: the server's
// write timeout would cut them, so each of their writes is bounded instead
// (see streamWriter). Consoles clear their deadlines once hijacked.
var streamingRoutes = map[string]bool{
	"GET " + wire.APIPrefix + "/configs/{name}/vms/{vm}/log": true,
	"GET " + wire.APIPrefix + "/events":                      true,
	"GET " + wire.APIPrefix + "/jobs/{id}/wait":              true,
}
