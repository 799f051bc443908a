package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"stagehand/internal/api/apitest"
	"stagehand/internal/api/wire"
	"stagehand/internal/lab"
)

// TestExplainJob: auth explain decides on a job (job/ID) as the route
// table's check does, on the object its operation works on: the system
// administrator may read it, a user of no workspace may not even see it;
// an unknown job is not found.
func TestExplainJob(t *testing.T) {
	ctx := context.Background()
	l := apitest.New(t).Seed(t)
	srv, _ := apitest.ServeStrict(t, l)
	admin := map[string]string{"Authorization": "Bearer " + l.AdminToken(t), "Content-Type": "application/json"}
	l.User(t, "alice", false)
	j, err := l.Archives.StartCreate(ctx, "web", "arc-explain", lab.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if j, err = l.Jobs().Wait(wctx, j.ID); err != nil || j.State != "succeeded" {
		t.Fatalf("archive job: %+v %v", j, err)
	}
	explain := func(user, object string) (int, wire.Explanation, string) {
		t.Helper()
		status, _, body := sendAs(t, srv, http.MethodPost, "/api/v1/auth/explain",
			fmt.Sprintf(`{"user":%q,"action":"job.read","object":%q}`, user, object), admin)
		var e wire.Explanation
		if status == http.StatusOK {
			if err := json.Unmarshal([]byte(body), &e); err != nil {
				t.Fatalf("explain: %v: %s", err, body)
			}
		}
		return status, e, body
	}
	if status, e, body := explain("admin", "job/"+j.ID); status != http.StatusOK || !e.Allowed || !e.Visible {
		t.Errorf("explain admin job.read job/%s: %d %s, want allowed", j.ID, status, body)
	}
	if status, e, body := explain("alice", "job/"+j.ID); status != http.StatusOK || e.Allowed || e.Visible {
		t.Errorf("explain alice job.read job/%s: %d %s, want refused and invisible", j.ID, status, body)
	}
	if status, _, body := explain("admin", "job/nope"); status != http.StatusNotFound {
		t.Errorf("explain on an unknown job: %d %s, want 404", status, body)
	}
}
