package api_test

// The real API over the real lab (a temporary SQLite store, real qemu-img)
// answers malformed and hostile requests with 4xx, never 5xx: issue 9,
// "no request from a client can make the daemon return 500".

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"stagehand/internal/api"
	"stagehand/internal/api/apitest"
	"stagehand/internal/api/wire"
	"stagehand/internal/lab"
	"stagehand/internal/lab/events"
	"stagehand/internal/syncbuf"
)

// realLab is the API over a real lab: template t1 (a 1 MiB raw disk),
// network n1 and configuration c1 (VM vm1 on n1). It has no hypervisor,
// so deploys are unavailable (503), as with `serve --no-vms`.
type realLab struct {
	srv  *httptest.Server
	h    *api.Handler
	svc  *apitest.Lab
	dir  string
	logs *syncbuf.Buffer
}

func newRealLab(t *testing.T) *realLab {
	t.Helper()
	l := apitest.New(t, apitest.NoVMs())
	ctx := context.Background()
	img := l.RawImage(t, "base.raw", 1<<20)
	if _, err := l.Templates.Import(ctx, lab.TemplateSpec{Name: "t1", Disks: []string{img}, Format: "raw"}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Networks.Create(ctx, lab.NetworkSpec{Name: "n1", Subnet: "10.9.0.0/24", Pools: []string{"10.9.0.10-10.9.0.50"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Configs.Create(ctx, lab.ConfigSpec{Name: "c1", VMs: []lab.VMSpec{{Name: "vm1", Template: "t1", Network: "n1"}}}); err != nil {
		t.Fatal(err)
	}
	logs := &syncbuf.Buffer{}
	h := api.NewHandler(l.Service, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	h.TrustRequestsWithoutCredentials(apitest.Root)
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		h.Drain()
		srv.Close()
	})
	return &realLab{srv: srv, h: h, svc: l, dir: l.Dir, logs: logs}
}

// do sends one request with a bound on its time and returns the status
// and body; 0 when the request itself could not be sent or timed out.
func (l *realLab) do(method, target string, body []byte, header map[string]string) (int, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, l.srv.URL+target, rd)
	if err != nil {
		return 0, err.Error()
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := l.srv.Client().Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, string(b)
}

// routes are every endpoint, with {params} to fill; deletions come last so
// that the seeded objects serve the other routes first.
var routes = []string{
	"GET /healthz", "GET /api/v1/healthz", "GET /readyz", "GET /api/v1/status",
	"POST /api/v1/templates", "POST /api/v1/templates/upload", "GET /api/v1/templates", "GET /api/v1/templates/{name}",
	"POST /api/v1/networks", "GET /api/v1/networks", "GET /api/v1/networks/{name}",
	"POST /api/v1/configs", "GET /api/v1/configs", "GET /api/v1/configs/{name}",
	"POST /api/v1/configs/{name}/clone", "POST /api/v1/configs/{name}/change-ips",
	"POST /api/v1/configs/{name}/deploy", "POST /api/v1/configs/{name}/undeploy",
	"POST /api/v1/configs/{name}/vms/{vm}/stop", "POST /api/v1/configs/{name}/vms/{vm}/start",
	"POST /api/v1/configs/{name}/vms/{vm}/reset", "GET /api/v1/configs/{name}/vms/{vm}/log",
	"GET /api/v1/configs/{name}/vms/{vm}/console",
	"PUT /api/v1/configs/{name}/vms/{vm}/nics/{n}/ip",
	"GET /api/v1/configs/{name}/vms/{vm}/disks/{n}/chain",
	"POST /api/v1/configs/{name}/vms/{vm}/disks/{n}/consolidate",
	"POST /api/v1/configs/{name}/lease", "GET /api/v1/configs/{name}/space",
	"GET /api/v1/jobs", "GET /api/v1/jobs/{n}", "GET /api/v1/jobs/{n}/wait", "POST /api/v1/jobs/{n}/cancel",
	"GET /api/v1/doctor", "POST /api/v1/doctor/repair",
	"POST /api/v1/library", "GET /api/v1/library", "GET /api/v1/library/{name}", "POST /api/v1/library/{name}/checkout",
	"POST /api/v1/archives", "POST /api/v1/archives/import", "POST /api/v1/archives/upload", "GET /api/v1/archives", "GET /api/v1/archives/{name}",
	"POST /api/v1/archives/{name}/restore", "GET /api/v1/archives/{name}/bundle", "POST /api/v1/archives/{name}/lease",
	"GET /api/v1/cleanup", "POST /api/v1/cleanup", "GET /api/v1/events",
	"DELETE /api/v1/jobs/{n}", "DELETE /api/v1/library/{name}", "DELETE /api/v1/archives/{name}",
	"DELETE /api/v1/configs/{name}", "DELETE /api/v1/networks/{name}", "DELETE /api/v1/templates/{name}",
}

// takesBody are the routes whose handler decodes a JSON body.
var takesBody = map[string]bool{
	"POST /api/v1/templates": true, "POST /api/v1/networks": true, "POST /api/v1/configs": true,
	"POST /api/v1/configs/{name}/clone": true, "POST /api/v1/configs/{name}/deploy": true,
	"POST /api/v1/configs/{name}/undeploy": true, "PUT /api/v1/configs/{name}/vms/{vm}/nics/{n}/ip": true,
	"POST /api/v1/configs/{name}/lease": true, "POST /api/v1/library": true,
	"POST /api/v1/library/{name}/checkout": true, "POST /api/v1/archives": true,
	"POST /api/v1/archives/import": true, "POST /api/v1/archives/{name}/restore": true,
	"POST /api/v1/archives/{name}/lease": true,
	"POST /api/v1/cleanup":               true,
}

// hostileSegments are path values, already escaped for the URL.
var hostileSegments = []string{
	"%00", "..", "%2e%2e", "a..b", "a%2Fb", "%2F", "%ff%fe", "%c3%9cn%c3%af", "-1", "99999999999999999999",
	"0x10", "1e3", "%20", "a%0Ab", "%1b%5b2J", strings.Repeat("x", 4000), "NaN", "%25", "c1%00", "vm1%3F",
}

func fill(route string, name, vm, n string) (method, target string) {
	method, target, _ = strings.Cut(route, " ")
	r := strings.NewReplacer("{name}", name, "{vm}", vm, "{n}", n)
	return method, r.Replace(target)
}

// hostileBodies are request bodies: broken JSON, wrong shapes and hostile
// values in every field any request type has.
func hostileBodies(dir string) [][]byte {
	raw := []string{
		"", " ", "null", "[]", "{", "}", "{}", "{} {}", "{}garbage", `"string"`, "0", "-1", "1e309", "true",
		"\x00", "\xff\xfe\xfd", `{"name":"\ud800"}`, `{"name":"a\u0000b"}`, `{"name": 1}`, `{"name": []}`,
		`{"name": {}}`, `{"name": null}`, `{"zzz": 1}`, `{"name":"x","name":"y"}`,
		strings.Repeat("[", 100000) + strings.Repeat("]", 100000),
		`{"vms":` + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + `}`,
		`{"name":"` + strings.Repeat("a", 2<<20) + `"}`,
	}
	var out [][]byte
	for _, s := range raw {
		out = append(out, []byte(s))
	}
	values := []any{
		"", " ", "\x00", "a\x00b", "\x1b[2J", "a..b", "../../../../etc/passwd", "relative/path",
		filepath.Join(dir, "missing"), filepath.Join(dir, "out", "x\x00y"), dir, strings.Repeat("é", 3000),
		"Ünïcödé-✓", "-1s", "99999999999999999h", "0", "1e9h", "never",
		-1, 0, 1e308, -1e308, 9223372036854775807, json.Number("99999999999999999999999"), 1.5, true, nil,
		[]any{}, []any{"\x00"}, []any{nil}, map[string]any{}, map[string]any{"\x00": "\x00"},
	}
	fields := []string{
		"name", "description", "owner", "disks", "format", "cpus", "memory_mib", "kernel", "initrd", "cmdline",
		"subnet", "gateway", "pools", "dns", "vms", "storage_lease", "mode", "ip", "fenced", "fence_policy",
		"deploy_lease", "save_state", "config", "file", "map_network", "storage", "deploy", "undeploy_action",
		"idle_days", "dry_run",
	}
	for _, f := range fields {
		for _, v := range values {
			b, err := json.Marshal(map[string]any{f: v})
			if err != nil {
				panic(err)
			}
			out = append(out, b)
		}
	}
	// Shaped like real requests, with hostile parts.
	for _, s := range []string{
		`{"name":"h1","vms":[{"name":"v","template":"t1","network":"n1","ip":"10.9.0.0"}]}`,
		`{"name":"h2","vms":[{"name":"v","template":"t1","network":"n1","ip":"255.255.255.255"}]}`,
		`{"name":"h3","vms":[{"name":"v","template":"t1","network":"n1","ip":"::1"}]}`,
		`{"name":"h4","vms":[{"name":"v","template":"t1"},{"name":"v","template":"t1"}]}`,
		`{"name":"h5","vms":[{"name":"v","template":"nope"}]}`,
		`{"name":"h6","subnet":"0.0.0.0/0","pools":["0.0.0.2-255.255.255.254"]}`,
		`{"name":"h7","subnet":"10.10.0.0/24","pools":["10.10.0.9-10.10.0.1"]}`,
		`{"name":"h8","subnet":"10.11.0.0/24","gateway":"10.11.0.0","pools":["10.11.0.5"]}`,
		`{"name":"h9","subnet":"10.12.0.0/24","pools":["10.12.0.5"],"dns":["::1"]}`,
		`{"name":"h10","disks":["` + dir + `/base.raw"],"format":"qcow2"}`,
		`{"name":"h11","disks":["` + dir + `/base.raw"],"format":"vmdk"}`,
		`{"name":"h12","disks":[],"cpus":100000,"memory_mib":-5}`,
		`{"name":"h13","disks":["` + dir + `/base.raw"],"kernel":"` + dir + `","initrd":"` + dir + `/missing"}`,
		`{"name":"h14","mode":"sideways"}`, `{"name":"c1","mode":"full"}`, `{"name":"c1"}`,
		`{"config":"c1","name":"c1"}`, `{"config":"nope","name":"l1"}`,
		`{"file":"` + dir + `/missing.tar"}`, `{"file":"` + dir + `"}`, `{"file":"` + dir + `/base.raw"}`,
		`{"file":"` + dir + `/base.raw","map_network":{"":"","\u0000":"n1"}}`,
		`{"storage":"-5h"}`, `{"storage":"1000000000000h"}`, `{"deploy":"1s","undeploy_action":"explode"}`,
		`{"idle_days":-3}`, `{"idle_days":99999999999}`, `{"fenced":true,"fence_policy":"nope"}`,
		`{"name":"fresh1"}`, `{"config":"c1","name":"lib1"}`, `{"name":"ok1","vms":[{"name":"v","template":"t1","network":"n1","ip":"dhcp"}]}`,
		`{"name":"okn","subnet":"10.20.0.0/24","pools":["10.20.0.10-10.20.0.20"],"dns":["10.20.0.1"]}`,
		`{"fence_policy":"out"}`, `{"save_state":"yes"}`, `{"ip":"pool"}`, `{"ip":"dhcp"}`, `{"ip":"10.9.0.1"}`,
		`{"ip":"10.9.0.255"}`, `{"ip":"1.2.3.4"}`, `{"ip":""}`,
	} {
		out = append(out, []byte(s))
	}
	return out
}

// Every route, with hostile path values, query strings and bodies, never
// answers 5xx (503 only where the daemon is really unavailable: this one
// has no hypervisor), and nothing is logged as an internal error.
func TestHostileRequestsNeverGet500(t *testing.T) {
	l := newRealLab(t)
	statuses := map[int]int{}
	check := func(what string, status int, body string) {
		t.Helper()
		statuses[status]++
		switch {
		case status == 0:
			t.Errorf("%s: no answer: %s", what, body)
		case status == http.StatusServiceUnavailable && strings.Contains(body, `"kind":"unavailable"`):
			if os.Getenv("HOSTILE_DEBUG") != "" && statuses[503] < 40 {
				t.Logf("503 %s: %s", what, body)
			}
		case status >= 500:
			t.Errorf("%s: %d %s", what, status, body)
		}
	}
	short := func(s string) string {
		if len(s) > 120 {
			return s[:120] + "…"
		}
		return s
	}
	requests := 0
	isDelete := func(route string) bool { return strings.HasPrefix(route, "DELETE ") }
	// withSegments sends every route (deletions or the others) with
	// hostile path values, an empty body and {}.
	withSegments := func(deletes bool) {
		for _, route := range routes {
			if isDelete(route) != deletes {
				continue
			}
			for _, seg := range append([]string{"c1", "t1", "n1", "vm1", "0", "1"}, hostileSegments...) {
				name, vm, n := seg, "vm1", "0"
				if strings.Contains(route, "{vm}") && seg != "c1" {
					name, vm = "c1", seg
				}
				if strings.Contains(route, "{n}") && !strings.Contains(route, "{vm}") {
					name, n = "c1", seg
				}
				method, target := fill(route, name, vm, n)
				for _, body := range [][]byte{nil, []byte("{}")} {
					status, resp := l.do(method, target, body, nil)
					requests++
					check(fmt.Sprintf("%s %s body %q", method, short(target), body), status, resp)
				}
			}
		}
	}
	withSegments(false)
	// Every route that takes a body, on the seeded names, with each
	// hostile body.
	bodies := hostileBodies(l.dir)
	for _, route := range routes {
		method, target := fill(route, "c1", "vm1", "0")
		if !takesBody[route] {
			continue // its body is ignored: the path values above covered it
		}
		for _, b := range bodies {
			status, resp := l.do(method, target, b, map[string]string{"Content-Type": "application/json"})
			requests++
			check(fmt.Sprintf("%s %s body %q", method, target, short(string(b))), status, resp)
		}
	}
	// Query strings.
	for _, q := range []string{
		"after=-1", "after=abc", "after=99999999999999999999", "limit=-1", "limit=abc", "limit=99999999999999999999",
		"limit=0", "after=1&limit=1000000", "follow=maybe", "follow=1&after=%00", "idle_days=-1", "idle_days=1e9",
		"idle_days=99999999999999999999", "timeout=-5s", "timeout=abc", "timeout=99999999h", "repair=%00",
	} {
		for _, p := range []string{"/api/v1/events", "/api/v1/cleanup", "/api/v1/jobs/1/wait", "/api/v1/doctor"} {
			if strings.Contains(q, "follow=1") && p != "/api/v1/events" {
				continue
			}
			status, resp := l.do(http.MethodGet, p+"?"+q, nil, nil)
			requests++
			check("GET "+p+"?"+q, status, resp)
		}
	}
	// Hostile headers.
	for _, hdr := range []map[string]string{
		{"X-Stagehand-User": strings.Repeat("u", 10000)}, {"X-Stagehand-User": "Ünï"}, {"Last-Event-ID": "-5"},
		{"Last-Event-ID": "99999999999999999999"}, {"Content-Type": "text/plain"}, {"Accept": "text/event-stream"},
		{"Content-Length": "5"},
	} {
		status, resp := l.do(http.MethodPost, "/api/v1/configs", []byte(`{"name":"hh","vms":[{"name":"v","template":"t1"}]}`), hdr)
		requests++
		check(fmt.Sprintf("POST /configs with %v", hdr), status, resp)
		l.do(http.MethodDelete, "/api/v1/configs/hh", nil, nil)
	}
	withSegments(true)
	t.Logf("%d requests, answered %v", requests, statuses)
	// The seeded objects were reached, and L5's PUT {} is a 400 naming ip.
	if statuses[http.StatusOK] == 0 || statuses[http.StatusCreated] == 0 || statuses[http.StatusNoContent] == 0 {
		t.Errorf("no request succeeded (%v): the test does not reach the lab", statuses)
	}
	if strings.Contains(l.logs.String(), "level=ERROR") {
		var lines []string
		for _, line := range strings.Split(l.logs.String(), "\n") {
			if strings.Contains(line, "level=ERROR") {
				lines = append(lines, short(line))
			}
		}
		t.Errorf("internal errors logged:\n%s", strings.Join(lines, "\n"))
	}
}

// PUT …/nics/{n}/ip without ip is refused naming the field (L5).
func TestSetIPWithoutIPIs400(t *testing.T) {
	l := newRealLab(t)
	for _, body := range []string{`{}`, `{"ip":""}`, `{"ip":null}`} {
		status, resp := l.do(http.MethodPut, "/api/v1/configs/c1/vms/vm1/nics/0/ip", []byte(body), nil)
		if status != http.StatusBadRequest || !strings.Contains(resp, "ip is required") {
			t.Errorf("PUT ip %s: %d %s, want 400 naming ip", body, status, resp)
		}
	}
}

// A request whose client has gone is answered 499 and logged at debug,
// not as an internal error (L8).
func TestClientCancellationIs499NotAnError(t *testing.T) {
	l := newRealLab(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "http://localhost/api/v1/configs", nil).WithContext(ctx)
	l.h.ServeHTTP(rec, req)
	if rec.Code != api.StatusClientClosedRequest {
		t.Errorf("cancelled request answered %d %s, want 499", rec.Code, rec.Body)
	}
	if logs := l.logs.String(); strings.Contains(logs, "level=ERROR") || !strings.Contains(logs, "request abandoned by its client") {
		t.Errorf("log of a cancelled request:\n%s", logs)
	}
}

// GET /events answers one page (100 by default, at most 1000) with a Link
// to the next; following the links reads every event once (L6: the list
// had no default limit).
func TestEventsArePaged(t *testing.T) {
	l := newRealLab(t)
	ctx := context.Background()
	for i := 0; i < 130; i++ {
		if _, err := l.svc.Networks.Create(ctx, lab.NetworkSpec{Name: fmt.Sprintf("p%d", i), Subnet: fmt.Sprintf("10.%d.%d.0/24", 100+i/200, i%200), Pools: []string{fmt.Sprintf("10.%d.%d.10", 100+i/200, i%200)}}); err != nil {
			t.Fatal(err)
		}
	}
	all, err := l.svc.Events.List(ctx, 0, events.MaxPage)
	if err != nil {
		t.Fatal(err)
	}
	total := len(all)
	if total < 130 {
		t.Fatalf("%d events recorded", total)
	}
	get := func(target string) ([]wire.Event, string) {
		t.Helper()
		resp, err := l.srv.Client().Get(l.srv.URL + target)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var es []wire.Event
		if err := json.NewDecoder(resp.Body).Decode(&es); err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %v", target, resp.StatusCode, err)
		}
		return es, resp.Header.Get("Link")
	}
	first, link := get("/api/v1/events")
	if len(first) != events.DefaultPage || link == "" {
		t.Fatalf("default page: %d events, Link %q; want %d and a next link", len(first), link, events.DefaultPage)
	}
	seen := map[int64]bool{}
	for _, e := range first {
		seen[e.ID] = true
	}
	for pages := 0; link != ""; pages++ {
		if pages > 10 {
			t.Fatal("the links never end")
		}
		target := strings.TrimSuffix(strings.TrimPrefix(strings.SplitN(link, ";", 2)[0], "<"), ">")
		u, err := url.Parse(target)
		if err != nil {
			t.Fatal(err)
		}
		var page []wire.Event
		page, link = get(u.RequestURI())
		for _, e := range page {
			if seen[e.ID] {
				t.Errorf("event %d on two pages", e.ID)
			}
			seen[e.ID] = true
		}
	}
	if len(seen) != total {
		t.Errorf("read %d events through the pages, want %d", len(seen), total)
	}
	if es, _ := get("/api/v1/events?limit=" + strconv.Itoa(1<<30)); len(es) != total || len(es) > events.MaxPage {
		t.Errorf("limit=2^30 gave %d events, want all %d (capped at %d)", len(es), total, events.MaxPage)
	}
}
