package api

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"

	"stagehand/internal/auth"
	"stagehand/internal/lab/access"
)

// RouteInfo is one route of the API and what authorizing a request to it
// takes: the action the caller performs and the object it is decided on.
// The route table is data so that one middleware can enforce it and a
// test can enumerate it (TestEveryRouteHasAnAction).
type RouteInfo struct {
	// Pattern is the route as http.ServeMux reads it: "METHOD /path/{param}".
	Pattern string
	// Action is what the caller does; empty only on a public route.
	Action auth.Action
	// Kind is the kind of the object the action is decided on: "template",
	// "network", "config", "library", "archive" or "job". Empty when it is
	// decided on the workspace or the system: lists, creates (whose
	// source, if any, is named in the body), system-wide routes.
	Kind string
	// Param is the path value that holds the object's name ("name", or
	// "id" for a job); empty when Kind is, or when Body names it.
	Param string
	// Body is the field of the JSON body that names the object, for the
	// routes whose path does not (a capture and an archive name the
	// configuration they read: "config").
	Body string
	// Filtered routes answer each caller with what they may see or do,
	// decided by the lab item by item (the events whose object they may
	// read; the cleanup candidates they may see, deleting only those
	// they may delete): the gate only makes sure the caller is
	// authenticated. Action still names what the route does; the lab
	// counts only the workspaces where the caller's role has it.
	Filtered bool
	// Public routes are answered without an authorization check: the
	// probes (/healthz, /readyz), login (which makes credentials) and
	// logout (which ends the session it is sent with).
	Public bool
}

// objectRef says how a route names the object its action is decided on.
type objectRef struct{ kind, param, body string }

// object names the object of kind kind by the path value param.
func object(kind, param string) objectRef { return objectRef{kind: kind, param: param} }

// bodyObject names the object of kind kind by the JSON body's field.
func bodyObject(kind, field string) objectRef { return objectRef{kind: kind, body: field} }

// noObject marks a route decided on the workspace or the system.
var noObject objectRef

// router registers routes on a mux and records them in the route table.
type router struct {
	mux    *http.ServeMux
	routes []RouteInfo
	// serve turns an endpoint into the handler the mux serves, knowing
	// its route (Handler.endpoint).
	serve func(RouteInfo, apiFunc) http.HandlerFunc
}

// route registers fn at pattern, performing action on obj.
func (r *router) route(pattern string, action auth.Action, obj objectRef, fn apiFunc) {
	r.add(RouteInfo{Pattern: pattern, Action: action, Kind: obj.kind, Param: obj.param, Body: obj.body}, fn)
}

// filtered registers fn at pattern, performing action on what the lab
// lets each caller see (RouteInfo.Filtered).
func (r *router) filtered(pattern string, action auth.Action, fn apiFunc) {
	r.add(RouteInfo{Pattern: pattern, Action: action, Filtered: true}, fn)
}

// public registers fn at pattern, served without credentials.
func (r *router) public(pattern string, fn apiFunc) {
	r.add(RouteInfo{Pattern: pattern, Public: true}, fn)
}

func (r *router) add(ri RouteInfo, fn apiFunc) {
	r.routes = append(r.routes, ri)
	r.mux.HandleFunc(ri.Pattern, r.serve(ri, fn))
}

// objectKinds are the kinds of object a workspace holds: an action on one
// of them with no object named is a create or a list in a workspace; any
// other (doctor, events, cleanup, status) is decided on the system.
var objectKinds = map[string]bool{
	access.KindTemplate: true, access.KindNetwork: true, access.KindConfig: true,
	access.KindLibrary: true, access.KindArchive: true, access.KindJob: true,
}

// directoryActions are decided by the directory's handlers on the
// organization or workspace their request names (identity.go).
var directoryActions = map[auth.Action]bool{auth.UserAdmin: true, auth.OrgAdmin: true, auth.WorkspaceAdmin: true}

// refOf returns what ri's action on r is decided on; check is false when
// the api decides nothing further (a list with no workspace named: the
// lab filters it for the caller; a body that names no object: the
// handler refuses it).
func refOf(r *http.Request, ri RouteInfo) (ref access.Ref, check bool, err error) {
	kind, verb, _ := strings.Cut(string(ri.Action), ".")
	switch {
	case ri.Filtered:
		return access.Ref{}, false, nil // the lab decides item by item
	case DirectoryKinds[ri.Kind] || ri.Kind == "" && directoryActions[ri.Action]:
		// The directory's records are not the lab's objects: their
		// handlers decide on them (identity.go).
		return access.Ref{}, false, nil
	case ri.Param != "":
		return access.Ref{Kind: ri.Kind, Name: r.PathValue(ri.Param)}, true, nil
	case ri.Body != "":
		name, err := bodyField(r, ri.Body)
		if err != nil || name == "" {
			return access.Ref{}, false, err
		}
		return access.Ref{Kind: ri.Kind, Name: name}, true, nil
	}
	if !objectKinds[kind] {
		return access.Ref{Kind: access.KindSystem}, true, nil
	}
	// The workspace is read where the handler reads it, and only there
	// (wire.TemplateRequest): a list's and an upload's in the query, a
	// JSON create's in the body. A create naming one in the query is
	// refused rather than decided on a workspace its handler would not
	// use.
	q := r.URL.Query()
	if verb == "read" {
		ws := q.Get("workspace")
		return access.Ref{Kind: kind, Workspace: ws}, ws != "", nil
	}
	if isUpload(r) {
		return access.Ref{Kind: kind, Workspace: q.Get("workspace")}, true, nil
	}
	if q.Has("workspace") {
		return access.Ref{}, false, errMalformed("%s: give the workspace in the body's \"workspace\" field, not in the query", r.URL.Path)
	}
	ws, err := bodyField(r, "workspace")
	if err != nil {
		return access.Ref{}, false, err
	}
	return access.Ref{Kind: kind, Workspace: ws}, true, nil
}

// bodyField returns the string field of r's JSON body, or "" when the
// body is not a JSON object with that string: the handler's own decode
// says what is wrong with it. The body stays readable for the handler.
func bodyField(r *http.Request, field string) (string, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return "", nil
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return "", nil
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	r.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(b), r.Body), r.Body}
	if err != nil {
		return "", errMalformed("read request body: %v", err)
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal(b, &fields) != nil {
		return "", nil
	}
	// The handler's decode matches a struct's field names without regard
	// to case ("Workspace", "WORKSPACE"): the gate must read the value the
	// handler will use, so a field spelled twice is refused.
	var raw json.RawMessage
	found := false
	for k, v := range fields {
		if !strings.EqualFold(k, field) {
			continue
		}
		if found {
			return "", errMalformed("request body: field %q is given more than once (spelled in other cases)", field)
		}
		found, raw = true, v
	}
	var v string
	if json.Unmarshal(raw, &v) != nil {
		return "", nil
	}
	return v, nil
}
