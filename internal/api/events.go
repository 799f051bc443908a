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
	"stagehand/internal/auth"
	"stagehand/internal/lab/events"
)

// withActor puts who sent the request, as its authentication established
// (never a header the client chose), into its context, for the event log.
func withActor(r *http.Request) *http.Request {
	id, ok := auth.FromContext(r.Context())
	if !ok || id.Name == "" {
		return r
	}
	return r.WithContext(events.WithActor(r.Context(), id.Name))
}

// eventPing is how often an idle event stream sends a comment, so proxies
// and clients see the connection is alive.
const eventPing = 15 * time.Second

// Events is what the event endpoint needs (lab.Service.EventReader):
// the events the caller of ctx may read, listed and followed.
type Events interface {
	List(ctx context.Context, after int64, limit int) ([]events.View, error)
	Follow(ctx context.Context) (*events.Follower, error)
}

// eventsHandler serves the event log, listed and followed.
type eventsHandler struct {
	*env
	lab Events
}

// register adds the event route: filtered, each caller reads the events
// they caused and those of the objects they may see (the lab decides).
func (h eventsHandler) register(r *router) {
	r.filtered("GET "+wire.APIPrefix+"/events", auth.EventRead, h.list)
}

// list answers the event log: a JSON list, or with ?follow=1 (or Accept:
// text/event-stream) server-sent events from ?after= (or Last-Event-ID)
// on, live, until the client goes away or the daemon shuts down.
func (h eventsHandler) list(w http.ResponseWriter, r *http.Request) error {
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
		if err != nil || n < 0 {
			return errMalformed("limit %q is not a count", s)
		}
		limit = n
	}
	limit = events.PageSize(limit)
	follow, err := queryBool(r, "follow")
	if err != nil {
		return err
	}
	if !follow && !strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
		es, err := h.lab.List(r.Context(), after, limit)
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
	return h.stream(w, r, after)
}

func (h eventsHandler) stream(w http.ResponseWriter, r *http.Request, after int64) error {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(h.drain, cancel)()
	// Subscribe before reading the backlog, so nothing falls in between;
	// events seen in both are sent once (by id).
	live, err := h.lab.Follow(ctx)
	if err != nil {
		return err
	}
	defer live.Close()
	// The backlog is read a page at a time, so a follower starting from
	// an old id never holds the whole log in memory.
	backlog, err := h.lab.List(ctx, after, events.MaxPage)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	send := func(e events.View) error {
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
		if len(backlog) < events.MaxPage {
			break
		}
		if backlog, err = h.lab.List(ctx, after, events.MaxPage); err != nil {
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
		case e, ok := <-live.C:
			if !ok {
				// Too far behind: end the stream; the client resumes with
				// Last-Event-ID and reads the rest from the store.
				return nil
			}
			shown, err := live.Shows(ctx, e)
			if err != nil {
				h.log.Warn("event stream ended", "err", err)
				return nil // headers are sent; the client resumes from its last id
			}
			if !shown {
				continue
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
