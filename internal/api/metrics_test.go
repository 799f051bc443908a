package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"stagehand/internal/api"
	"stagehand/internal/api/apitest"
	"stagehand/internal/api/wire"
	"stagehand/internal/metrics"
)

// scrape reads GET /metrics and parses the text format.
func scrape(t *testing.T, srv *httptest.Server) map[string]*dto.MetricFamily {
	t.Helper()
	status, hdr, body := call(t, srv, http.MethodGet, "/metrics", "")
	if status != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", status, body)
	}
	if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("GET /metrics: Content-Type %q", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	return mfs
}

// series returns family name's samples keyed by their labels
// ("a=x,b=y", sorted by name; "" without labels).
func series(mfs map[string]*dto.MetricFamily, name string) map[string]*dto.Metric {
	out := map[string]*dto.Metric{}
	mf := mfs[name]
	if mf == nil {
		return out
	}
	for _, m := range mf.GetMetric() {
		var kv []string
		for _, l := range m.GetLabel() {
			kv = append(kv, l.GetName()+"="+l.GetValue())
		}
		sort.Strings(kv)
		out[strings.Join(kv, ",")] = m
	}
	return out
}

func getJSON(t *testing.T, srv *httptest.Server, path string, v any) {
	t.Helper()
	status, _, body := call(t, srv, http.MethodGet, path, "")
	if status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, status, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

// TestMetricsAgreeWithTheAPI builds a lab through the API (two networks,
// three configurations, one deployed plain and one fenced, a full clone
// as a job), scrapes /metrics and checks every lab series against what the
// API answers: configurations by state against config list, deployed VMs,
// each network's free, held and external pool addresses against network
// show, layer bytes against the layers' actual sizes, guest CPU against
// the VMs' PIDs; then that requests are counted under their route
// pattern, never their path, and the full clone under its job kind.
func TestMetricsAgreeWithTheAPI(t *testing.T) {
	l := apitest.New(t).Seed(t)
	h := api.NewLabHandler(l.API(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	h.TrustRequestsWithoutCredentials(apitest.Root)
	// The daemon's sources (daemon.go) but for the guest CPU: the fake
	// host's PIDs are not QEMU processes, so each VM reports its PID in
	// milliseconds, which the test can predict.
	h.SetMetricsSources(api.MetricsSources{
		GuestCPU:   func(pid int) (time.Duration, error) { return time.Duration(pid) * time.Millisecond, nil },
		LayerBytes: metrics.NewDirBytes(filepath.Join(l.DataDir(), "layers"), ".qcow2", 30*time.Second).Bytes,
	})
	srv := httptest.NewServer(h)
	t.Cleanup(func() { h.Drain(); srv.Close() })

	mustCall := func(method, path, body string, want int) []byte {
		t.Helper()
		status, _, b := call(t, srv, method, path, body)
		if status != want {
			t.Fatalf("%s %s: %d %s, want %d", method, path, status, b, want)
		}
		return b
	}
	mustCall("POST", "/api/v1/networks", `{"name":"lab2","subnet":"10.1.0.0/24","gateway":"10.1.0.1","pools":["10.1.0.10-10.1.0.19"]}`, http.StatusCreated)
	mustCall("POST", "/api/v1/configs", `{"name":"db","vms":[{"name":"a","template":"tmpl","network":"lab2"},{"name":"b","template":"tmpl","network":"lab2"}]}`, http.StatusCreated)
	mustCall("POST", "/api/v1/configs/web/clone", `{"name":"web2"}`, http.StatusCreated)
	mustCall("POST", "/api/v1/configs/db/deploy", `{}`, http.StatusOK)
	mustCall("POST", "/api/v1/configs/web2/deploy", `{"fenced":true}`, http.StatusOK)
	var job wire.Job
	if err := json.Unmarshal(mustCall("POST", "/api/v1/configs/web/clone", `{"name":"web3","mode":"full"}`, http.StatusAccepted), &job); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(mustCall("GET", "/api/v1/jobs/"+job.ID+"/wait?timeout=60s", "", http.StatusOK), &job); err != nil || job.State != wire.JobSucceeded {
		t.Fatalf("full clone: %+v %v", job, err)
	}

	mfs := scrape(t, srv)

	// Configurations by state, and deployed VMs, against config list.
	var configs []wire.Config
	getJSON(t, srv, "/api/v1/configs", &configs)
	wantStates := map[string]float64{"undeployed": 0, "deploying": 0, "deployed": 0, "undeploying": 0, "failed": 0}
	wantDeployedVMs, deployedConfigs := 0.0, 0
	for _, c := range configs {
		wantStates[c.State]++
		if c.State == "deployed" {
			deployedConfigs++
			wantDeployedVMs += float64(len(c.VMs))
		}
	}
	if len(configs) != 4 || deployedConfigs != 2 {
		t.Fatalf("config list: %d configurations, %d deployed; want 4 and 2", len(configs), deployedConfigs)
	}
	got := series(mfs, "stagehand_configurations")
	for state, want := range wantStates {
		if m := got["state="+state]; m == nil || m.GetGauge().GetValue() != want {
			t.Errorf("stagehand_configurations{state=%q} = %v, config list says %v", state, m.GetGauge().GetValue(), want)
		}
	}
	if len(got) != len(wantStates) {
		t.Errorf("stagehand_configurations has %d states, want %d", len(got), len(wantStates))
	}
	if v := series(mfs, "stagehand_deployed_vms")[""].GetGauge().GetValue(); v != wantDeployedVMs || v != 3 {
		t.Errorf("stagehand_deployed_vms = %v, config list says %v (want 3)", v, wantDeployedVMs)
	}

	// Guest CPU: one series per running VM, named by config and VM.
	cpu := series(mfs, "stagehand_guest_cpu_seconds_total")
	running := 0
	for _, c := range configs {
		for _, vm := range c.VMs {
			if vm.PID <= 0 {
				continue
			}
			running++
			key := fmt.Sprintf("config=%s,vm=%s", c.Name, vm.Name)
			if m := cpu[key]; m == nil || m.GetCounter().GetValue() != float64(vm.PID)/1000 {
				t.Errorf("guest cpu {%s} = %v, want %v (pid %d)", key, m.GetCounter().GetValue(), float64(vm.PID)/1000, vm.PID)
			}
		}
	}
	if running != 3 || len(cpu) != running {
		t.Errorf("%d guest cpu series for %d running VMs (want 3)", len(cpu), running)
	}

	// Pool usage against network show.
	pools := series(mfs, "stagehand_network_pool_addresses")
	var networks []wire.Network
	getJSON(t, srv, "/api/v1/networks", &networks)
	sawExternal := false
	for _, ln := range networks {
		var n wire.Network
		getJSON(t, srv, "/api/v1/networks/"+ln.Name, &n)
		held, external := 0, 0
		for _, u := range n.Usage {
			if u.InPool && u.Kind == wire.IPExternal {
				external++
			} else if u.InPool {
				held++
			}
		}
		sawExternal = sawExternal || external > 0
		for use, want := range map[string]int{"free": n.PoolSize - n.PoolUsed, "held": held, "external": external} {
			key := fmt.Sprintf("network=%s,use=%s", n.Name, use)
			if m := pools[key]; m == nil || m.GetGauge().GetValue() != float64(want) {
				t.Errorf("pool {%s} = %v, network show says %d", key, m.GetGauge().GetValue(), want)
			}
		}
		if n.PoolUsed == 0 {
			t.Errorf("network %s: nothing held; the test meant to use both", n.Name)
		}
	}
	if len(pools) != 3*len(networks) || len(networks) != 2 {
		t.Errorf("%d pool series for %d networks", len(pools), len(networks))
	}
	if !sawExternal {
		t.Error("the fenced deployment holds no external address: the external series went untested")
	}

	// Layer bytes against the layers' actual sizes (templates' base
	// layers and every configuration's chains, each layer once).
	sizes := map[int64]int64{}
	var templates []wire.Template
	getJSON(t, srv, "/api/v1/templates", &templates)
	for _, tm := range templates {
		for _, ly := range tm.Disks {
			sizes[ly.ID] = ly.ActualSize
		}
	}
	for _, c := range configs {
		for _, vm := range c.VMs {
			for _, d := range vm.Disks {
				var chain []wire.Layer
				getJSON(t, srv, fmt.Sprintf("/api/v1/configs/%s/vms/%s/disks/%d/chain", c.Name, vm.Name, d.Index), &chain)
				for _, ly := range chain {
					sizes[ly.ID] = ly.ActualSize
				}
			}
		}
	}
	var wantBytes int64
	for _, s := range sizes {
		wantBytes += s
	}
	if v := series(mfs, "stagehand_layer_bytes")[""].GetGauge().GetValue(); v != float64(wantBytes) || v == 0 {
		t.Errorf("stagehand_layer_bytes = %v, the API's %d layers take %d", v, len(sizes), wantBytes)
	}

	// Requests, by pattern; the full clone, by kind.
	mustCall("GET", "/api/v1/configs/web", "", http.StatusOK)
	mustCall("GET", "/api/v1/nowhere", "", http.StatusNotFound)
	mfs = scrape(t, srv)
	reqs := series(mfs, "stagehand_http_request_duration_seconds")
	for _, key := range []string{"route=GET /api/v1/configs/{name},status=200", "route=POST /api/v1/configs,status=201", "route=unmatched,status=404"} {
		if reqs[key].GetHistogram().GetSampleCount() == 0 {
			t.Errorf("no request counted under {%s}", key)
		}
	}
	for key := range reqs {
		if strings.Contains(key, "/configs/web") || strings.Contains(key, "nowhere") {
			t.Errorf("a raw path became a series: {%s}", key)
		}
	}
	if series(mfs, "stagehand_job_duration_seconds")["kind=full-clone,outcome=succeeded"].GetHistogram().GetSampleCount() == 0 {
		t.Error("the full clone's duration is not in stagehand_job_duration_seconds")
	}
}

// TestMetricsAreTheSystemAdministrators: a scrape needs credentials, and
// a system administrator's; a workspace admin's token is refused.
func TestMetricsAreTheSystemAdministrators(t *testing.T) {
	l := apitest.New(t)
	srv, _ := apitest.ServeStrict(t, l)
	l.User(t, "ops", true)
	admin := l.Token(t, "ops", apitest.TokenOptions{})
	user := l.Token(t, "dev", apitest.TokenOptions{})
	for _, tc := range []struct {
		name, token string
		want        int
	}{
		{"no credentials", "", http.StatusUnauthorized},
		{"a user", user, http.StatusForbidden},
		{"a system administrator", admin, http.StatusOK},
	} {
		hdr := map[string]string{}
		if tc.token != "" {
			hdr["Authorization"] = "Bearer " + tc.token
		}
		if status, _, body := sendAs(t, srv, http.MethodGet, "/metrics", "", hdr); status != tc.want {
			t.Errorf("%s: GET /metrics = %d %s, want %d", tc.name, status, body, tc.want)
		}
	}
}
