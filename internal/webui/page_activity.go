package webui

import (
	"net/http"

	"stagehand/internal/errdefs"
	"stagehand/internal/lab/events"
)

// Bounds of the activity page: the newest activityMax events the user
// may read among the last activityScan of the log.
const (
	activityMax  = 200
	activityScan = 20000
)

type activityData struct {
	Rows []events.View // newest first
	// Filters, from the query: events of this kind of object, by this
	// actor, about this subject ("" any).
	Object, Actor, Subject string
	Objects                []string // the kinds to filter by
	After                  int64
	Max                    int
}

// activityObjects are the kinds of object events name.
var activityObjects = []string{"config", "template", "network", "library", "archive", "user", "workspace", "org", "group", "token", "quota", "share", "console-link"}

// activityPage is the event log as the user may read it (the events they
// caused and those of objects they may see), newest first, filtered by
// object, actor and subject, kept current from the event stream.
func (p *operationPages) activityPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if p.lab.Events == nil {
		p.fail(w, r, errdefs.Unavailable("the event log is not served by this daemon"))
		return
	}
	q := r.URL.Query()
	d := activityData{Object: q.Get("object"), Actor: q.Get("actor"), Subject: q.Get("subject"), Objects: activityObjects, Max: activityMax}
	var err error
	if d.After, err = p.lab.latestEvent(ctx); err != nil {
		p.fail(w, r, err)
		return
	}
	// The reader lists forwards from an id: read the tail of the log a
	// page at a time, keeping the newest matches.
	var kept []events.View
	for from := max(d.After-activityScan, 0); from < d.After; {
		es, err := p.lab.Events.List(ctx, from, events.MaxPage)
		if err != nil {
			p.fail(w, r, err)
			return
		}
		if len(es) == 0 {
			break
		}
		for _, e := range es {
			if (d.Object == "" || e.Object == d.Object) && (d.Actor == "" || e.Actor == d.Actor) && (d.Subject == "" || e.Subject == d.Subject) {
				kept = append(kept, e)
			}
		}
		if len(kept) > activityMax {
			kept = kept[len(kept)-activityMax:]
		}
		from = es[len(es)-1].ID
	}
	for i := len(kept) - 1; i >= 0; i-- {
		d.Rows = append(d.Rows, kept[i])
	}
	p.show(w, r, "activity.html", "Activity", "activity", d)
}
