package api

import (
	"net/http"
	"strings"

	"stagehand/internal/api/wire"
	"stagehand/internal/auth"
	"stagehand/internal/errdefs"
	"stagehand/internal/lab/access"
)

// explainHandler explains a decision of the authorization policy, for
// those who administer what is explained; the checker's Explain decides.
type explainHandler struct{ directory }

// explainRef reads an explained object: "kind/name", "workspace/org/ws"
// or "workspace/ws" (an action in the workspace itself: the action's kind
// in it), or "system".
func explainRef(action auth.Action, object string) (access.Ref, error) {
	if object == "system" {
		return access.Ref{Kind: access.KindSystem}, nil
	}
	kind, name, ok := strings.Cut(object, "/")
	if !ok || name == "" {
		return access.Ref{}, errdefs.Invalid("object %q: want KIND/NAME (config/web), workspace/ORG/NAME or system", object)
	}
	switch kind {
	case "workspace":
		k, _, _ := strings.Cut(string(action), ".")
		return access.Ref{Kind: k, Workspace: name}, nil
	case access.KindTemplate, access.KindNetwork, access.KindConfig, access.KindLibrary, access.KindArchive, access.KindJob:
		return access.Ref{Kind: kind, Name: name}, nil
	}
	return access.Ref{}, errdefs.Invalid("object %q: kind %q is not template, network, config, library, archive, job or workspace", object, kind)
}

func (h explainHandler) explain(w http.ResponseWriter, r *http.Request) error {
	var req wire.ExplainRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	action, err := auth.ParseAction(req.Action)
	if err != nil {
		return err
	}
	ref, err := explainRef(action, req.Object)
	if err != nil {
		return err
	}
	if req.User == "" {
		return errdefs.Invalid("explain: user is required")
	}
	d, err := h.checker().Explain(r.Context(), req.User, action, ref)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, wire.Explanation{Allowed: d.Allowed, Visible: d.Visible, Reason: d.Reason})
}
