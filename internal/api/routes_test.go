package api_test

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"stagehand/internal/api"
	"stagehand/internal/api/apitest"
	"stagehand/internal/auth"
)

// TestEveryRouteHasAnAction walks the route table: every route but the
// public probes names a known action, the object it is decided on is of a
// known kind, named by a path value the pattern has, and of the action's
// own kind; every route is served.
func TestEveryRouteHasAnAction(t *testing.T) {
	l := apitest.New(t).Seed(t)
	h := api.NewLabHandler(l.API(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(h.Drain)
	kinds := map[string]bool{"template": true, "network": true, "config": true, "library": true, "archive": true, "job": true}
	public := map[string]bool{}
	seen := map[string]bool{}
	routes := h.Routes()
	if len(routes) < 50 {
		t.Fatalf("only %d routes in the table", len(routes))
	}
	for _, ri := range routes {
		if seen[ri.Pattern] {
			t.Errorf("%s: registered twice", ri.Pattern)
		}
		seen[ri.Pattern] = true
		if ri.Public {
			public[ri.Pattern] = true
			if ri.Action != "" || ri.Kind != "" {
				t.Errorf("%s: public, yet has action %q on kind %q", ri.Pattern, ri.Action, ri.Kind)
			}
			continue
		}
		if ri.Action == "" {
			t.Errorf("%s: no action", ri.Pattern)
			continue
		}
		if _, err := auth.ParseAction(string(ri.Action)); err != nil {
			t.Errorf("%s: %v", ri.Pattern, err)
		}
		if api.DirectoryKinds[ri.Kind] {
			continue // decided by the directory's handlers on their records
		}
		if ri.Body != "" {
			// Named in the body: a capture or an archive reads a configuration.
			if ri.Kind != "config" || ri.Param != "" || strings.Contains(ri.Pattern, "{") {
				t.Errorf("%s: object named by the body's %q, of kind %q and path value %q", ri.Pattern, ri.Body, ri.Kind, ri.Param)
			}
			continue
		}
		switch {
		case ri.Kind == "" && ri.Param != "":
			t.Errorf("%s: names its object by %q but has no kind", ri.Pattern, ri.Param)
		case ri.Kind == "":
		case !kinds[ri.Kind]:
			t.Errorf("%s: unknown object kind %q", ri.Pattern, ri.Kind)
		case !strings.Contains(ri.Pattern, "{"+ri.Param+"}"):
			t.Errorf("%s: object named by {%s}, which the pattern does not have", ri.Pattern, ri.Param)
		case !strings.HasPrefix(string(ri.Action), ri.Kind+"."):
			t.Errorf("%s: action %q is not one on a %s", ri.Pattern, ri.Action, ri.Kind)
		}
		// Every object route's action is decided on that object: a route
		// under /{kind}s/{param} must name it.
		// Hosts are the system's records, decided on the system.
		if ri.Kind == "" && strings.Contains(ri.Pattern, "{") && !strings.HasPrefix(string(ri.Action), "host.") {
			t.Errorf("%s: has path values but decides on no object", ri.Pattern)
		}
	}
	// Filtered routes skip the gate's decision: each must be one the lab
	// answers item by item for its caller.
	var filtered []string
	for _, ri := range routes {
		if ri.Filtered {
			filtered = append(filtered, ri.Pattern)
		}
	}
	if got, want := strings.Join(filtered, ", "), "GET /api/v1/cleanup, POST /api/v1/cleanup, GET /api/v1/events"; got != want {
		t.Errorf("filtered routes: %s; want %s (a new one needs the lab to filter its answer per caller)", got, want)
	}
	want := []string{"GET /healthz", "GET /readyz", "GET /api/v1/healthz", "GET /api/v1/readyz",
		"POST /api/v1/login", "POST /api/v1/logout"}
	for _, p := range want {
		if !public[p] {
			t.Errorf("%s is not public", p)
		}
	}
	if len(public) != len(want) {
		t.Errorf("public routes = %v, want only %v", public, want)
	}

	// The table is what the mux serves: an unknown path is 404, and every
	// route in the table answers something else.
	srv, _ := apitest.Serve(t, l)
	for _, ri := range routes {
		method, path, _ := strings.Cut(ri.Pattern, " ")
		if method == http.MethodGet && !strings.Contains(path, "{") && path != "/api/v1/events" {
			if status, _, body := call(t, srv, method, path, ""); status == http.StatusNotFound || status == http.StatusMethodNotAllowed {
				t.Errorf("%s: %d %s", ri.Pattern, status, body)
			}
		}
	}
}
