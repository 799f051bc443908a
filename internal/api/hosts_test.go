package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"stagehand/internal/api/apitest"
	"stagehand/internal/api/wire"
	"stagehand/internal/lab"
	"stagehand/internal/store"
)

// TestHosts: the hosts endpoints over the real lab's store: list and show
// (online, capacity, what is deployed), drain answers what still runs
// there, remove is refused while a configuration is deployed there (409
// naming it) and done once none is (204), an unknown host is 404.
func TestHosts(t *testing.T) {
	l := apitest.New(t)
	srv, _ := apitest.Serve(t, l)
	if err := l.Store().Update(context.Background(), func(tx store.Tx) error {
		for _, h := range []store.Host{{Name: "a", AdvertiseURL: "http://10.0.0.1:7080", MemoryMiB: 4096, CPUs: 4}, {Name: "b", AdvertiseURL: "http://10.0.0.2:7080"}} {
			if err := tx.Hosts().Register(&h); err != nil {
				return err
			}
		}
		return tx.Configs().Create(&store.Config{Name: "web", State: store.StateDeployed, Host: "a"})
	}); err != nil {
		t.Fatal(err)
	}
	p := wire.APIPrefix
	status, _, body := call(t, srv, http.MethodGet, p+"/hosts", "")
	var hs []wire.Host
	if status != http.StatusOK || json.Unmarshal(body, &hs) != nil || len(hs) != 2 {
		t.Fatalf("GET /hosts: %d %s", status, body)
	}
	if a := hs[0]; a.Name != "a" || !a.Online || a.State != store.HostActive || a.MemoryMiB != 4096 || len(a.Deployed) != 1 || a.Deployed[0] != "web" {
		t.Errorf("host a: %+v", a)
	}
	if b := hs[1]; b.Deployed == nil || len(b.Deployed) != 0 {
		t.Errorf("host b deployed: %#v, want [] (never null)", b.Deployed)
	}
	status, _, body = call(t, srv, http.MethodPost, p+"/hosts/a/drain", "")
	var a wire.Host
	if status != http.StatusOK || json.Unmarshal(body, &a) != nil || a.State != store.HostDraining || len(a.Deployed) != 1 {
		t.Errorf("drain a: %d %s", status, body)
	}
	if status, _, body = call(t, srv, http.MethodDelete, p+"/hosts/a", ""); status != http.StatusConflict || !strings.Contains(string(body), "web") {
		t.Errorf("remove a with web deployed: %d %s, want 409 naming web", status, body)
	}
	if status, _, body = call(t, srv, http.MethodPost, p+"/hosts/a/undrain", ""); status != http.StatusOK || !strings.Contains(string(body), `"state":"active"`) {
		t.Errorf("undrain a: %d %s", status, body)
	}
	if status, _, body = call(t, srv, http.MethodDelete, p+"/hosts/b", ""); status != http.StatusNoContent {
		t.Errorf("remove b: %d %s", status, body)
	}
	if status, _, body = call(t, srv, http.MethodGet, p+"/hosts/b", ""); status != http.StatusOK || !strings.Contains(string(body), `"state":"removed"`) {
		t.Errorf("show removed b: %d %s", status, body)
	}
	if status, _, body = call(t, srv, http.MethodGet, p+"/hosts/zz", ""); status != http.StatusNotFound {
		t.Errorf("show zz: %d %s, want 404", status, body)
	}
}

// TestDeployRecordsTheHost: a deploy writes the daemon's host on the
// configuration, and the host then lists it as deployed there; config
// show and list carry it (JSON "host").
func TestDeployRecordsTheHost(t *testing.T) {
	l := apitest.New(t, func(o *lab.Options) { o.HostName = "host-a" }).Seed(t)
	srv, _ := apitest.Serve(t, l)
	if err := l.Store().Update(context.Background(), func(tx store.Tx) error {
		return tx.Hosts().Register(&store.Host{Name: "host-a", AdvertiseURL: "http://10.0.0.1:7080"})
	}); err != nil {
		t.Fatal(err)
	}
	p := wire.APIPrefix
	status, _, body := call(t, srv, http.MethodPost, p+"/configs/web/deploy", "")
	if status != http.StatusOK || decodeAs[wire.Config](t, body).Host != "host-a" {
		t.Fatalf("deploy: %d %s; want host host-a", status, body)
	}
	status, _, body = call(t, srv, http.MethodGet, p+"/configs", "")
	if status != http.StatusOK || !strings.Contains(string(body), `"host":"host-a"`) {
		t.Errorf("config list: %d %s", status, body)
	}
	status, _, body = call(t, srv, http.MethodGet, p+"/hosts/host-a", "")
	if h := decodeAs[wire.Host](t, body); status != http.StatusOK || len(h.Deployed) != 1 || h.Deployed[0] != "web" {
		t.Errorf("host-a after deploying web: %d %s", status, body)
	}
}
