package webui

import (
	"net/http"

	"stagehand/internal/auth"
	"stagehand/internal/errdefs"
)

var sectionExplain = adminSection{"explain", "Explain", "/ui/admin/explain"}

type explainData struct{ Ask Action }

// explainPage asks the API why a user may or may not do an action to an
// object (POST /api/v1/auth/explain, as `stagehand auth explain`): for
// the system administrator and organizations' admins, whom the API lets
// ask about what they administer. The object's organization is the API's
// to check.
func (p *adminPages) explainPage(w http.ResponseWriter, r *http.Request) {
	a, err := p.lab.adminOf(r.Context())
	if err != nil {
		p.fail(w, r, err)
		return
	}
	if !a.explains() {
		p.fail(w, r, errdefs.Forbidden("explaining decisions is for the system administrator and organizations' admins"))
		return
	}
	var actions []string
	for _, x := range auth.Actions() {
		actions = append(actions, string(x))
	}
	q := r.URL.Query()
	d := explainData{Ask: Action{
		Name: "auth.explain", Label: "Explain", Method: http.MethodPost, Path: "/api/v1/auth/explain", Ask: true,
		CLI:     "stagehand auth explain",
		Confirm: "May a user do an action to an object? The answer names the membership, role, share or administration that decided.",
		Fields: []Field{
			{Name: "user", Label: "User", Required: true, Flag: "--user", Value: q.Get("user")},
			{Name: "action", Label: "Action", Kind: FieldSelect, Options: actions, Required: true, Flag: "--action", Value: q.Get("action")},
			{Name: "object", Label: "Object", Required: true, Flag: "--object", Value: q.Get("object"),
				Help: "KIND/NAME (config/web, template/base, network/lan, library/gold, archive/old, job/ID), workspace/ORG/NAME for an action in a workspace itself, or system"},
		},
	}}
	p.adminRender(w, r, "admin_explain.html", "Explain", "explain", d)
}

// explains reports whether the caller may ask the API's explain: the
// system administrator, or an admin of some organization (the API checks
// the object's).
func (a adminView) explains() bool { return a.system || len(a.orgs) > 0 }
