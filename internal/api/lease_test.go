package api_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"stagehand/internal/api/apitest"
	"stagehand/internal/api/wire"
	"stagehand/internal/lab"
)

// TestCreatingRequestsAnswerWithTheirLease sends every request that makes
// a configuration or library entry, and a deploy, with a lease of its own
// and checks that the answer shows that lease: the lab writes it in the
// operation's own transaction, so no second read is needed (before,
// create and clone answered without it).
func TestCreatingRequestsAnswerWithTheirLease(t *testing.T) {
	now := time.Date(2030, 3, 1, 9, 0, 0, 0, time.UTC)
	l := apitest.New(t, func(o *lab.Options) {
		o.Now = func() time.Time { return now }
		o.Leases = lab.LeasePolicy{DefaultStorage: 90 * 24 * time.Hour}
	}).Seed(t)
	srv, _ := apitest.Serve(t, l)
	post := func(path, body string, want int) wire.Config {
		t.Helper()
		resp, err := srv.Client().Post(srv.URL+wire.APIPrefix+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want {
			t.Fatalf("POST %s: %d %s, want %d", path, resp.StatusCode, b, want)
		}
		var c wire.Config
		if err := json.Unmarshal(b, &c); err != nil {
			t.Fatalf("POST %s: %v: %s", path, err, b)
		}
		return c
	}
	day := 24 * time.Hour
	for _, c := range []struct {
		path, body string
		want       time.Duration
	}{
		{"/configs", `{"name":"a","vms":[{"name":"vm","template":"tmpl"}],"storage_lease":"30d"}`, 30 * day},
		{"/configs", `{"name":"dflt","vms":[{"name":"vm","template":"tmpl"}]}`, 90 * day},
		{"/configs/a/clone", `{"name":"b","storage_lease":"2d"}`, 2 * day},
		{"/library", `{"config":"a","name":"lib","storage_lease":"3d"}`, 3 * day},
		{"/library/lib/checkout", `{"name":"ws","storage_lease":"1w"}`, 7 * day},
	} {
		got := post(c.path, c.body, http.StatusCreated)
		if want := now.Add(c.want); !got.Lease.StorageExpires.Equal(want) {
			t.Errorf("POST %s %s answers a storage lease ending %v, want %v", c.path, c.body, got.Lease.StorageExpires, want)
		}
	}
	got := post("/configs/b/deploy", `{"deploy_lease":"4h"}`, http.StatusOK)
	if want := now.Add(4 * time.Hour); got.Lease.DeployLeaseSeconds != 4*3600 || !got.Lease.DeployExpires.Equal(want) {
		t.Errorf("deploy --deploy-lease 4h answers %+v, want it to end at %v", got.Lease, want)
	}
}
