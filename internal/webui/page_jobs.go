package webui

import (
	"net/http"
	"sort"

	"stagehand/internal/auth"
	"stagehand/internal/errdefs"
	"stagehand/internal/jobs"
	"stagehand/internal/lab/access"
)

// operationPages show what the lab does and did: cleanup, jobs and
// activity.
type operationPages struct{ *view }

type jobsData struct {
	Rows  []jobRow
	After int64
}

type jobRow struct {
	jobs.Job
	Percent int
	Cancel  []Action // the cancel, when the job runs and the user may
}

// jobsPage lists the background jobs the user may read, with progress
// bars (app.js keeps them moving while a job runs) and a cancel on each
// running job they may cancel.
func (p *operationPages) jobsPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if p.lab.Jobs == nil {
		p.fail(w, r, errdefs.Unavailable("jobs are not served by this daemon"))
		return
	}
	d := jobsData{}
	var err error
	if d.After, err = p.lab.latestEvent(ctx); err != nil {
		p.fail(w, r, err)
		return
	}
	for _, j := range p.lab.Jobs.List() {
		ref := access.Ref{Kind: access.KindJob, Name: j.ID}
		ok, err := p.lab.allowed(ctx, auth.JobRead, ref)
		if err != nil {
			p.fail(w, r, err)
			return
		}
		if !ok {
			continue
		}
		row := jobRow{Job: j}
		if j.Total > 0 {
			row.Percent = int(100 * j.Done / j.Total)
		}
		if j.State == "running" {
			o := p.offers(ctx)
			o.add(auth.JobCancel, ref, Action{
				Name: "job.cancel", Label: "Cancel", Method: http.MethodPost, Path: "/api/v1/jobs/" + j.ID + "/cancel", Danger: true,
				Key:     j.ID,
				CLI:     "stagehand job cancel " + j.ID,
				Confirm: "Stop " + j.Kind + " of " + j.Subject + ". What it made so far is rolled back.",
			})
			if row.Cancel, err = o.result(); err != nil {
				p.fail(w, r, err)
				return
			}
		}
		d.Rows = append(d.Rows, row)
	}
	sort.Slice(d.Rows, func(i, j int) bool { return d.Rows[i].Started.After(d.Rows[j].Started) })
	p.show(w, r, "jobs.html", "Jobs", "jobs", d)
}
