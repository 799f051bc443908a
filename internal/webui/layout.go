package webui

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"stagehand/internal/auth"
	"stagehand/internal/units"
)

// templateFS holds the pages: layout.html (the frame every page shares),
// partials.html (pieces pages share: action buttons and their dialogs,
// state badges) and one file per page defining "title" and "content".
//
//go:embed templates
var templateFS embed.FS

// navItems are the top-level pages, in the order the navigation shows
// them. A page with Need is shown only to whom it answers true.
var navItems = []struct {
	Name, Label, Path string
	Need              func(ctx context.Context, l Lab) (bool, error)
}{
	{"configs", "Configurations", "/ui/configs", nil},
	{"templates", "Templates", "/ui/templates", nil},
	{"networks", "Networks", "/ui/networks", nil},
	{"library", "Library", "/ui/library", nil},
	{"archives", "Archives", "/ui/archives", nil},
	{"cleanup", "Cleanup", "/ui/cleanup", nil},
	{"jobs", "Jobs", "/ui/jobs", nil},
	{"activity", "Activity", "/ui/activity", nil},
	{"tokens", "Tokens", "/ui/tokens", nil},
	{"admin", "Admin", "/ui/admin", func(ctx context.Context, l Lab) (bool, error) {
		s, err := l.adminSections(ctx)
		return len(s) > 0, err
	}},
}

// layoutFiles are parsed into every page.
var layoutFiles = []string{"templates/layout.html", "templates/partials.html"}

// parsePages parses each page with the layout. A template that does not
// parse is a bug of the build: it panics at start, and the package's
// tests catch it.
func parsePages() map[string]*template.Template {
	base := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(templateFS, layoutFiles...))
	files, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		panic(err)
	}
	pages := map[string]*template.Template{}
	for _, f := range files {
		name := strings.TrimPrefix(f, "templates/")
		if name == "layout.html" || name == "partials.html" {
			continue
		}
		pages[name] = template.Must(template.Must(base.Clone()).ParseFS(templateFS, f))
	}
	return pages
}

// frame is what layout.html shows around a page.
type frame struct {
	Title      string
	User       string
	Nav        []navLink
	Workspaces []string // the switcher's choices
	Workspace  string   // the one chosen; "" for all
	// AssetsMissing says the vendored JavaScript is not built.
	AssetsMissing string
	Asset         func(name string) string
	Page          any // the page's own data
}

type navLink struct {
	Name, Label, Path string
	Active            bool
}

// workspaceCookie remembers the workspace switcher's choice (set by
// app.js; a ?workspace= query wins).
const workspaceCookie = "stagehand_workspace"

// chosenWorkspace is the workspace the pages of r show: the query's,
// else the switcher's cookie, if it is one of ws; "" for all.
func chosenWorkspace(r *http.Request, ws []string) string {
	want, ok := r.URL.Query()["workspace"]
	choice := ""
	if ok {
		choice = want[0]
	} else if c, err := r.Cookie(workspaceCookie); err == nil {
		choice, _ = url.QueryUnescape(c.Value)
	}
	for _, w := range ws {
		if w == choice {
			return choice
		}
	}
	return ""
}

// frameFor returns the frame of a page of r, titled title, whose nav item
// is active.
func (v *view) frameFor(r *http.Request, title, active string) (frame, error) {
	f := frame{Title: title, AssetsMissing: v.assets.Missing(), Asset: v.assets.URL}
	if id, ok := auth.FromContext(r.Context()); ok {
		f.User = id.Name
		ws, err := v.lab.workspaces(r.Context())
		if err != nil {
			return f, err
		}
		f.Workspaces = ws
		f.Workspace = chosenWorkspace(r, ws)
		for _, n := range navItems {
			if n.Need != nil {
				ok, err := n.Need(r.Context(), v.lab)
				if err != nil {
					return f, err
				}
				if !ok {
					continue
				}
			}
			f.Nav = append(f.Nav, navLink{Name: n.Name, Label: n.Label, Path: n.Path, Active: n.Name == active})
		}
	}
	return f, nil
}

// listFrame returns the frame of a list page and the id of the newest
// event, from which the list's live updates follow.
func (v *view) listFrame(r *http.Request, title, active string) (f frame, after int64, err error) {
	if f, err = v.frameFor(r, title, active); err != nil {
		return f, 0, err
	}
	after, err = v.lab.latestEvent(r.Context())
	return f, after, err
}

// show writes the page file with data page in its frame, titled title,
// whose nav item is active.
func (v *view) show(w http.ResponseWriter, r *http.Request, file, title, active string, page any) {
	f, err := v.frameFor(r, title, active)
	if err != nil {
		v.fail(w, r, err)
		return
	}
	f.Page = page
	v.render(w, r, file, f)
}

// render writes the page file (a file of templates/) in its frame.
func (v *view) render(w http.ResponseWriter, r *http.Request, file string, f frame) {
	v.renderStatus(w, r, http.StatusOK, file, f)
}

// renderStatus writes page file with status. data is the frame, or the
// page's data alone (wrapped in a bare frame).
func (v *view) renderStatus(w http.ResponseWriter, r *http.Request, status int, file string, data any) {
	f, ok := data.(frame)
	if !ok {
		f, _ = v.frameFor(r, "", "")
		f.Page = data
		if ep, isErr := data.(errorPage); isErr {
			f.Title = ep.StatusText
		}
	}
	v.execute(w, r, status, file, "layout.html", f)
}

// fragment writes the template name of page file alone: the piece of a
// page htmx swaps in on a live update.
func (v *view) fragment(w http.ResponseWriter, r *http.Request, file, name string, data any) {
	v.execute(w, r, http.StatusOK, file, name, data)
}

// execute renders into a buffer first, so that a template failing half
// way sends an error page rather than half a page.
func (v *view) execute(w http.ResponseWriter, r *http.Request, status int, file, name string, data any) {
	t, ok := v.pages[file]
	if !ok {
		v.log.Error("web console: no page template", "file", file)
		http.Error(w, "internal error (see the daemon log)", http.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, name, data); err != nil {
		v.log.Error("web console: render", "file", file, "template", name, "path", r.URL.Path, "err", err)
		http.Error(w, "internal error (see the daemon log)", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w)
}

// funcs are the templates' helpers.
var funcs = template.FuncMap{
	"bytes":    units.Bytes,
	"unixms":   func(t time.Time) int64 { return t.UnixMilli() },
	"rfc3339":  func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"when":     when,
	"join":     strings.Join,
	"pathseg":  url.PathEscape,
	"query":    url.QueryEscape,
	"base":     func(p string) string { return p[strings.LastIndex(p, "/")+1:] },
	"add":      func(a, b int) int { return a + b },
	"sortStrs": func(s []string) []string { s = append([]string(nil), s...); sort.Strings(s); return s },
	"dict": func(kv ...any) (map[string]any, error) {
		if len(kv)%2 != 0 {
			return nil, fmt.Errorf("dict: odd number of arguments")
		}
		m := make(map[string]any, len(kv)/2)
		for i := 0; i < len(kv); i += 2 {
			k, ok := kv[i].(string)
			if !ok {
				return nil, fmt.Errorf("dict: key %v is not a string", kv[i])
			}
			m[k] = kv[i+1]
		}
		return m, nil
	},
}

// when shows a time for people, "—" for none.
func when(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.Local().Format("2006-01-02 15:04")
}
