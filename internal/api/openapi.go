package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"stagehand/internal/api/wire"
	"stagehand/internal/auth"
)

// The OpenAPI 3.1 document of the API, served at GET /api/v1/openapi.json.
// It is generated from the route table (Handler.Routes: pattern, action,
// object) and from opDocs below, which names each route's request and
// response wire types; their schemas come from the wire structs by
// reflection (JSON names from the tags, omitempty and omitzero fields not
// required). A route without an entry in opDocs, or an entry without a
// route, makes generation fail: TestOpenAPICoversTheRouteTable keeps the
// two in step.
//
// The document is served to any signed-in caller (status.read, which every
// user has), not to the public: it holds no secret, but the public routes
// are kept to what must work before signing in (the probes and login), each
// one more thing to review; and it names the daemon's version and exact
// routes, which is what a scan would look for. A tool that generates a
// client fetches it with the token it will use anyway.

// OpenAPIPath is where the document is served.
const OpenAPIPath = wire.APIPrefix + "/openapi.json"

// opDoc describes one route beyond what the route table says.
type opDoc struct {
	summary string
	// request is a value of the JSON body's wire type; nil for none.
	request any
	// optional: the body may be left out (decodeOptional).
	optional bool
	// upload is the media type of a body streamed as a file (request nil).
	upload string
	query  []queryParam
	ok     []okResponse
}

// okResponse is one success answer of a route.
type okResponse struct {
	status int
	body   any    // a value of the JSON body's wire type; nil with media or for none
	media  string // a non-JSON answer's media type
	desc   string
}

// queryParam is one query parameter of a route.
type queryParam struct {
	name, typ, desc string
	repeated        bool
}

func ok(body any) okResponse { return okResponse{status: http.StatusOK, body: body, desc: "OK"} }
func created(body any) okResponse {
	return okResponse{status: http.StatusCreated, body: body, desc: "Created"}
}
func media(m, desc string) okResponse {
	return okResponse{status: http.StatusOK, media: m, desc: desc}
}

var (
	noContentOK = okResponse{status: http.StatusNoContent, desc: "Done; no body"}
	jobStarted  = okResponse{status: http.StatusAccepted, body: wire.Job{}, desc: "The job started; Location names it (GET /jobs/{id}/wait follows it)"}
	upgraded    = okResponse{status: http.StatusSwitchingProtocols, desc: "Switched to the console protocol (see wire/console.go); errors before the upgrade are JSON"}

	qWorkspace = queryParam{name: "workspace", typ: "string", desc: `Only this workspace ("ws" in organization default, or "org/ws")`}
	qOrg       = queryParam{name: "org", typ: "string", desc: "Only this organization"}
)

// opDocs is every route's description, by pattern. Paths use p for the
// API prefix so the table reads as the handlers register.
var opDocs = func() map[string]opDoc {
	p := wire.APIPrefix
	vm := p + "/configs/{name}/vms/{vm}"
	d := map[string]opDoc{
		// Probes and the daemon.
		"GET /healthz":                 {summary: "Liveness probe", ok: []okResponse{ok(wire.Health{})}},
		"GET " + p + "/healthz":        {summary: "Liveness probe", ok: []okResponse{ok(wire.Health{})}},
		"GET /readyz":                  {summary: "Readiness probe: 503 while the daemon recovers interrupted operations", ok: []okResponse{ok(wire.Ready{})}},
		"GET " + p + "/readyz":         {summary: "Readiness probe: 503 while the daemon recovers interrupted operations", ok: []okResponse{ok(wire.Ready{})}},
		"GET " + p + "/status":         {summary: "Version, uptime, accelerator, store, counts and recovery", ok: []okResponse{ok(wire.Status{})}},
		"GET /metrics":                 {summary: "Prometheus metrics (text exposition format)", ok: []okResponse{media("text/plain; version=0.0.4", "The metrics")}},
		"GET " + OpenAPIPath:           {summary: "This document", ok: []okResponse{media("application/json", "The OpenAPI 3.1 document")}},
		"GET " + p + "/doctor":         {summary: "Check what disagrees between the store and the files", ok: []okResponse{ok(wire.DoctorReport{})}},
		"POST " + p + "/doctor/repair": {summary: "Check and repair what can be repaired", ok: []okResponse{ok(wire.DoctorReport{})}},
		"GET " + p + "/events": {summary: "The event log; with follow=1 (or Accept: text/event-stream) server-sent events, live",
			query: []queryParam{{name: "after", typ: "integer", desc: "Only events after this id"}, {name: "limit", typ: "integer", desc: "At most this many (a page; Link rel=next names the next)"}, {name: "follow", typ: "boolean", desc: "Stream server-sent events"}},
			ok:    []okResponse{ok([]wire.Event{}), media("text/event-stream", "With follow: one event per message, its id the event's")}},

		// Templates.
		"POST " + p + "/templates": {summary: "Import a template from files on the daemon's host (root on the socket, under serve --import-dir)", request: wire.TemplateRequest{}, ok: []okResponse{created(wire.Template{})}},
		"POST " + p + "/templates/upload": {summary: "Import a template from uploaded files (multipart, see wire/uploads.go)", upload: "multipart/form-data",
			query: []queryParam{{name: "name", typ: "string"}, {name: "description", typ: "string"}, {name: "format", typ: "string", desc: "raw or qcow2; empty: detect"}, {name: "cpus", typ: "integer"}, {name: "memory_mib", typ: "integer"}, {name: "cmdline", typ: "string"}, qWorkspace},
			ok:    []okResponse{created(wire.Template{})}},
		"GET " + p + "/templates":           {summary: "List templates", query: []queryParam{qWorkspace}, ok: []okResponse{ok([]wire.Template{})}},
		"GET " + p + "/templates/{name}":    {summary: "Show a template", ok: []okResponse{ok(wire.Template{})}},
		"DELETE " + p + "/templates/{name}": {summary: "Delete a template", ok: []okResponse{noContentOK}},

		// Networks and addresses.
		"POST " + p + "/networks":                                   {summary: "Create a network", request: wire.NetworkRequest{}, ok: []okResponse{created(wire.Network{})}},
		"GET " + p + "/networks":                                    {summary: "List networks with their pool usage", query: []queryParam{qWorkspace}, ok: []okResponse{ok([]wire.Network{})}},
		"GET " + p + "/networks/{name}":                             {summary: "Show a network and who holds each address", ok: []okResponse{ok(wire.Network{})}},
		"DELETE " + p + "/networks/{name}":                          {summary: "Delete a network", ok: []okResponse{noContentOK}},
		"POST " + p + "/configs/{name}/change-ips":                  {summary: "Give a configuration's pool addresses new ones", ok: []okResponse{ok(wire.Config{})}},
		"PUT " + vm + "/hostname":                                   {summary: "Set a VM's hostname (RFC 1123; empty: VM-CONFIG), seen by the guest at the next deploy", request: wire.SetHostnameRequest{}, ok: []okResponse{ok(wire.Config{})}},
		"PUT " + vm + "/nics/{nic}/ip":                              {summary: "Set one NIC's address (an address, pool or dhcp)", request: wire.SetIPRequest{}, ok: []okResponse{ok(wire.Config{})}},
		"POST " + p + "/configs/{name}/lease":                       {summary: "Set a configuration's leases", request: wire.LeaseRequest{}, ok: []okResponse{ok(wire.Config{})}},
		"GET " + p + "/configs/{name}/space":                        {summary: "What deleting this configuration alone would free (bytes and layers, as the cleanup view counts)", ok: []okResponse{ok(wire.ConfigSpace{})}},
		"GET " + p + "/cleanup":                                     {summary: "What the cleanup would free (the caller's own view)", query: []queryParam{{name: "idle_days", typ: "integer", desc: "Also idle configurations older than this"}}, ok: []okResponse{ok(wire.CleanupReport{})}},
		"POST " + p + "/cleanup":                                    {summary: "Delete what the cleanup lists (of what the caller may delete)", request: wire.CleanupRequest{}, optional: true, ok: []okResponse{ok(wire.CleanupReport{})}},
		"POST " + p + "/configs":                                    {summary: "Create a configuration", request: wire.ConfigRequest{}, ok: []okResponse{created(wire.Config{})}},
		"GET " + p + "/configs":                                     {summary: "List configurations", query: []queryParam{qWorkspace}, ok: []okResponse{ok([]wire.Config{})}},
		"GET " + p + "/configs/{name}":                              {summary: "Show a configuration", ok: []okResponse{ok(wire.Config{})}},
		"DELETE " + p + "/configs/{name}":                           {summary: "Delete a configuration", ok: []okResponse{noContentOK}},
		"POST " + p + "/configs/{name}/shortcut":                    {summary: "Run the shortcut pass for a configuration now (?vm=V: one VM): a chain reading through more layers than the daemon's shortcut depth gets one frozen layer for the run under its top, and every child of the run's top moves onto it (running disks live)", ok: []okResponse{ok(wire.ShortcutReport{})}},
		"GET " + p + "/configs/{name}/snapshots":                    {summary: "List a configuration's snapshots in tree order, with what each holds exclusively", ok: []okResponse{ok([]wire.Snapshot{})}},
		"POST " + p + "/configs/{name}/snapshots":                   {summary: "Take a snapshot: freeze every disk's top (deployed: guests paused together only for the switch)", request: wire.SnapshotRequest{}, ok: []okResponse{created(wire.Snapshot{})}},
		"DELETE " + p + "/configs/{name}/snapshots/{snapshot}":      {summary: "Delete a snapshot (frees only what nothing else references)", ok: []okResponse{noContentOK}},
		"POST " + p + "/configs/{name}/snapshots/{snapshot}/revert": {summary: "Go back to a snapshot: discard the current tops (a deployed configuration is deployed again, resuming the snapshot's state if it has one)", ok: []okResponse{ok(wire.Config{})}},
		"POST " + p + "/configs/{name}/snapshots/{snapshot}/clone":  {summary: "Linked clone of the configuration at a snapshot", request: wire.CloneRequest{}, ok: []okResponse{created(wire.Config{})}},
		"POST " + p + "/configs/{name}/clone":                       {summary: "Clone: linked (201 and the configuration) or full (202 and its job)", request: wire.CloneRequest{}, ok: []okResponse{created(wire.Config{}), jobStarted}},
		"POST " + p + "/configs/{name}/deploy":                      {summary: "Deploy: start the VMs, fenced or not", request: wire.DeployRequest{}, optional: true, ok: []okResponse{ok(wire.Config{})}},
		"POST " + p + "/configs/{name}/move":                        {summary: "Move an undeployed configuration to another host (its tops and the frozen layers that host lacks)", request: wire.MoveRequest{}, ok: []okResponse{ok(wire.Config{})}},
		"POST " + p + "/configs/{name}/undeploy":                    {summary: "Undeploy: stop the VMs, saving their state or not", request: wire.UndeployRequest{}, optional: true, ok: []okResponse{ok(wire.Config{})}},
		"POST " + vm + "/stop":                                      {summary: "Ask a VM to power off (ACPI)", ok: []okResponse{ok(wire.Config{})}},
		"POST " + vm + "/start":                                     {summary: "Start a stopped VM", ok: []okResponse{ok(wire.Config{})}},
		"POST " + vm + "/reset":                                     {summary: "Reset a VM", ok: []okResponse{ok(wire.Config{})}},
		"GET " + vm + "/log":                                        {summary: "A VM's serial log; with follow=1 it goes on as the VM writes", query: []queryParam{{name: "follow", typ: "boolean"}}, ok: []okResponse{media("text/plain; charset=utf-8", "The serial log")}},
		"GET " + vm + "/console":                                    {summary: "The serial console over an upgraded connection (Upgrade: stagehand-console)", query: []queryParam{{name: "replay", typ: "boolean", desc: "Replay the console's last output first"}}, ok: []okResponse{upgraded}},
		"GET " + vm + "/serial/ws":                                  {summary: "The serial console as a websocket", query: []queryParam{{name: wire.ConsoleLinkParam, typ: "string", desc: "A console link's token, instead of credentials"}}, ok: []okResponse{upgraded}},
		"GET " + vm + "/vnc/ws":                                     {summary: "The VNC console as a websocket (RFB)", query: []queryParam{{name: wire.ConsoleLinkParam, typ: "string", desc: "A console link's token, instead of credentials"}}, ok: []okResponse{upgraded}},
		"GET " + vm + "/screen.png":                                 {summary: "The VM's screen", query: []queryParam{{name: wire.ConsoleLinkParam, typ: "string", desc: "A console link's token, instead of credentials"}}, ok: []okResponse{media("image/png", "A screendump")}},
		"POST " + vm + "/console-links":                             {summary: "Make a console link to a VM", request: wire.ConsoleLinkRequest{}, optional: true, ok: []okResponse{created(wire.ConsoleLink{})}},
		"GET " + p + "/console-links":                               {summary: "The caller's console links (everyone's for a system administrator)", ok: []okResponse{ok([]wire.ConsoleLink{})}},
		"DELETE " + p + "/console-links/{id}":                       {summary: "Revoke a console link", ok: []okResponse{noContentOK}},
		"GET " + vm + "/disks/{disk}/chain":                         {summary: "A disk's layer chain, top first", ok: []okResponse{ok([]wire.Layer{})}},
		"POST " + vm + "/disks/{disk}/consolidate":                  {summary: "Consolidate a disk's chain", ok: []okResponse{jobStarted}},
		"POST " + p + "/configs/{name}/shares":                      {summary: "Share a configuration with a user or group", request: wire.ShareRequest{}, ok: []okResponse{ok(wire.Share{})}},
		"GET " + p + "/configs/{name}/shares":                       {summary: "A configuration's shares", ok: []okResponse{ok([]wire.Share{})}},
		"DELETE " + p + "/configs/{name}/shares/{grantee}":          {summary: "Stop sharing a configuration", ok: []okResponse{noContentOK}},

		// Hosts of the installation.
		"GET " + p + "/hosts":                 {summary: "The hosts sharing the store: state, online, capacity, what is deployed", ok: []okResponse{ok([]wire.Host{})}},
		"GET " + p + "/hosts/{name}":          {summary: "Show a host", ok: []okResponse{ok(wire.Host{})}},
		"POST " + p + "/hosts/{name}/drain":   {summary: "Mark a host draining (placement skips it) and queue its drain: the host saves, moves and resumes each configuration deployed there on another host, one at a time (?all=true: the undeployed ones move too); GET /hosts/{name} shows its progress", ok: []okResponse{ok(wire.Host{})}},
		"POST " + p + "/hosts/{name}/undrain": {summary: "Make a draining host active again", ok: []okResponse{ok(wire.Host{})}},
		"DELETE " + p + "/hosts/{name}":       {summary: "Remove a host (refused while configurations are deployed there)", ok: []okResponse{noContentOK}},

		// Library and archives.
		"POST " + p + "/library":                 {summary: "Capture a configuration into the library", request: wire.CaptureRequest{}, ok: []okResponse{created(wire.Config{})}},
		"GET " + p + "/library":                  {summary: "List library entries", query: []queryParam{qWorkspace}, ok: []okResponse{ok([]wire.Config{})}},
		"GET " + p + "/library/{name}":           {summary: "Show a library entry", ok: []okResponse{ok(wire.Config{})}},
		"DELETE " + p + "/library/{name}":        {summary: "Delete a library entry", ok: []okResponse{noContentOK}},
		"POST " + p + "/library/{name}/checkout": {summary: "Check a library entry out as a new configuration", request: wire.CheckoutRequest{}, ok: []okResponse{created(wire.Config{})}},
		"POST " + p + "/archives":                {summary: "Archive a configuration", request: wire.ArchiveRequest{}, ok: []okResponse{jobStarted}},
		"POST " + p + "/archives/import":         {summary: "Import a bundle from a file on the daemon's host", request: wire.ImportRequest{}, ok: []okResponse{jobStarted}},
		"POST " + p + "/archives/upload": {summary: "Import an uploaded bundle (see wire/uploads.go)", upload: wire.ContentTypeBundle,
			query: []queryParam{{name: "name", typ: "string"}, {name: "map_network", typ: "string", desc: "OLD=NEW", repeated: true}, {name: "storage_lease", typ: "string"}, qWorkspace},
			ok:    []okResponse{jobStarted}},
		"GET " + p + "/archives":                 {summary: "List archives", query: []queryParam{qWorkspace}, ok: []okResponse{ok([]wire.Archive{})}},
		"GET " + p + "/archives/{name}":          {summary: "Show an archive", ok: []okResponse{ok(wire.Archive{})}},
		"DELETE " + p + "/archives/{name}":       {summary: "Delete an archive", ok: []okResponse{noContentOK}},
		"POST " + p + "/archives/{name}/restore": {summary: "Restore an archive as a new configuration", request: wire.RestoreRequest{}, ok: []okResponse{jobStarted}},
		"GET " + p + "/archives/{name}/bundle":   {summary: "Export an archive as a bundle (its sha256 in the trailer)", ok: []okResponse{media(wire.ContentTypeBundle, "The bundle, streamed")}},
		"POST " + p + "/archives/{name}/lease":   {summary: "Set an archive's storage lease", request: wire.LeaseRequest{}, ok: []okResponse{ok(wire.Archive{})}},

		// Jobs.
		"GET " + p + "/jobs":              {summary: "List the jobs the caller may see", ok: []okResponse{ok([]wire.Job{})}},
		"GET " + p + "/jobs/{id}":         {summary: "Show a job", ok: []okResponse{ok(wire.Job{})}},
		"GET " + p + "/jobs/{id}/wait":    {summary: "Wait for a job to end (long poll)", query: []queryParam{{name: "timeout", typ: "string", desc: "A Go duration; the snapshot is answered when it runs out"}}, ok: []okResponse{ok(wire.Job{})}},
		"POST " + p + "/jobs/{id}/cancel": {summary: "Cancel a job", ok: []okResponse{jobStarted}},
		"DELETE " + p + "/jobs/{id}":      {summary: "Cancel a job", ok: []okResponse{jobStarted}},

		// The directory.
		"POST " + p + "/users":                                    {summary: "Create a user", request: wire.UserRequest{}, ok: []okResponse{created(wire.User{})}},
		"GET " + p + "/users":                                     {summary: "List users", ok: []okResponse{ok([]wire.User{})}},
		"GET " + p + "/users/{name}":                              {summary: "Show a user", ok: []okResponse{ok(wire.User{})}},
		"PATCH " + p + "/users/{name}":                            {summary: "Change a user", request: wire.UserUpdate{}, ok: []okResponse{ok(wire.User{})}},
		"DELETE " + p + "/users/{name}":                           {summary: "Delete a user", ok: []okResponse{noContentOK}},
		"PUT " + p + "/users/{name}/password":                     {summary: "Set a user's password", request: wire.PasswordRequest{}, ok: []okResponse{noContentOK}},
		"POST " + p + "/orgs":                                     {summary: "Create an organization", request: wire.OrgRequest{}, ok: []okResponse{created(wire.Org{})}},
		"GET " + p + "/orgs":                                      {summary: "The organizations the caller administers or works in", ok: []okResponse{ok([]wire.Org{})}},
		"POST " + p + "/orgs/{org}/admins":                        {summary: "Make a user an admin of an organization", request: wire.OrgAdminRequest{}, ok: []okResponse{noContentOK}},
		"DELETE " + p + "/orgs/{org}/admins/{user}":               {summary: "Remove an organization's admin", ok: []okResponse{noContentOK}},
		"POST " + p + "/groups":                                   {summary: "Create a group", request: wire.GroupRequest{}, ok: []okResponse{created(wire.Group{})}},
		"GET " + p + "/groups":                                    {summary: "List groups", query: []queryParam{qOrg}, ok: []okResponse{ok([]wire.Group{})}},
		"DELETE " + p + "/groups/{org}/{name}":                    {summary: "Delete a group", ok: []okResponse{noContentOK}},
		"POST " + p + "/groups/{org}/{name}/members":              {summary: "Add a member to a group", request: wire.GroupMemberRequest{}, ok: []okResponse{noContentOK}},
		"DELETE " + p + "/groups/{org}/{name}/members/{user}":     {summary: "Remove a member from a group", ok: []okResponse{noContentOK}},
		"POST " + p + "/workspaces":                               {summary: "Create a workspace", request: wire.WorkspaceRequest{}, ok: []okResponse{created(wire.Workspace{})}},
		"GET " + p + "/workspaces":                                {summary: "List workspaces", query: []queryParam{qOrg}, ok: []okResponse{ok([]wire.Workspace{})}},
		"GET " + p + "/workspaces/{org}/{name}":                   {summary: "Show a workspace and its members", ok: []okResponse{ok(wire.Workspace{})}},
		"DELETE " + p + "/workspaces/{org}/{name}":                {summary: "Delete a workspace", ok: []okResponse{noContentOK}},
		"POST " + p + "/workspaces/{org}/{name}/members":          {summary: "Add a member to a workspace", request: wire.MemberRequest{}, ok: []okResponse{noContentOK}},
		"DELETE " + p + "/workspaces/{org}/{name}/members/{user}": {summary: "Remove a member from a workspace", ok: []okResponse{noContentOK}},
		"GET " + p + "/workspaces/{org}/{name}/lease-policy":      {summary: "Show a workspace's graduated lease policy", ok: []okResponse{ok(wire.LeasePolicy{})}},
		"PUT " + p + "/workspaces/{org}/{name}/lease-policy":      {summary: "Set (or with no ladder and no webhook, remove) a workspace's graduated lease policy", request: wire.LeasePolicyRequest{}, ok: []okResponse{ok(wire.LeasePolicy{})}},
		"PUT " + p + "/quotas":                                    {summary: "Set a user's or a workspace's quota", request: wire.QuotaRequest{}, ok: []okResponse{ok(wire.QuotaLimits{})}},
		"POST " + p + "/tokens":                                   {summary: "Make an API token (shown once)", request: wire.TokenRequest{}, ok: []okResponse{created(wire.NewToken{})}},
		"GET " + p + "/tokens":                                    {summary: "List tokens", query: []queryParam{{name: "user", typ: "string", desc: "Another user's (a system administrator)"}}, ok: []okResponse{ok([]wire.Token{})}},
		"DELETE " + p + "/tokens/{id}":                            {summary: "Revoke a token", ok: []okResponse{noContentOK}},
		"POST " + p + "/auth/explain":                             {summary: "Explain whether a user may do an action on an object", request: wire.ExplainRequest{}, ok: []okResponse{ok(wire.Explanation{})}},

		// Signing in.
		"POST " + p + "/login":  {summary: "Log in with a password: a session token (and cookie)", request: wire.LoginRequest{}, ok: []okResponse{ok(wire.LoginResponse{})}},
		"POST " + p + "/logout": {summary: "End the session the request carries", ok: []okResponse{noContentOK}},
		"GET " + OIDCLoginPath:  {summary: "Begin an OIDC sign-in: a redirect to the issuer", query: []queryParam{{name: "next", typ: "string", desc: "The page of this site to land on"}}, ok: []okResponse{{status: http.StatusFound, desc: "To the issuer"}}},
	}
	return d
}()

// oidcCallbackDoc describes the OIDC redirect route, whose path is the
// configured redirect URL's (ServeOIDC registers it right after
// OIDCLoginPath).
var oidcCallbackDoc = opDoc{summary: "End an OIDC sign-in: a session; a page that goes on to the landing page, or JSON when asked for",
	ok: []okResponse{ok(wire.LoginResponse{}), media("text/html; charset=utf-8", "A page that goes on")}}

// errorStatuses are the error answers, with the wire kinds each carries.
var errorStatuses = []struct {
	status int
	kinds  []string
	desc   string
}{
	{http.StatusBadRequest, []string{wire.KindInvalid}, "The request is malformed or names something invalid"},
	{http.StatusUnauthorized, []string{wire.KindUnauthenticated}, "No valid credentials (WWW-Authenticate names the scheme)"},
	{http.StatusForbidden, []string{wire.KindForbidden}, "The caller may see the object but not do this to it, or a cross-site request"},
	{http.StatusNotFound, []string{wire.KindNotFound}, "No such object, or one the caller may not see"},
	{http.StatusConflict, []string{wire.KindConflict, wire.KindCanceled}, "The object's state does not allow it (conflict), or the operation was canceled"},
	{http.StatusRequestEntityTooLarge, []string{wire.KindInvalid}, "An upload larger than the server's limit (serve --max-upload)"},
	{http.StatusMisdirectedRequest, []string{wire.KindForbidden}, "The Host is not a name of this server (serve --allowed-host)"},
	{http.StatusTooManyRequests, []string{wire.KindUnavailable}, "Too many failed logins for this user from this address; Retry-After says when"},
	{http.StatusServiceUnavailable, []string{wire.KindUnavailable}, "Not available now (recovering, a console or the directory not served); Retry-After may say when"},
}

// errorsOf returns the error statuses route ri may answer: every route
// may be malformed, misdirected, missing or unavailable; a route behind
// the gate also unauthenticated or forbidden; uploads too large; login
// throttled.
func errorsOf(ri RouteInfo, d opDoc) []int {
	out := []int{http.StatusBadRequest, http.StatusNotFound, http.StatusConflict, http.StatusMisdirectedRequest, http.StatusServiceUnavailable}
	if !ri.Public {
		out = append(out, http.StatusUnauthorized, http.StatusForbidden)
	}
	if d.upload != "" {
		out = append(out, http.StatusRequestEntityTooLarge)
	}
	if ri.Pattern == "POST "+wire.APIPrefix+"/login" {
		out = append(out, http.StatusTooManyRequests)
	}
	sort.Ints(out)
	return out
}

// openAPI builds the document of routes. It fails on a route that opDocs
// does not describe, and on a description no route has.
func openAPI(routes []RouteInfo, version string) (map[string]any, error) {
	sg := &schemaGen{schemas: map[string]any{}}
	paths := map[string]map[string]any{}
	described := map[string]bool{}
	var missing []string
	opIDs := map[string]string{}
	for i, ri := range routes {
		d, found := opDocs[ri.Pattern]
		if !found && i > 0 && routes[i-1].Pattern == "GET "+OIDCLoginPath && ri.Public {
			d, found = oidcCallbackDoc, true
		}
		if !found {
			missing = append(missing, ri.Pattern)
			continue
		}
		described[ri.Pattern] = true
		method, path, hasMethod := strings.Cut(ri.Pattern, " ")
		if !hasMethod {
			return nil, fmt.Errorf("openapi: route %q has no method", ri.Pattern)
		}
		op := map[string]any{"summary": d.summary, "operationId": operationID(method, path)}
		if prev, dup := opIDs[op["operationId"].(string)]; dup {
			return nil, fmt.Errorf("openapi: routes %q and %q have the same operation id", prev, ri.Pattern)
		}
		opIDs[op["operationId"].(string)] = ri.Pattern
		if tag := tagOf(path); tag != "" {
			op["tags"] = []string{tag}
		}
		if ri.Public {
			op["security"] = []any{} // no credentials needed
		} else {
			op["x-stagehand-action"] = string(ri.Action)
			if ri.Kind != "" {
				obj := map[string]string{"kind": ri.Kind}
				if ri.Param != "" {
					obj["path"] = ri.Param
				}
				if ri.Body != "" {
					obj["body"] = ri.Body
				}
				op["x-stagehand-object"] = obj
			}
			if ri.Filtered {
				op["x-stagehand-filtered"] = true
			}
		}
		var params []any
		for _, m := range pathParam.FindAllStringSubmatch(path, -1) {
			params = append(params, map[string]any{"name": m[1], "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
		}
		for _, q := range d.query {
			s := map[string]any{"type": q.typ}
			if q.repeated {
				s = map[string]any{"type": "array", "items": s}
			}
			p := map[string]any{"name": q.name, "in": "query", "schema": s}
			if q.desc != "" {
				p["description"] = q.desc
			}
			params = append(params, p)
		}
		if params != nil {
			op["parameters"] = params
		}
		switch {
		case d.request != nil:
			op["requestBody"] = map[string]any{"required": !d.optional, "content": map[string]any{
				"application/json": map[string]any{"schema": sg.request(reflect.TypeOf(d.request))}}}
		case d.upload != "":
			op["requestBody"] = map[string]any{"required": true, "content": map[string]any{
				d.upload: map[string]any{"schema": map[string]any{"type": "string", "contentMediaType": d.upload}}}}
		}
		responses := map[string]any{}
		for _, r := range d.ok {
			resp := map[string]any{"description": r.desc}
			content := map[string]any{}
			if r.body != nil {
				content["application/json"] = map[string]any{"schema": sg.response(reflect.TypeOf(r.body))}
			}
			if r.media != "" {
				mt := strings.TrimSpace(strings.Split(r.media, ";")[0])
				schema := map[string]any{"type": "string"}
				if mt == "application/json" {
					schema = map[string]any{"type": "object"}
				}
				content[r.media] = map[string]any{"schema": schema}
			}
			if len(content) > 0 {
				resp["content"] = content
			}
			code := fmt.Sprint(r.status)
			if prev, dup := responses[code]; dup { // two bodies of one status (events: JSON or a stream)
				pc := prev.(map[string]any)["content"].(map[string]any)
				for k, v := range content {
					pc[k] = v
				}
				continue
			}
			responses[code] = resp
		}
		for _, st := range errorsOf(ri, d) {
			responses[fmt.Sprint(st)] = map[string]any{"$ref": fmt.Sprintf("#/components/responses/Error%d", st)}
		}
		responses["default"] = map[string]any{"$ref": "#/components/responses/ErrorInternal"}
		op["responses"] = responses
		if paths[path] == nil {
			paths[path] = map[string]any{}
		}
		paths[path][strings.ToLower(method)] = op
	}
	var stale []string
	for pattern := range opDocs {
		if !described[pattern] && pattern != "GET "+OIDCLoginPath { // OIDC routes exist only when configured
			stale = append(stale, pattern)
		}
	}
	if len(missing) > 0 || len(stale) > 0 {
		sort.Strings(missing)
		sort.Strings(stale)
		return nil, fmt.Errorf("openapi: routes not described: %v; described but not registered: %v", missing, stale)
	}

	errKinds := []string{}
	errResponses := map[string]any{}
	for _, e := range errorStatuses {
		errKinds = append(errKinds, e.kinds...)
		errResponses[fmt.Sprintf("Error%d", e.status)] = errorResponse(fmt.Sprintf("%s (kind %s)", e.desc, strings.Join(e.kinds, " or ")), e.kinds)
	}
	errResponses["ErrorInternal"] = errorResponse("An internal error (a bug or the host failing: see the daemon log); 499 in the log when the client went away", []string{wire.KindInternal})
	sg.schemas["Error"] = map[string]any{
		"type":        "object",
		"description": "The body of every error answer: one line for people, a kind for programs.",
		"required":    []string{"error", "kind"},
		"properties": map[string]any{
			"error": map[string]any{"type": "string"},
			"kind":  map[string]any{"type": "string", "enum": uniqueSorted(append(errKinds, wire.KindInternal))},
		},
	}
	return map[string]any{
		"openapi": "3.1.0",
		"info": map[string]any{
			"title":       "Stagehand API",
			"version":     version,
			"description": "The REST API of the Stagehand daemon. Errors carry the Error body; its kind is the same on every status (see components.responses). Each operation names the action it needs (x-stagehand-action) and the object that action is decided on (x-stagehand-object).",
		},
		"servers":  []any{map[string]any{"url": "/"}},
		"security": []any{map[string]any{"bearer": []any{}}, map[string]any{"session": []any{}}},
		"paths":    paths,
		"components": map[string]any{
			"schemas":   sg.schemas,
			"responses": errResponses,
			"securitySchemes": map[string]any{
				"bearer":  map[string]any{"type": "http", "scheme": "bearer", "description": "An API token (sht_…) or a session token (shs_…)"},
				"session": map[string]any{"type": "apiKey", "in": "cookie", "name": SessionCookie, "description": "The session cookie a login sets"},
			},
		},
	}, nil
}

func errorResponse(desc string, kinds []string) map[string]any {
	return map[string]any{"description": desc, "content": map[string]any{"application/json": map[string]any{
		"schema": map[string]any{"allOf": []any{
			map[string]any{"$ref": "#/components/schemas/Error"},
			map[string]any{"properties": map[string]any{"kind": map[string]any{"enum": kinds}}},
		}}}}}
}

var pathParam = regexp.MustCompile(`\{([^}.$]+)(?:\.\.\.)?\}`)

// operationID names an operation after its method and path:
// "GET /api/v1/configs/{name}/vms/{vm}/log" → "getConfigsByNameVmsByVmLog",
// "GET /healthz" → "getRootHealthz".
func operationID(method, path string) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(method))
	path, inAPI := strings.CutPrefix(path, wire.APIPrefix)
	if !inAPI {
		b.WriteString("Root") // GET /healthz beside GET /api/v1/healthz
	}
	for _, seg := range strings.FieldsFunc(path, func(r rune) bool { return r == '/' }) {
		if strings.HasPrefix(seg, "{") {
			b.WriteString("By")
			seg = strings.Trim(seg, "{}.$")
		}
		for _, word := range strings.FieldsFunc(seg, func(r rune) bool { return r == '-' || r == '.' || r == '_' }) {
			b.WriteString(strings.ToUpper(word[:1]) + word[1:])
		}
	}
	return b.String()
}

// tagOf groups an operation by its first path segment under the prefix.
func tagOf(path string) string {
	rest, ok := strings.CutPrefix(path, wire.APIPrefix+"/")
	if !ok {
		return "daemon"
	}
	first, _, _ := strings.Cut(rest, "/")
	return first
}

func uniqueSorted(s []string) []string {
	sort.Strings(s)
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// schemaGen turns wire types into JSON Schemas under components.schemas.
// A struct is described once per direction: request bodies are decoded
// strictly (unknown fields refused: additionalProperties false) and their
// booleans default to false when left out; answers may grow fields.
type schemaGen struct {
	schemas map[string]any
}

var timeType = reflect.TypeOf(time.Time{})

func (g *schemaGen) request(t reflect.Type) map[string]any  { return g.of(t, true) }
func (g *schemaGen) response(t reflect.Type) map[string]any { return g.of(t, false) }

func (g *schemaGen) of(t reflect.Type, req bool) map[string]any {
	switch {
	case t == timeType:
		return map[string]any{"type": "string", "format": "date-time"}
	case t.Kind() == reflect.Pointer:
		return g.of(t.Elem(), req)
	}
	switch t.Kind() {
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		s := map[string]any{"type": "integer"}
		if t.Kind() == reflect.Int64 || t.Kind() == reflect.Uint64 {
			s["format"] = "int64"
		}
		return s
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Slice, reflect.Array:
		return map[string]any{"type": "array", "items": g.of(t.Elem(), req)}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": g.of(t.Elem(), req)}
	case reflect.Struct:
		name := t.Name()
		if req && !strings.HasSuffix(name, "Request") && name != "UserUpdate" {
			name += "Input" // a nested struct of a request (VMRequest is one already)
		}
		ref := map[string]any{"$ref": "#/components/schemas/" + name}
		if _, done := g.schemas[name]; done {
			return ref
		}
		g.schemas[name] = nil // placeholder: a type that refers to itself ends here
		g.schemas[name] = g.object(t, req)
		return ref
	}
	panic(fmt.Sprintf("openapi: no schema for %s", t)) // a wire type of a new kind: teach of
}

// object describes a struct's JSON fields: names from the tags, required
// unless omitempty or omitzero. In a request, a boolean or a number left
// out is its zero (false; 0, which the wire types make "none" or "no
// limit"), so those are not required either.
func (g *schemaGen) object(t reflect.Type, req bool) map[string]any {
	props := map[string]any{}
	required := []string{}
	g.fields(t, req, props, &required)
	s := map[string]any{"type": "object", "properties": props}
	if len(required) > 0 {
		s["required"] = required
	}
	if req {
		s["additionalProperties"] = false
	}
	return s
}

// fields adds t's JSON fields to props and required; an embedded struct
// without a name of its own is flattened, as encoding/json does.
func (g *schemaGen) fields(t reflect.Type, req bool, props map[string]any, required *[]string) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			g.fields(f.Type, req, props, required)
			continue
		}
		if !f.IsExported() || tag == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		props[name] = g.of(f.Type, req)
		optional := strings.Contains(","+opts+",", ",omitempty,") || strings.Contains(","+opts+",", ",omitzero,")
		if req {
			switch f.Type.Kind() {
			case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
				reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
				optional = true
			}
		}
		if !optional {
			*required = append(*required, name)
		}
	}
}

// openapiHandler serves the document, built once from the route table as
// it stands at the first request (ServeOIDC adds its routes before).
type openapiHandler struct {
	h *Handler

	once sync.Once
	doc  []byte
	err  error
}

func (o *openapiHandler) register(r *router) {
	r.route("GET "+OpenAPIPath, auth.StatusRead, noObject, o.serve)
}

func (o *openapiHandler) serve(w http.ResponseWriter, r *http.Request) error {
	o.once.Do(func() { o.doc, o.err = o.h.OpenAPI() })
	if o.err != nil {
		return o.err
	}
	w.Header().Set("Content-Type", "application/json")
	_, err := w.Write(o.doc)
	return err
}

// OpenAPI returns the document of h's routes, for tests and tools.
func (h *Handler) OpenAPI() ([]byte, error) { return OpenAPIOf(h.Routes(), h.version()) }

// OpenAPIOf returns the document of routes, or an error naming the routes
// without a description and the descriptions without a route.
func OpenAPIOf(routes []RouteInfo, version string) ([]byte, error) {
	doc, err := openAPI(routes, version)
	if err != nil {
		return nil, err
	}
	return json.MarshalIndent(doc, "", "  ")
}

// version is the daemon's version for the document's info ("dev" when
// SetDaemon gave none).
func (h *Handler) version() string {
	if v := h.status.daemon.Version; v != "" {
		return v
	}
	return "dev"
}
