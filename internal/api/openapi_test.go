package api_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"testing"

	"stagehand/internal/api"
	"stagehand/internal/api/apitest"
)

// openAPIDoc is the part of the document the tests read.
type openAPIDoc struct {
	OpenAPI    string                               `json:"openapi"`
	Info       map[string]any                       `json:"info"`
	Paths      map[string]map[string]map[string]any `json:"paths"`
	Components struct {
		Schemas   map[string]map[string]any `json:"schemas"`
		Responses map[string]map[string]any `json:"responses"`
	} `json:"components"`
}

func fetchOpenAPI(t *testing.T, l apitest.Served) (*openAPIDoc, []api.RouteInfo, func(method, path, body string) (int, []byte)) {
	t.Helper()
	srv, h := apitest.Serve(t, l)
	status, hdr, body := call(t, srv, http.MethodGet, api.OpenAPIPath, "")
	if status != http.StatusOK || !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
		t.Fatalf("GET %s: %d %s %s", api.OpenAPIPath, status, hdr.Get("Content-Type"), body)
	}
	var doc openAPIDoc
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatalf("the document is not JSON: %v", err)
	}
	do := func(method, path, body string) (int, []byte) {
		status, _, b := call(t, srv, method, path, body)
		return status, b
	}
	return &doc, h.Routes(), do
}

// TestOpenAPICoversTheRouteTable: the served document is JSON of OpenAPI
// 3.1.0, holds every registered route (method and path) and no other, each
// operation names its route's action, every error status refers to the
// shared Error schema whose kinds are the wire's, and every $ref resolves.
func TestOpenAPICoversTheRouteTable(t *testing.T) {
	doc, routes, _ := fetchOpenAPI(t, apitest.New(t))
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi = %q, want 3.1.0", doc.OpenAPI)
	}
	registered := map[string]api.RouteInfo{}
	for _, ri := range routes {
		method, path, _ := strings.Cut(ri.Pattern, " ")
		registered[strings.ToLower(method)+" "+path] = ri
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			key := method + " " + path
			documented[key] = true
			ri, ok := registered[key]
			if !ok {
				t.Errorf("documented, not registered: %s", key)
				continue
			}
			if !ri.Public && op["x-stagehand-action"] != string(ri.Action) {
				t.Errorf("%s: x-stagehand-action %v, the route table says %s", key, op["x-stagehand-action"], ri.Action)
			}
			resps, _ := op["responses"].(map[string]any)
			if len(resps) == 0 {
				t.Errorf("%s: no responses", key)
			}
			for _, code := range []string{"400", "404", "503", "default"} {
				if resps[code] == nil {
					t.Errorf("%s: no %s answer", key, code)
				}
			}
			if !ri.Public && (resps["401"] == nil || resps["403"] == nil) {
				t.Errorf("%s: behind the gate, yet no 401 or 403 answer", key)
			}
		}
	}
	for key := range registered {
		if !documented[key] {
			t.Errorf("registered, not documented: %s", key)
		}
	}
	if len(documented) != len(registered) {
		t.Errorf("%d operations documented, %d routes registered", len(documented), len(registered))
	}

	// The shared Error schema and the statuses it is answered with.
	errSchema := doc.Components.Schemas["Error"]
	kinds := fmt.Sprint(errSchema["properties"].(map[string]any)["kind"].(map[string]any)["enum"])
	for _, k := range []string{"invalid", "unauthenticated", "forbidden", "not_found", "conflict", "canceled", "unavailable", "internal"} {
		if !strings.Contains(kinds, k) {
			t.Errorf("Error.kind does not list %q: %s", k, kinds)
		}
	}
	for _, st := range []int{400, 401, 403, 404, 409, 413, 421, 429, 503} {
		r := doc.Components.Responses[fmt.Sprintf("Error%d", st)]
		if r == nil || !strings.Contains(fmt.Sprint(r), "#/components/schemas/Error") {
			t.Errorf("no Error response for %d: %v", st, r)
		}
	}

	// Every reference resolves.
	b, _ := json.Marshal(doc)
	var all map[string]any
	json.Unmarshal(b, &all)
	walkRefs(all, func(ref string) {
		name, ok := strings.CutPrefix(ref, "#/components/schemas/")
		if ok && doc.Components.Schemas[name] != nil {
			return
		}
		if name, ok := strings.CutPrefix(ref, "#/components/responses/"); ok && doc.Components.Responses[name] != nil {
			return
		}
		t.Errorf("dangling $ref %s", ref)
	})
}

func walkRefs(v any, fn func(string)) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && k == "$ref" {
				fn(s)
			}
			walkRefs(x, fn)
		}
	case []any:
		for _, x := range v {
			walkRefs(x, fn)
		}
	}
}

// TestOpenAPIRefusesAnUndescribedRoute: generation fails, naming the
// route, when the table has a route the descriptions lack (a handler
// added without its wire types), and when a description's route is gone.
func TestOpenAPIRefusesAnUndescribedRoute(t *testing.T) {
	l := apitest.New(t)
	h := api.NewLabHandler(l.API(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(h.Drain)
	if _, err := h.OpenAPI(); err != nil {
		t.Fatalf("the real table: %v", err)
	}
	routes := append(h.Routes(), api.RouteInfo{Pattern: "GET /api/v1/gadgets", Action: "status.read"})
	if _, err := api.OpenAPIOf(routes, "test"); err == nil || !strings.Contains(err.Error(), "GET /api/v1/gadgets") {
		t.Errorf("a route without a description: %v, want an error naming it", err)
	}
	// The OIDC routes exist when the daemon signs in with OIDC: the
	// callback's path is the configured redirect URL's.
	oidc := append(h.Routes(), api.RouteInfo{Pattern: "GET " + api.OIDCLoginPath, Public: true}, api.RouteInfo{Pattern: "GET /sso/done", Public: true})
	if b, err := api.OpenAPIOf(oidc, "test"); err != nil || !strings.Contains(string(b), `"/sso/done"`) {
		t.Errorf("with OIDC routes: %v", err)
	}
	var fewer []api.RouteInfo
	for _, ri := range h.Routes() {
		if ri.Pattern != "GET /api/v1/configs/{name}" {
			fewer = append(fewer, ri)
		}
	}
	if _, err := api.OpenAPIOf(fewer, "test"); err == nil || !strings.Contains(err.Error(), "GET /api/v1/configs/{name}") {
		t.Errorf("a description without its route: %v, want an error naming it", err)
	}
}

// TestOpenAPISchemasMatchRealAnswers: real answers of a few routes have
// every field their response schema requires, of the type it says, and
// request schemas follow the tags (omitempty fields not required, unknown
// fields refused).
func TestOpenAPISchemasMatchRealAnswers(t *testing.T) {
	doc, _, do := fetchOpenAPI(t, apitest.New(t).Seed(t))
	schemas := doc.Components.Schemas
	// responseSchema returns the JSON schema of an operation's status answer.
	responseSchema := func(method, path, status string) map[string]any {
		t.Helper()
		op := doc.Paths[path][method]
		r, _ := op["responses"].(map[string]any)[status].(map[string]any)
		c, _ := r["content"].(map[string]any)["application/json"].(map[string]any)
		s, _ := c["schema"].(map[string]any)
		if s == nil {
			t.Fatalf("%s %s: no JSON schema for %s", method, path, status)
		}
		return s
	}
	for _, tc := range []struct {
		method, path, real, body, status string
	}{
		{"get", "/api/v1/configs/{name}", "/api/v1/configs/web", "", "200"},
		{"get", "/api/v1/configs", "/api/v1/configs", "", "200"},
		{"get", "/api/v1/networks/{name}", "/api/v1/networks/lan", "", "200"},
		{"get", "/api/v1/templates", "/api/v1/templates", "", "200"},
		{"get", "/api/v1/status", "/api/v1/status", "", "200"},
		{"post", "/api/v1/configs/{name}/clone", "/api/v1/configs/web/clone", `{"name":"web-copy"}`, "201"},
		{"post", "/api/v1/configs/{name}/clone", "/api/v1/configs/web/clone", `{"name":"web-full","mode":"full"}`, "202"},
	} {
		status, body := do(strings.ToUpper(tc.method), tc.real, tc.body)
		if fmt.Sprint(status) != tc.status {
			t.Fatalf("%s %s: %d %s", tc.method, tc.real, status, body)
		}
		var v any
		if err := json.Unmarshal(body, &v); err != nil {
			t.Fatal(err)
		}
		for _, p := range conforms(schemas, responseSchema(tc.method, tc.path, tc.status), v, "$") {
			t.Errorf("%s %s: %s", tc.method, tc.real, p)
		}
	}
	// An error answer has the Error schema's shape.
	status, body := do("GET", "/api/v1/configs/nope", "")
	var e any
	json.Unmarshal(body, &e)
	if status != http.StatusNotFound {
		t.Fatalf("GET a missing configuration: %d", status)
	}
	for _, p := range conforms(schemas, map[string]any{"$ref": "#/components/schemas/Error"}, e, "$") {
		t.Errorf("error answer: %s", p)
	}
	// And the checker itself sees a wrong answer.
	if p := conforms(schemas, map[string]any{"$ref": "#/components/schemas/Error"}, map[string]any{"error": 3}, "$"); len(p) != 2 {
		t.Errorf("a wrong error body: %v, want a wrong type and a missing kind", p)
	}

	// Request schemas, from the tags.
	req := schemas["ConfigRequest"]
	if got := fmt.Sprint(req["required"]); got != "[name vms]" {
		t.Errorf("ConfigRequest requires %s, want [name vms] (the omitempty fields are optional)", got)
	}
	if req["additionalProperties"] != false {
		t.Errorf("ConfigRequest allows unknown fields; the decoder refuses them")
	}
	if got := fmt.Sprint(schemas["DeployRequest"]["required"]); got != "<nil>" {
		t.Errorf("DeployRequest requires %s; a bool left out is false", got)
	}
	if props := schemas["QuotaRequest"]["properties"].(map[string]any); props["stored_vms"] == nil || props["scope"] == nil {
		t.Errorf("QuotaRequest does not flatten its embedded limits: %v", props)
	}
	if got := fmt.Sprint(schemas["Job"]["required"]); strings.Contains(got, "ended") {
		t.Errorf("Job requires ended (omitzero): %s", got)
	}
}

// conforms checks v against schema (the subset the generator writes:
// $ref, type, properties, required, items, additionalProperties, enum,
// allOf) and returns what disagrees.
func conforms(schemas map[string]map[string]any, schema map[string]any, v any, at string) []string {
	if ref, ok := schema["$ref"].(string); ok {
		return conforms(schemas, schemas[strings.TrimPrefix(ref, "#/components/schemas/")], v, at)
	}
	var problems []string
	if all, ok := schema["allOf"].([]any); ok {
		for _, s := range all {
			problems = append(problems, conforms(schemas, s.(map[string]any), v, at)...)
		}
	}
	typ, _ := schema["type"].(string)
	okType := map[string]func(any) bool{
		"object":  func(v any) bool { _, ok := v.(map[string]any); return ok },
		"array":   func(v any) bool { _, ok := v.([]any); return ok },
		"string":  func(v any) bool { _, ok := v.(string); return ok },
		"boolean": func(v any) bool { _, ok := v.(bool); return ok },
		"number":  func(v any) bool { _, ok := v.(float64); return ok },
		"integer": func(v any) bool { f, ok := v.(float64); return ok && f == float64(int64(f)) },
	}[typ]
	if okType != nil && !okType(v) {
		return append(problems, fmt.Sprintf("%s: %T, want %s", at, v, typ))
	}
	if enum, ok := schema["enum"].([]any); ok && !strings.Contains(fmt.Sprint(enum), fmt.Sprint(v)) {
		problems = append(problems, fmt.Sprintf("%s: %v not in %v", at, v, enum))
	}
	switch v := v.(type) {
	case map[string]any:
		props, _ := schema["properties"].(map[string]any)
		req, _ := schema["required"].([]any)
		for _, r := range req {
			if _, ok := v[r.(string)]; !ok {
				problems = append(problems, fmt.Sprintf("%s: required %q missing", at, r))
			}
		}
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if ps, ok := props[k].(map[string]any); ok {
				problems = append(problems, conforms(schemas, ps, v[k], at+"."+k)...)
			} else if props != nil && schema["additionalProperties"] == nil {
				problems = append(problems, fmt.Sprintf("%s: field %q is not in the schema", at, k))
			}
		}
	case []any:
		if items, ok := schema["items"].(map[string]any); ok {
			for i, x := range v {
				problems = append(problems, conforms(schemas, items, x, fmt.Sprintf("%s[%d]", at, i))...)
			}
		}
	}
	return problems
}
