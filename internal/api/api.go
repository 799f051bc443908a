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

	"stagehand/internal/api/wire"
	"stagehand/internal/jobs"
	"stagehand/internal/lab"
	"stagehand/internal/lab/events"
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
	Checks      Checks
	Events      *events.Log   // listed and followed (events.go)
	Jobs        *jobs.Manager // the background operations the lab starts
}

// LabOf returns the resources of svc.
func LabOf(svc *lab.Service) Lab {
	return Lab{
		Templates: svc.Templates, Networks: svc.Networks, Configs: svc.Configs,
		Deployments: svc.Deployments, Library: svc.Library, Archives: svc.Archives,
		Leases: svc.Leases, Checks: svc, Events: svc.Events, Jobs: svc.Jobs(),
	}
}

// Handler is the http.Handler of the API.
type Handler struct {
	lab Lab
	log *slog.Logger
	mux *http.ServeMux

	// drain ends long-polling waits, log follows and console sessions when
	// the server shuts down, so that http.Server.Shutdown does not sit out
	// their timeouts (and hijacked consoles, which Shutdown does not track,
	// are closed).
	drain     context.Context
	stopDrain context.CancelFunc

	consoles consoleSessions

	limits   Limits    // see NewServer
	daemon   Daemon    // see SetDaemon
	recovery *recovery // see StartRecovery; nil: writes accepted at once
}

// NewHandler returns the API over the lab svc. A nil log means
// slog.Default().
func NewHandler(svc *lab.Service, log *slog.Logger) *Handler { return NewLabHandler(LabOf(svc), log) }

// NewLabHandler returns the API over l's resources.
func NewLabHandler(l Lab, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.Default()
	}
	h := &Handler{lab: l, log: log, mux: http.NewServeMux(), limits: DefaultLimits}
	h.drain, h.stopDrain = context.WithCancel(context.Background())
	h.routes()
	return h
}

// ServeHTTP logs the request, reads its body within the body timeout,
// holds it while the daemon recovers if it changes state, and serves it.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.logRequests(h.readBody(h.holdWrites(http.HandlerFunc(h.route)))).ServeHTTP(w, r)
}

// route serves r through the mux, answering unknown paths and methods with
// the JSON error body rather than the mux's plain text.
func (h *Handler) route(w http.ResponseWriter, r *http.Request) {
	if _, pattern := h.mux.Handler(r); pattern != "" {
		h.mux.ServeHTTP(w, r)
		return
	}
	var allowed []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete} {
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

func (h *Handler) handle(pattern string, fn apiFunc) {
	stream := streamingRoutes[pattern]
	h.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if stream {
			w = newStreamWriter(w, h.limits.StreamWriteTimeout)
		}
		if err := fn(w, withActor(r)); err != nil {
			h.writeError(w, r, err)
		}
	})
}

// streamingRoutes answer for as long as their client wants: the server's
// write timeout would cut them, so each of their writes is bounded instead
// (see streamWriter). Consoles clear their deadlines once hijacked.
var streamingRoutes = map[string]bool{
	"GET " + wire.APIPrefix + "/configs/{name}/vms/{vm}/log": true,
	"GET " + wire.APIPrefix + "/events":                      true,
	"GET " + wire.APIPrefix + "/jobs/{id}/wait":              true,
}

func (h *Handler) routes() {
	p := wire.APIPrefix
	// /healthz answers as soon as the daemon listens; /readyz once it
	// accepts writes (recovery done).
	h.handle("GET /healthz", h.health)
	h.handle("GET "+p+"/healthz", h.health)
	h.handle("GET /readyz", h.ready)
	h.handle("GET "+p+"/readyz", h.ready)
	h.handle("GET "+p+"/status", h.status)

	h.handle("POST "+p+"/templates", h.importTemplate)
	h.handle("GET "+p+"/templates", h.listTemplates)
	h.handle("GET "+p+"/templates/{name}", h.getTemplate)
	h.handle("DELETE "+p+"/templates/{name}", h.deleteTemplate)

	h.handle("POST "+p+"/networks", h.createNetwork)
	h.handle("GET "+p+"/networks", h.listNetworks)
	h.handle("GET "+p+"/networks/{name}", h.getNetwork)
	h.handle("DELETE "+p+"/networks/{name}", h.deleteNetwork)

	h.handle("POST "+p+"/configs", h.createConfig)
	h.handle("GET "+p+"/configs", h.listConfigs)
	h.handle("GET "+p+"/configs/{name}", h.getConfig)
	h.handle("DELETE "+p+"/configs/{name}", h.deleteConfig)
	h.handle("POST "+p+"/configs/{name}/clone", h.cloneConfig)
	h.handle("POST "+p+"/configs/{name}/change-ips", h.changeIPs)
	h.handle("POST "+p+"/configs/{name}/deploy", h.deploy)
	h.handle("POST "+p+"/configs/{name}/undeploy", h.undeploy)
	for _, action := range []string{wire.VMStop, wire.VMStart, wire.VMReset} {
		h.handle("POST "+p+"/configs/{name}/vms/{vm}/"+action, h.vmAction(action))
	}
	h.handle("GET "+p+"/configs/{name}/vms/{vm}/log", h.vmLog)
	h.handle("GET "+p+"/configs/{name}/vms/{vm}/console", h.vmConsole)
	h.handle("PUT "+p+"/configs/{name}/vms/{vm}/nics/{nic}/ip", h.setIP)
	h.handle("GET "+p+"/configs/{name}/vms/{vm}/disks/{disk}/chain", h.diskChain)
	h.handle("POST "+p+"/configs/{name}/vms/{vm}/disks/{disk}/consolidate", h.consolidate)

	h.handle("GET "+p+"/jobs", h.listJobs)
	h.handle("GET "+p+"/jobs/{id}", h.getJob)
	h.handle("GET "+p+"/jobs/{id}/wait", h.waitJob)
	h.handle("POST "+p+"/jobs/{id}/cancel", h.cancelJob)
	h.handle("DELETE "+p+"/jobs/{id}", h.cancelJob)

	h.handle("GET "+p+"/doctor", h.doctor)
	h.handle("POST "+p+"/doctor/repair", h.doctorRepair)

	h.handle("POST "+p+"/configs/{name}/lease", h.setLease)

	h.handle("POST "+p+"/library", h.capture)
	h.handle("GET "+p+"/library", h.listLibrary)
	h.handle("GET "+p+"/library/{name}", h.getLibraryEntry)
	h.handle("DELETE "+p+"/library/{name}", h.deleteLibraryEntry)
	h.handle("POST "+p+"/library/{name}/checkout", h.checkout)

	h.handle("POST "+p+"/archives", h.createArchive)
	h.handle("POST "+p+"/archives/import", h.importArchive)
	h.handle("GET "+p+"/archives", h.listArchives)
	h.handle("GET "+p+"/archives/{name}", h.getArchive)
	h.handle("DELETE "+p+"/archives/{name}", h.deleteArchive)
	h.handle("POST "+p+"/archives/{name}/restore", h.restoreArchive)
	h.handle("POST "+p+"/archives/{name}/export", h.exportArchive)
	h.handle("POST "+p+"/archives/{name}/lease", h.setArchiveLease)

	h.handle("GET "+p+"/cleanup", h.cleanupView)
	h.handle("POST "+p+"/cleanup", h.cleanupApply)

	h.handle("GET "+p+"/events", h.events)
}

func (h *Handler) health(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, http.StatusOK, wire.Health{Status: "ok"})
}
