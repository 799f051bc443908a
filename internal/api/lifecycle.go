package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"stagehand/internal/api/wire"
	"stagehand/internal/jobs"
	"stagehand/internal/lab"
)

// Lifecycle is what the API needs from the lab for the library, archives,
// leases, cleanup and the event log.
type Lifecycle interface {
	SetLease(ctx context.Context, name string, ch lab.LeaseChange) (*lab.ConfigView, error)

	Capture(ctx context.Context, config, name string, opts lab.CreateOptions) (*lab.ConfigView, error)
	Checkout(ctx context.Context, entry, name string, opts lab.CreateOptions) (*lab.ConfigView, error)
	ListLibrary(ctx context.Context) ([]lab.ConfigView, error)
	GetLibraryEntry(ctx context.Context, name string) (*lab.ConfigView, error)
	DeleteLibraryEntry(ctx context.Context, name string) error

	StartArchive(ctx context.Context, config, name string, opts lab.CreateOptions) (jobs.Job, error)
	StartRestore(ctx context.Context, archive, config string, opts lab.CreateOptions) (jobs.Job, error)
	StartExport(ctx context.Context, archive, file string) (jobs.Job, error)
	StartImport(ctx context.Context, spec lab.ImportSpec) (jobs.Job, error)
	ListArchives(ctx context.Context) ([]lab.ArchiveView, error)
	GetArchive(ctx context.Context, name string) (*lab.ArchiveView, error)
	DeleteArchive(ctx context.Context, name string) error
	SetArchiveLease(ctx context.Context, name string, storage time.Duration) (*lab.ArchiveView, error)

	Cleanup(ctx context.Context, opts lab.CleanupOptions) (*lab.CleanupReport, error)

	ListEvents(ctx context.Context, after int64, limit int) ([]lab.EventView, error)
	// SubscribeEvents returns the events recorded from now on; the channel
	// closes when the follower falls too far behind.
	SubscribeEvents() (<-chan lab.EventView, func())
}

func (h *Handler) lifecycleRoutes() {
	p := wire.APIPrefix
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

// withActor puts who sent the request into its context, for the event log.
func withActor(r *http.Request) *http.Request {
	user := strings.TrimSpace(r.Header.Get(wire.UserHeader))
	if len(user) > 64 {
		user = user[:64]
	}
	if user == "" {
		return r
	}
	return r.WithContext(lab.WithActor(r.Context(), user))
}

// storageLease reads a request's storage lease: nil when not given (the
// daemon's default applies).
func storageLease(lease string) (*time.Duration, error) {
	if lease == "" {
		return nil, nil
	}
	d, err := lab.ParseLease(lease)
	if err != nil {
		return nil, err
	}
	return &d, nil
}

// createOptions reads the options of a request that creates an object.
func createOptions(lease string) (lab.CreateOptions, error) {
	d, err := storageLease(lease)
	return lab.CreateOptions{StorageLease: d}, err
}

func parseLeaseField(name, v string) (*time.Duration, error) {
	if v == "" {
		return nil, nil
	}
	d, err := lab.ParseLease(v)
	if err != nil {
		return nil, errMalformed("%s: %v", name, err)
	}
	return &d, nil
}

func (h *Handler) setLease(w http.ResponseWriter, r *http.Request) error {
	var req wire.LeaseRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	var ch lab.LeaseChange
	var err error
	if ch.Storage, err = parseLeaseField("storage", req.Storage); err != nil {
		return err
	}
	if ch.Deploy, err = parseLeaseField("deploy", req.Deploy); err != nil {
		return err
	}
	ch.UndeployAction = req.UndeployAction
	if ch.Storage == nil && ch.Deploy == nil && ch.UndeployAction == "" {
		return errMalformed("give storage, deploy or undeploy_action")
	}
	c, err := h.lab.SetLease(r.Context(), r.PathValue("name"), ch)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, configToWire(c))
}

func (h *Handler) capture(w http.ResponseWriter, r *http.Request) error {
	var req wire.CaptureRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	opts, err := createOptions(req.StorageLease)
	if err != nil {
		return err
	}
	c, err := h.lab.Capture(r.Context(), req.Config, req.Name, opts)
	if err != nil {
		return err
	}
	w.Header().Set("Location", location("library", c.Name))
	return writeJSON(w, http.StatusCreated, configToWire(c))
}

func (h *Handler) checkout(w http.ResponseWriter, r *http.Request) error {
	var req wire.CheckoutRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	opts, err := createOptions(req.StorageLease)
	if err != nil {
		return err
	}
	c, err := h.lab.Checkout(r.Context(), r.PathValue("name"), req.Name, opts)
	if err != nil {
		return err
	}
	w.Header().Set("Location", location("configs", c.Name))
	return writeJSON(w, http.StatusCreated, configToWire(c))
}

func (h *Handler) listLibrary(w http.ResponseWriter, r *http.Request) error {
	cs, err := h.lab.ListLibrary(r.Context())
	if err != nil {
		return err
	}
	return writeList(w, cs, configToWire)
}

func (h *Handler) getLibraryEntry(w http.ResponseWriter, r *http.Request) error {
	c, err := h.lab.GetLibraryEntry(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, configToWire(c))
}

func (h *Handler) deleteLibraryEntry(w http.ResponseWriter, r *http.Request) error {
	if err := h.lab.DeleteLibraryEntry(r.Context(), r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handler) createArchive(w http.ResponseWriter, r *http.Request) error {
	var req wire.ArchiveRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	opts, err := createOptions(req.StorageLease)
	if err != nil {
		return err
	}
	j, err := h.lab.StartArchive(r.Context(), req.Config, req.Name, opts)
	if err != nil {
		return err
	}
	return writeAccepted(w, jobToWire(j))
}

func (h *Handler) restoreArchive(w http.ResponseWriter, r *http.Request) error {
	var req wire.RestoreRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	opts, err := createOptions(req.StorageLease)
	if err != nil {
		return err
	}
	j, err := h.lab.StartRestore(r.Context(), r.PathValue("name"), req.Name, opts)
	if err != nil {
		return err
	}
	return writeAccepted(w, jobToWire(j))
}

func (h *Handler) exportArchive(w http.ResponseWriter, r *http.Request) error {
	var req wire.ExportRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	j, err := h.lab.StartExport(r.Context(), r.PathValue("name"), req.File)
	if err != nil {
		return err
	}
	return writeAccepted(w, jobToWire(j))
}

func (h *Handler) importArchive(w http.ResponseWriter, r *http.Request) error {
	var req wire.ImportRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	lease, err := storageLease(req.StorageLease)
	if err != nil {
		return err
	}
	j, err := h.lab.StartImport(r.Context(), lab.ImportSpec{File: req.File, Name: req.Name, MapNetwork: req.MapNetwork, StorageLease: lease})
	if err != nil {
		return err
	}
	return writeAccepted(w, jobToWire(j))
}

func (h *Handler) listArchives(w http.ResponseWriter, r *http.Request) error {
	as, err := h.lab.ListArchives(r.Context())
	if err != nil {
		return err
	}
	return writeList(w, as, archiveToWire)
}

func (h *Handler) getArchive(w http.ResponseWriter, r *http.Request) error {
	a, err := h.lab.GetArchive(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, archiveToWire(a))
}

func (h *Handler) deleteArchive(w http.ResponseWriter, r *http.Request) error {
	if err := h.lab.DeleteArchive(r.Context(), r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handler) setArchiveLease(w http.ResponseWriter, r *http.Request) error {
	var req wire.LeaseRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.Deploy != "" || req.UndeployAction != "" {
		return errMalformed("an archive has only a storage lease")
	}
	d, err := parseLeaseField("storage", req.Storage)
	if err != nil {
		return err
	}
	if d == nil {
		return errMalformed("give storage")
	}
	a, err := h.lab.SetArchiveLease(r.Context(), r.PathValue("name"), *d)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, archiveToWire(a))
}

func (h *Handler) cleanupView(w http.ResponseWriter, r *http.Request) error {
	days := 0
	if s := r.URL.Query().Get("idle_days"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return errMalformed("idle_days %q is not a number of days", s)
		}
		days = n
	}
	rep, err := h.lab.Cleanup(r.Context(), lab.CleanupOptions{IdleDays: days})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, cleanupToWire(rep))
}

func (h *Handler) cleanupApply(w http.ResponseWriter, r *http.Request) error {
	var req wire.CleanupRequest
	if err := decodeOptional(w, r, &req); err != nil {
		return err
	}
	rep, err := h.lab.Cleanup(r.Context(), lab.CleanupOptions{IdleDays: req.IdleDays, Apply: true, DryRun: req.DryRun})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, cleanupToWire(rep))
}

// eventPing is how often an idle event stream sends a comment, so proxies
// and clients see the connection is alive.
const eventPing = 15 * time.Second

// events answers the event log: a JSON list, or with ?follow=1 (or Accept:
// text/event-stream) server-sent events from ?after= (or Last-Event-ID)
// on, live, until the client goes away or the daemon shuts down.
func (h *Handler) events(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	after, limit := int64(0), 0
	if s := q.Get("after"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return errMalformed("after %q is not an event id", s)
		}
		after = n
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return errMalformed("limit %q is not a count", s)
		}
		limit = n
	}
	limit = lab.EventPageSize(limit)
	follow, err := queryBool(r, "follow")
	if err != nil {
		return err
	}
	if !follow && !strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
		es, err := h.lab.ListEvents(r.Context(), after, limit)
		if err != nil {
			return err
		}
		out := make([]wire.Event, 0, len(es))
		for _, e := range es {
			out = append(out, eventToWire(e))
		}
		if len(es) == limit {
			// A full page: there may be more after its last event.
			next := url.Values{"after": {strconv.FormatInt(es[len(es)-1].ID, 10)}, "limit": {strconv.Itoa(limit)}}
			w.Header().Set("Link", "<"+wire.APIPrefix+"/events?"+next.Encode()+`>; rel="next"`)
		}
		return writeJSON(w, http.StatusOK, out)
	}
	if s := r.Header.Get("Last-Event-ID"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil && n > after {
			after = n
		}
	}
	return h.streamEvents(w, r, after)
}

func (h *Handler) streamEvents(w http.ResponseWriter, r *http.Request, after int64) error {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(h.drain, cancel)()
	// Subscribe before reading the backlog, so nothing falls in between;
	// events seen in both are sent once (by id).
	live, unsubscribe := h.lab.SubscribeEvents()
	defer unsubscribe()
	// The backlog is read a page at a time, so a follower starting from
	// an old id never holds the whole log in memory.
	backlog, err := h.lab.ListEvents(ctx, after, lab.MaxEventPage)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	send := func(e lab.EventView) error {
		if e.ID <= after {
			return nil
		}
		after = e.ID
		b, err := json.Marshal(eventToWire(e))
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "id: %d\ndata: %s\n\n", e.ID, b); err != nil {
			return err
		}
		return nil
	}
	for {
		for _, e := range backlog {
			if err := send(e); err != nil {
				return nil
			}
		}
		if err := rc.Flush(); err != nil {
			return nil
		}
		if len(backlog) < lab.MaxEventPage {
			break
		}
		if backlog, err = h.lab.ListEvents(ctx, after, lab.MaxEventPage); err != nil {
			return nil // headers are sent; the client resumes from its last id
		}
	}
	ping := time.NewTicker(eventPing)
	defer ping.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ping.C:
			if _, err := fmt.Fprint(w, ": ping\n\n"); err != nil {
				return nil
			}
		case e, ok := <-live:
			if !ok {
				// Too far behind: end the stream; the client resumes with
				// Last-Event-ID and reads the rest from the store.
				return nil
			}
			if err := send(e); err != nil {
				return nil
			}
		}
		if err := rc.Flush(); err != nil {
			return nil
		}
	}
}

func leaseToWire(l lab.LeaseView) wire.Lease {
	return wire.Lease{
		StorageExpires:     l.StorageExpires,
		ExpiredAt:          l.ExpiredAt,
		DeleteAt:           l.DeleteAt,
		DeployLeaseSeconds: int64(l.DeployLease / time.Second),
		DeployExpires:      l.DeployExpires,
		UndeployAction:     l.UndeployAction,
		LastUsed:           l.LastUsed,
	}
}

func archiveToWire(a *lab.ArchiveView) wire.Archive {
	out := wire.Archive{
		Name: a.Name, Source: a.Source, Dir: a.Dir, Description: a.Description, Owner: a.Owner,
		Size: a.Size, CreatedAt: a.CreatedAt, Networks: nonNil(a.Networks), VMs: []wire.ArchiveVM{},
		Lease: leaseToWire(a.Lease),
	}
	for _, vm := range a.VMs {
		wv := wire.ArchiveVM{Name: vm.Name, Template: vm.Template, CPUs: vm.CPUs, MemoryMiB: vm.MemoryMiB, Disks: []wire.ArchiveDisk{}, NICs: []wire.NIC{}}
		for _, d := range vm.Disks {
			wv.Disks = append(wv.Disks, wire.ArchiveDisk{Index: d.Index, Path: d.Path, VirtualSize: d.VirtualSize, Size: d.Size, SHA256: d.SHA256})
		}
		for _, n := range vm.NICs {
			wv.NICs = append(wv.NICs, wire.NIC{Index: n.Index, Network: n.Network, MAC: n.MAC, IPMode: n.IPMode, IP: n.IP})
		}
		out.VMs = append(out.VMs, wv)
	}
	return out
}

func cleanupToWire(r *lab.CleanupReport) wire.CleanupReport {
	out := wire.CleanupReport{Items: []wire.CleanupItem{}, Frees: r.Frees, Applied: r.Applied, Freed: r.Freed,
		Policy: r.Policy, GraceSeconds: int64(r.Grace / time.Second)}
	for _, it := range r.Items {
		out.Items = append(out.Items, wire.CleanupItem{
			Object: it.Object, Name: it.Name, State: it.State, Reasons: nonNil(it.Reasons), Lease: leaseToWire(it.Lease),
			IdleSince: it.IdleSince, Frees: it.Frees, Deletable: it.Deletable, Kept: it.Kept, Deleted: it.Deleted, Error: it.Error,
		})
	}
	return out
}

func eventToWire(e lab.EventView) wire.Event {
	return wire.Event{ID: e.ID, At: e.At, Actor: e.Actor, Action: e.Action, Object: e.Object, Subject: e.Subject, Result: e.Result, Detail: e.Detail}
}
