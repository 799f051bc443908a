package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"stagehand/internal/api"
	"stagehand/internal/api/apitest"
	"stagehand/internal/api/wire"
	"stagehand/internal/errdefs"
	"stagehand/internal/lab"
)

// newServer serves a real lab holding template "tmpl", network "lan" and
// configuration "web" (VM "vm1" on lan); see apitest.Lab.Seed.
func newServer(t *testing.T) (*httptest.Server, *apitest.Lab) {
	t.Helper()
	l := apitest.New(t).Seed(t)
	srv, _ := apitest.Serve(t, l)
	return srv, l
}

// call sends a request and returns the status, headers and body.
func call(t *testing.T, srv *httptest.Server, method, path, body string) (int, http.Header, []byte) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, srv.URL+path, r)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

func decodeAs[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return v
}

func TestErrorKindsMapToStatus(t *testing.T) {
	tests := []struct {
		err    error
		status int
		kind   string
	}{
		{errdefs.Invalid("name %q is bad", "x y"), 400, wire.KindInvalid},
		{errdefs.NotFound("configuration %q not found", "x"), 404, wire.KindNotFound},
		{errdefs.Conflict("configuration %q is deployed", "x"), 409, wire.KindConflict},
		{errdefs.Unavailable("store is read-only"), 503, wire.KindUnavailable},
		{fmt.Errorf("clone %q: %w", "x", errdefs.ErrCanceled), 409, wire.KindCanceled},
		{errors.New("disk on fire"), 500, wire.KindInternal},
		{fmt.Errorf("clone %q: freeze layer 7: %w", "x", errdefs.Conflict("layer busy")), 409, wire.KindConflict},
		{errdefs.Unauthenticated("no credentials"), 401, wire.KindUnauthenticated},
		{fmt.Errorf("configuration %q: %w", "x", errdefs.Forbidden("may not deploy")), 403, wire.KindForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.kind+"/"+tt.err.Error(), func(t *testing.T) {
			_, l := newServer(t)
			srv, _ := apitest.Serve(t, &apitest.Failing{Lab: l, Method: "GetConfig", Err: tt.err})
			status, hdr, body := call(t, srv, "GET", "/api/v1/configs/web", "")
			if status != tt.status {
				t.Fatalf("status = %d, want %d (body %s)", status, tt.status, body)
			}
			if ct := hdr.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			e := decodeAs[wire.Error](t, body)
			if e.Kind != tt.kind || e.Error != tt.err.Error() {
				t.Errorf("body = %+v, want kind %q error %q", e, tt.kind, tt.err.Error())
			}
			// A 401 names the scheme that would do (RFC 9110 §11.6.1).
			if got, want := hdr.Get("WWW-Authenticate"), `Bearer realm="stagehand"`; (status == 401) != (got == want) {
				t.Errorf("WWW-Authenticate = %q on a %d", got, status)
			}
		})
	}
}

func TestMalformedRequestsAre400(t *testing.T) {
	tests := []struct {
		name, method, path, body string
	}{
		{"syntax", "POST", "/api/v1/configs", `{"name": "x",`},
		{"unknown field", "POST", "/api/v1/configs", `{"name": "x", "vms": [], "colour": "red"}`},
		{"unknown nested field", "POST", "/api/v1/configs", `{"name": "x", "vms": [{"name": "a", "tpl": "t"}]}`},
		{"wrong type", "POST", "/api/v1/templates", `{"name": "x", "cpus": "two"}`},
		{"empty body", "POST", "/api/v1/networks", ``},
		{"trailing data", "POST", "/api/v1/networks", `{"name": "n"} {"name": "m"}`},
		{"not an object", "POST", "/api/v1/configs/web/clone", `["web2"]`},
		{"bad clone mode", "POST", "/api/v1/configs/web/clone", `{"name": "web2", "mode": "deep"}`},
		{"bad nic index", "PUT", "/api/v1/configs/web/vms/vm1/nics/eth0/ip", `{"ip": "dhcp"}`},
		{"negative disk", "GET", "/api/v1/configs/web/vms/vm1/disks/-1/chain", ``},
		{"bad timeout", "GET", "/api/v1/jobs/1/wait?timeout=soon", ``},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := newServer(t)
			status, _, body := call(t, srv, tt.method, tt.path, tt.body)
			if status != http.StatusBadRequest {
				t.Fatalf("status = %d, want 400 (body %s)", status, body)
			}
			if e := decodeAs[wire.Error](t, body); e.Kind != wire.KindInvalid || e.Error == "" {
				t.Errorf("body = %+v", e)
			}
		})
	}
}

func TestCreateAndShowConfig(t *testing.T) {
	srv, _ := newServer(t)
	status, hdr, body := call(t, srv, "POST", "/api/v1/configs",
		`{"name": "db", "owner": "ann", "vms": [{"name": "pg", "template": "tmpl", "network": "lan", "ip": "10.0.0.50"}]}`)
	if status != http.StatusCreated {
		t.Fatalf("status = %d (body %s)", status, body)
	}
	if loc := hdr.Get("Location"); loc != "/api/v1/configs/db" {
		t.Errorf("Location = %q", loc)
	}
	status, _, body = call(t, srv, "GET", "/api/v1/configs/db", "")
	if status != http.StatusOK {
		t.Fatalf("status = %d (body %s)", status, body)
	}
	// The contract names these keys; check the raw JSON, not the Go type.
	var raw map[string]any
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"name", "state", "fenced", "vms"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("config JSON lacks %q: %s", k, body)
		}
	}
	vm := raw["vms"].([]any)[0].(map[string]any)
	for _, k := range []string{"name", "state", "disks", "nics"} {
		if _, ok := vm[k]; !ok {
			t.Errorf("vm JSON lacks %q", k)
		}
	}
	disk := vm["disks"].([]any)[0].(map[string]any)
	if _, ok := disk["path"]; !ok {
		t.Errorf("disk JSON lacks path")
	}
	if chain, ok := disk["chain"].([]any); !ok || len(chain) != 2 || chain[0] != disk["path"] {
		t.Errorf("disk chain = %v, want [top base] with top = path %v", disk["chain"], disk["path"])
	}
	nic := vm["nics"].([]any)[0].(map[string]any)
	for _, k := range []string{"network", "mac", "ip_mode", "ip", "external_ip"} {
		if _, ok := nic[k]; !ok {
			t.Errorf("nic JSON lacks %q", k)
		}
	}
	if nic["ip"] != "10.0.0.50" || nic["ip_mode"] != "manual" {
		t.Errorf("nic = %v", nic)
	}
}

func TestLinkedCloneIs201(t *testing.T) {
	srv, _ := newServer(t)
	status, hdr, body := call(t, srv, "POST", "/api/v1/configs/web/clone", `{"name": "web2", "mode": "linked"}`)
	if status != http.StatusCreated {
		t.Fatalf("status = %d (body %s)", status, body)
	}
	if hdr.Get("Location") != "/api/v1/configs/web2" {
		t.Errorf("Location = %q", hdr.Get("Location"))
	}
	if c := decodeAs[wire.Config](t, body); c.Name != "web2" || len(c.VMs) != 1 {
		t.Errorf("config = %+v", c)
	}
	// Mode defaults to linked.
	if status, _, body := call(t, srv, "POST", "/api/v1/configs/web/clone", `{"name": "web3"}`); status != http.StatusCreated {
		t.Fatalf("default mode: status = %d (body %s)", status, body)
	}
}

func TestFullCloneIs202WithLocation(t *testing.T) {
	srv, l := newServer(t)
	l.Disks.Hold()
	status, hdr, body := call(t, srv, "POST", "/api/v1/configs/web/clone", `{"name": "web2", "mode": "full"}`)
	if status != http.StatusAccepted {
		t.Fatalf("status = %d (body %s)", status, body)
	}
	j := decodeAs[wire.Job](t, body)
	if j.ID == "" || j.Kind != "full-clone" || j.Subject != "web2" || j.State != wire.JobRunning {
		t.Errorf("job = %+v", j)
	}
	loc := hdr.Get("Location")
	if loc != "/api/v1/jobs/"+j.ID {
		t.Fatalf("Location = %q, want /api/v1/jobs/%s", loc, j.ID)
	}

	// While gated, a short wait returns the running snapshot.
	start := time.Now()
	status, _, body = call(t, srv, "GET", loc+"/wait?timeout=50ms", "")
	if status != http.StatusOK || decodeAs[wire.Job](t, body).State != wire.JobRunning {
		t.Fatalf("wait while running: %d %s", status, body)
	}
	if d := time.Since(start); d < 50*time.Millisecond || d > 5*time.Second {
		t.Errorf("wait took %v, want about 50ms", d)
	}

	l.Disks.Release()
	status, _, body = call(t, srv, "GET", loc+"/wait?timeout=10s", "")
	j = decodeAs[wire.Job](t, body)
	if status != http.StatusOK || j.State != wire.JobSucceeded || j.Done != j.Total || j.Ended.IsZero() {
		t.Fatalf("wait after gate: %d %s", status, body)
	}
	if status, _, body := call(t, srv, "GET", "/api/v1/configs/web2", ""); status != http.StatusOK {
		t.Fatalf("clone after job: %d %s", status, body)
	}
	status, _, body = call(t, srv, "GET", "/api/v1/jobs", "")
	if js := decodeAs[[]wire.Job](t, body); status != http.StatusOK || len(js) != 1 || js[0].ID != j.ID {
		t.Errorf("jobs = %d %s", status, body)
	}
}

func TestCancelJob(t *testing.T) {
	for _, route := range []struct{ method, suffix string }{{"POST", "/cancel"}, {"DELETE", ""}} {
		t.Run(route.method, func(t *testing.T) {
			srv, l := newServer(t)
			l.Disks.Hold()
			_, hdr, _ := call(t, srv, "POST", "/api/v1/configs/web/vms/vm1/disks/0/consolidate", "")
			loc := hdr.Get("Location")
			status, _, body := call(t, srv, route.method, loc+route.suffix, "")
			if status != http.StatusAccepted {
				t.Fatalf("cancel: %d %s", status, body)
			}
			_, _, body = call(t, srv, "GET", loc+"/wait", "")
			if j := decodeAs[wire.Job](t, body); j.State != wire.JobCanceled {
				t.Fatalf("after cancel: %+v", j)
			}
			// Cancelling an ended job is a conflict.
			if status, _, body := call(t, srv, route.method, loc+route.suffix, ""); status != http.StatusConflict {
				t.Fatalf("second cancel: %d %s", status, body)
			}
		})
	}
}

func TestUnknownJobIs404(t *testing.T) {
	srv, _ := newServer(t)
	for _, p := range []string{"/api/v1/jobs/77", "/api/v1/jobs/77/wait?timeout=1s"} {
		if status, _, body := call(t, srv, "GET", p, ""); status != http.StatusNotFound {
			t.Errorf("GET %s: %d %s", p, status, body)
		}
	}
}

func TestRoutes(t *testing.T) {
	tests := []struct {
		method, path, body string
		status             int
	}{
		{"GET", "/healthz", "", 200},
		{"GET", "/api/v1/templates", "", 200},
		{"GET", "/api/v1/templates/tmpl", "", 200},
		{"POST", "/api/v1/templates", `{"name": "t2", "disks": ["IMAGE"], "format": "raw", "cpus": 2, "memory_mib": 512}`, 201},
		{"DELETE", "/api/v1/templates/tmpl", "", 409}, // web uses it
		{"GET", "/api/v1/networks", "", 200},
		{"GET", "/api/v1/networks/lan", "", 200},
		{"POST", "/api/v1/networks", `{"name": "dmz", "subnet": "10.1.0.0/24", "pools": ["10.1.0.10-10.1.0.20"], "dns": ["10.1.0.1"]}`, 201},
		{"POST", "/api/v1/networks", `{"name": "lan", "subnet": "10.1.0.0/24", "pools": ["10.1.0.10-10.1.0.20"]}`, 409},
		{"DELETE", "/api/v1/networks/lan", "", 409}, // web uses it
		{"DELETE", "/api/v1/networks/dmz", "", 404},
		{"GET", "/api/v1/configs", "", 200},
		{"DELETE", "/api/v1/configs/web", "", 204},
		{"DELETE", "/api/v1/configs/nope", "", 404},
		{"POST", "/api/v1/configs/web/change-ips", "", 200},
		{"PUT", "/api/v1/configs/web/vms/vm1/nics/0/ip", `{"ip": "10.0.0.77"}`, 200},
		{"PUT", "/api/v1/configs/web/vms/vm1/nics/3/ip", `{"ip": "10.0.0.77"}`, 404},
		{"GET", "/api/v1/configs/web/vms/vm1/disks/0/chain", "", 200},
		{"POST", "/api/v1/configs/web/vms/vm1/disks/0/consolidate", "", 202},
		{"GET", "/api/v1/doctor", "", 200},
		{"POST", "/api/v1/doctor/repair", "", 200},
		{"GET", "/api/v1/nothing", "", 404},
		{"PATCH", "/api/v1/configs/web", "", 405},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			srv, l := newServer(t)
			reqBody := strings.ReplaceAll(tt.body, "IMAGE", l.RawImage(t, "b.raw", 1<<20))
			status, hdr, body := call(t, srv, tt.method, tt.path, reqBody)
			if status != tt.status {
				t.Fatalf("status = %d, want %d (body %s)", status, tt.status, body)
			}
			if status != http.StatusNoContent && !json.Valid(body) {
				t.Errorf("body is not JSON: %q", body)
			}
			if status == http.StatusMethodNotAllowed && !strings.Contains(hdr.Get("Allow"), "GET") {
				t.Errorf("Allow = %q", hdr.Get("Allow"))
			}
		})
	}
}

func TestNetworkUsageShape(t *testing.T) {
	srv, _ := newServer(t)
	call(t, srv, "POST", "/api/v1/configs/web/clone", `{"name": "web2"}`)
	_, _, body := call(t, srv, "GET", "/api/v1/networks/lan", "")
	n := decodeAs[wire.Network](t, body)
	if len(n.Usage) != 1 || len(n.Usage[0].Holders) != 2 {
		t.Fatalf("usage = %+v, want one address held by web and web2", n.Usage)
	}
	want := []wire.IPHolder{{Config: "web", VM: "vm1", NIC: 0}, {Config: "web2", VM: "vm1", NIC: 0}}
	for i, h := range n.Usage[0].Holders {
		if h != want[i] {
			t.Errorf("holder %d = %+v, want %+v", i, h, want[i])
		}
	}
	if !strings.Contains(string(body), `"dns":[]`) {
		t.Errorf("empty dns should be [], got %s", body)
	}
}

func TestDoctorRepair(t *testing.T) {
	srv, l := newServer(t)
	orphan := l.Orphan(t, "l-orphan.qcow2")
	lost := l.LoseLayer(t, "web", "vm1", 0)
	_, _, body := call(t, srv, "POST", "/api/v1/doctor/repair", "")
	rep := decodeAs[wire.DoctorReport](t, body)
	repaired := map[string]bool{}
	for _, p := range rep.Problems {
		repaired[p.Kind+" "+p.Subject] = p.Repaired
	}
	if len(rep.Problems) != 2 || !repaired[lab.ProblemOrphanFile+" "+orphan] || repaired[lab.ProblemMissingLayer+" "+lost] {
		t.Fatalf("report = %+v, want the orphan repaired and the missing layer not", rep)
	}
	if _, ok := repaired[lab.ProblemMissingLayer+" "+lost]; !ok {
		t.Fatalf("report = %+v, want the missing layer %s", rep, lost)
	}
}

func TestDrainEndsWaits(t *testing.T) {
	l := apitest.New(t).Seed(t)
	l.Disks.Hold()
	j, err := l.Configs.StartFullClone(context.Background(), "web", "web2", lab.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h := api.NewHandler(l.Service, slog.New(slog.NewTextHandler(io.Discard, nil)))
	h.TrustRequestsWithoutCredentials(apitest.Root)
	done := make(chan *httptest.ResponseRecorder)
	go func() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "http://localhost/api/v1/jobs/"+j.ID+"/wait?timeout=1m", nil))
		done <- rec
	}()
	time.Sleep(20 * time.Millisecond)
	h.Drain()
	select {
	case rec := <-done:
		if rec.Code != 200 || decodeAs[wire.Job](t, rec.Body.Bytes()).State != wire.JobRunning {
			t.Fatalf("drained wait: %d %s", rec.Code, rec.Body)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Drain did not end the wait")
	}
}
