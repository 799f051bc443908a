package api

import (
	"net/http"

	"stagehand/internal/auth"
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
	// "id" for a job); empty when Kind is.
	Param string
	// Public routes are answered without credentials (/healthz, /readyz).
	Public bool
}

// objectRef says how a route names the object its action is decided on.
type objectRef struct{ kind, param string }

// object names the object of kind kind by the path value param.
func object(kind, param string) objectRef { return objectRef{kind: kind, param: param} }

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
	r.add(RouteInfo{Pattern: pattern, Action: action, Kind: obj.kind, Param: obj.param}, fn)
}

// public registers fn at pattern, served without credentials.
func (r *router) public(pattern string, fn apiFunc) {
	r.add(RouteInfo{Pattern: pattern, Public: true}, fn)
}

func (r *router) add(ri RouteInfo, fn apiFunc) {
	r.routes = append(r.routes, ri)
	r.mux.HandleFunc(ri.Pattern, r.serve(ri, fn))
}
