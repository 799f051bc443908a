package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"stagehand/internal/api/wire"
	"stagehand/internal/auth"
	"stagehand/internal/errdefs"
	"stagehand/internal/jobs"
	"stagehand/internal/lab/access"
)

// Bounds of GET /jobs/{id}/wait?timeout=.
const (
	defaultWait = 30 * time.Second
	maxWait     = 10 * time.Minute
)

// jobsHandler serves the endpoints of the lab's background operations.
type jobsHandler struct {
	*env
	lab *jobs.Manager
}

func (h jobsHandler) register(r *router) {
	p := wire.APIPrefix
	r.route("GET "+p+"/jobs", auth.JobRead, noObject, h.list)
	r.route("GET "+p+"/jobs/{id}", auth.JobRead, object("job", "id"), h.get)
	r.route("GET "+p+"/jobs/{id}/wait", auth.JobRead, object("job", "id"), h.wait)
	r.route("POST "+p+"/jobs/{id}/cancel", auth.JobCancel, object("job", "id"), h.cancel)
	r.route("DELETE "+p+"/jobs/{id}", auth.JobCancel, object("job", "id"), h.cancel)
}

// writeAccepted answers a started job with 202, its body and its Location.
func writeAccepted(w http.ResponseWriter, j wire.Job) error {
	w.Header().Set("Location", location("jobs", j.ID))
	return writeJSON(w, http.StatusAccepted, j)
}

// list answers the jobs the caller may read. Jobs live in memory and are
// few, so each is decided on its own (its object, or its starter).
func (h jobsHandler) list(w http.ResponseWriter, r *http.Request) error {
	js := h.lab.List()
	out := make([]wire.Job, 0, len(js))
	for _, j := range js {
		if h.access != nil {
			err := h.access.Check(r.Context(), auth.JobRead, access.Ref{Kind: access.KindJob, Name: j.ID})
			if k := errdefs.Kind(err); k == errdefs.ErrNotFound || k == errdefs.ErrForbidden {
				continue
			}
			if err != nil {
				return err
			}
		}
		out = append(out, jobToWire(j))
	}
	return writeJSON(w, http.StatusOK, out)
}

func (h jobsHandler) get(w http.ResponseWriter, r *http.Request) error {
	j, err := h.lab.Get(r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, jobToWire(j))
}

// wait answers when the job ends or the timeout passes, whichever comes
// first, with the job's snapshot: the caller looks at its state.
func (h jobsHandler) wait(w http.ResponseWriter, r *http.Request) error {
	timeout := defaultWait
	if s := r.URL.Query().Get("timeout"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			return errMalformed("timeout %q is not a duration such as 30s", s)
		}
		timeout = min(d, maxWait)
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	stop := context.AfterFunc(h.drain, cancel)
	defer stop()

	id := r.PathValue("id")
	j, err := h.lab.Wait(ctx, id)
	if err != nil {
		stillRunning := errdefs.Kind(err) == nil &&
			(errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled))
		if !stillRunning {
			return err
		}
		if r.Context().Err() != nil {
			return nil // the client is gone
		}
	}
	return writeJSON(w, http.StatusOK, jobToWire(j))
}

// cancel asks a job to stop and answers 202 with its snapshot: the job
// ends (state canceled) once its rollback is done.
func (h jobsHandler) cancel(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := h.lab.Cancel(id); err != nil {
		return err
	}
	j, err := h.lab.Get(id)
	if err != nil {
		return err
	}
	return writeAccepted(w, jobToWire(j))
}
