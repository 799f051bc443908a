package webui

import (
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"stagehand/internal/auth"
	"stagehand/internal/errdefs"
	"stagehand/internal/lab"
	"stagehand/internal/lab/access"
	"stagehand/internal/store"
)

// configPages are the configurations' pages: the list (with its live
// rows), one configuration and its parts.
type configPages struct{ *view }

// configRow is one configuration of the list.
type configRow struct {
	Name, Description, State, Owner, Workspace string
	Fenced                                     bool
	FencePolicy                                string
	VMs, Running                               int
	StorageExpires, DeployExpires              time.Time
	LastError                                  string
}

func rowOf(c *lab.ConfigView) configRow {
	row := configRow{Name: c.Name, Description: c.Description, State: c.State, Owner: c.Owner, Workspace: c.Workspace,
		Fenced: c.Fenced, FencePolicy: c.FencePolicy, VMs: len(c.VMs), LastError: c.LastError,
		StorageExpires: c.Lease.StorageExpires, DeployExpires: c.Lease.DeployExpires}
	for _, v := range c.VMs {
		if v.State == "running" {
			row.Running++
		}
	}
	return row
}

// The list shows its first screenful of rows in the page and loads the
// rest as the user scrolls (configsRows): a page of 1,000 rows took
// Chromium longer to lay out than the daemon took to make it.
const (
	firstRows = 50  // rows in the page itself: more than a tall screen holds
	moreRows  = 200 // rows per fragment after those
)

type configsData struct {
	Rows      []configRow
	States    []string // the states present, for the filter
	Actions   []Action
	Workspace string
	// After is the newest event's id: the page's event stream starts
	// after it.
	After int64
	// Filter is the filter the rows were chosen by (the page's
	// ?q=&state=), shown in its inputs.
	Filter configsFilter
	// More is the rows that follow Rows, to be loaded.
	More configsMore
}

// configsFilter is the list's search: every word of Q in a row's name,
// owner, workspace or description (case-insensitive), and its State.
// app.js applies the same test to the rows it holds.
type configsFilter struct {
	Q, State string
	words    []string
}

func filterOf(r *http.Request) configsFilter {
	q := r.URL.Query()
	f := configsFilter{Q: q.Get("q"), State: q.Get("state")}
	f.words = strings.Fields(strings.ToLower(f.Q))
	return f
}

// Empty reports whether the filter lets every row through.
func (f configsFilter) Empty() bool { return len(f.words) == 0 && f.State == "" }

func (f configsFilter) match(row *configRow) bool {
	if f.State != "" && row.State != f.State {
		return false
	}
	if len(f.words) == 0 {
		return true
	}
	hay := strings.ToLower(row.search())
	for _, w := range f.words {
		if !strings.Contains(hay, w) {
			return false
		}
	}
	return true
}

// search is the text the filter searches (the row's data-search).
func (row configRow) search() string {
	return row.Name + " " + row.Owner + " " + row.Workspace + " " + row.Description
}

// configsMore is the marker row after a part of the list: how many rows
// follow, and the fragment that brings the next of them.
type configsMore struct {
	Left int
	URL  string
}

// configsList reads the configurations of the chosen workspace that pass
// f, sorted by name, and the states of all of them.
func (p *configPages) configsList(r *http.Request, workspace string, f configsFilter) (rows []configRow, states []string, err error) {
	cs, err := p.lab.Configs.List(r.Context())
	if err != nil {
		return nil, nil, err
	}
	seen := map[string]bool{}
	for i := range cs {
		if workspace != "" && cs[i].Workspace != workspace {
			continue
		}
		row := rowOf(&cs[i])
		if !seen[row.State] {
			seen[row.State] = true
			states = append(states, row.State)
		}
		if f.match(&row) {
			rows = append(rows, row)
		}
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Name < rows[j].Name })
	sort.Strings(states)
	return rows, states, nil
}

// page cuts rows after the row named after (all when ""), n of them, and
// says what follows.
func pageOf(rows []configRow, after string, n int, workspace string, f configsFilter) ([]configRow, configsMore) {
	start := sort.Search(len(rows), func(i int) bool { return rows[i].Name > after })
	rows = rows[start:]
	if len(rows) <= n {
		return rows, configsMore{}
	}
	q := url.Values{"after": {rows[n-1].Name}}
	if f.Q != "" {
		q.Set("q", f.Q)
	}
	if f.State != "" {
		q.Set("state", f.State)
	}
	if workspace != "" {
		q.Set("workspace", workspace)
	}
	return rows[:n], configsMore{Left: len(rows) - n, URL: "/ui/config-rows?" + q.Encode()}
}

// configsPage lists the configurations the user may see (in the chosen
// workspace), kept current from the event stream: the first rows, and a
// marker from which app.js loads the others.
func (p *configPages) configsPage(w http.ResponseWriter, r *http.Request) {
	f, after, err := p.listFrame(r, "Configurations", "configs")
	if err != nil {
		p.fail(w, r, err)
		return
	}
	d := configsData{Workspace: f.Workspace, After: after, Filter: filterOf(r)}
	rows, states, err := p.configsList(r, f.Workspace, d.Filter)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	d.States = states
	d.Rows, d.More = pageOf(rows, "", firstRows, f.Workspace, d.Filter)
	if d.Actions, err = p.createActions(r, f.Workspace); err != nil {
		p.fail(w, r, err)
		return
	}
	f.Page = d
	p.render(w, r, "configs.html", f)
}

// configsRows answers the rows of the list after ?after= (all from the
// first when empty) that pass ?q= and ?state=, in ?workspace= ("" for
// all): the next part of the list, or the whole list again when its
// filter changed, with its own marker when more follow.
func (p *configPages) configsRows(w http.ResponseWriter, r *http.Request) {
	ws := r.URL.Query().Get("workspace")
	filter := filterOf(r)
	rows, _, err := p.configsList(r, ws, filter)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	after := r.URL.Query().Get("after")
	n := moreRows
	if after == "" {
		n = firstRows
	}
	var d configsData
	d.Rows, d.More = pageOf(rows, after, n, ws, filter)
	p.fragment(w, r, "configs.html", "config-rows", d)
}

// configRow answers one row of the list, for a live update; 404 when the
// configuration is gone, invisible, or outside the chosen workspace (the
// list then drops the row).
func (p *configPages) configRow(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	name := r.PathValue("name")
	if err := p.lab.check(ctx, auth.ConfigRead, access.Ref{Kind: access.KindConfig, Name: name}); err != nil {
		p.fail(w, r, err)
		return
	}
	c, err := p.lab.Configs.Get(ctx, name)
	if err == nil && c.Kind == store.KindLibrary {
		err = errdefs.NotFound("configuration %q not found (it is a library entry)", name)
	}
	if err != nil {
		p.fail(w, r, err)
		return
	}
	if ws := r.URL.Query().Get("workspace"); ws != "" && c.Workspace != ws {
		p.fail(w, r, errdefs.NotFound("configuration %q is not in workspace %q", name, ws))
		return
	}
	p.fragment(w, r, "configs.html", "config-row", rowOf(c))
}

// createActions are the list's actions: a new configuration, when the
// user may create one in the chosen workspace (else in their default
// one, where a create without a workspace goes).
func (p *configPages) createActions(r *http.Request, ws string) ([]Action, error) {
	ctx := r.Context()
	tmpls, nets, err := p.choices(r)
	if err != nil {
		return nil, err
	}
	o := p.offers(ctx)
	o.add(auth.ConfigCreate, access.Ref{Kind: access.KindConfig, Workspace: ws}, Action{
		Name: "config.create", Label: "New configuration", Method: http.MethodPost, Path: "/api/v1/configs",
		CLI:     "stagehand config create {name} --vm {vms[0].name}={vms[0].template},net={vms[0].network},ip={vms[0].ip}",
		Confirm: "Create a configuration with one VM (add more with the CLI line's --vm).",
		Fields: []Field{
			{Name: "name", Label: "Name", Required: true},
			{Name: "description", Label: "Description"},
			{Name: "vms[0].name", Label: "VM name", Value: "vm1", Required: true},
			{Name: "vms[0].template", Label: "Template", Kind: FieldSelect, Options: tmpls, Required: true},
			{Name: "vms[0].network", Label: "Network", Kind: FieldSelect, Options: nets, Required: true},
			{Name: "vms[0].ip", Label: "IP (pool, dhcp or an address)", Value: "pool", Required: true},
		},
		Then: "/ui/configs/{name}",
	})
	return o.result()
}

// choices are the names of the templates and networks the user may see,
// for a create's selects.
func (p *configPages) choices(r *http.Request) (tmpls, nets []string, err error) {
	if p.lab.Templates != nil {
		ts, err := p.lab.Templates.List(r.Context())
		if err != nil {
			return nil, nil, err
		}
		for _, t := range ts {
			tmpls = append(tmpls, t.Name)
		}
	}
	if p.lab.Networks != nil {
		ns, err := p.lab.Networks.List(r.Context())
		if err != nil {
			return nil, nil, err
		}
		for _, n := range ns {
			nets = append(nets, n.Name)
		}
	}
	sort.Strings(tmpls)
	sort.Strings(nets)
	return tmpls, nets, nil
}
