package api_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"stagehand/internal/api/apitest"
	"stagehand/internal/api/wire"
	"stagehand/internal/auth"
	"stagehand/internal/store"
)

// TestWorkspaceLeasePolicy: a workspace's admin sets and reads its lease
// policy (the secret is never shown back), an author of the workspace may
// do neither (403), a bad ladder or webhook URL is 400 and changes
// nothing, and a policy with no ladder and no webhook removes it.
func TestWorkspaceLeasePolicy(t *testing.T) {
	l := apitest.New(t).Seed(t)
	srv, _ := apitest.ServeStrict(t, l)
	ann := authorInTwoWorkspaces(t, l) // author in w1 and w2
	bob := l.User(t, "bob", false)
	err := l.Store().Update(context.Background(), func(tx store.Tx) error {
		org, err := tx.Orgs().Get(store.DefaultOrg)
		if err != nil {
			return err
		}
		w1, err := tx.Workspaces().Get(org.ID, "w1")
		if err != nil {
			return err
		}
		return tx.Memberships().Put(&store.Membership{UserID: bob.ID, WorkspaceID: w1.ID, Role: string(auth.RoleAdmin)})
	})
	if err != nil {
		t.Fatal(err)
	}
	bobTok := l.Token(t, "bob", apitest.TokenOptions{})
	const path = "/api/v1/workspaces/default/w1/lease-policy"

	var got wire.LeasePolicy
	if status, b := as(t, srv, bobTok, http.MethodGet, path, "", &got); status != http.StatusOK || got.Ladder != "none" || len(got.Steps) != 0 {
		t.Fatalf("policy of a workspace without one: %d %s", status, b)
	}
	body := `{"ladder":"warn=1h,suspend,undeploy=1d,archive=7d,delete=30d","webhook_url":"https://hooks.example/lease","webhook_secret":"s3cret"}`
	if status, b := as(t, srv, bobTok, http.MethodPut, path, body, &got); status != http.StatusOK {
		t.Fatalf("set by the workspace's admin: %d %s", status, b)
	}
	if status, b := as(t, srv, bobTok, http.MethodGet, path, "", &got); status != http.StatusOK || strings.Contains(b, "s3cret") {
		t.Fatalf("get: %d %s", status, b)
	}
	if got.Ladder != "warn=1h0m0s,suspend,undeploy=24h0m0s,archive=168h0m0s,delete=720h0m0s" || !got.WebhookSigned ||
		got.WebhookURL != "https://hooks.example/lease" || len(got.Steps) != 5 || got.Steps[0].OffsetSeconds != -3600 {
		t.Errorf("policy read back: %+v", got)
	}
	for _, m := range []string{http.MethodGet, http.MethodPut} {
		if status, b := as(t, srv, ann, m, path, body, nil); status != http.StatusForbidden {
			t.Errorf("%s by an author: %d %s, want 403", m, status, b)
		}
	}
	for _, bad := range []string{`{"ladder":"warn=1h"}`, `{"ladder":"suspend,nap=1d"}`, `{"ladder":"suspend","webhook_url":"file:///etc/passwd"}`,
		`{"ladder":"suspend","webhook_url":"http://u:p@hooks.example/"}`, `{"ladder":"suspend","webhook_secret":"x"}`} {
		if status, b := as(t, srv, bobTok, http.MethodPut, path, bad, nil); status != http.StatusBadRequest {
			t.Errorf("PUT %s: %d %s, want 400", bad, status, b)
		}
	}
	if as(t, srv, bobTok, http.MethodGet, path, "", &got); got.WebhookURL != "https://hooks.example/lease" {
		t.Errorf("a refused PUT changed the policy: %+v", got)
	}
	if status, b := as(t, srv, bobTok, http.MethodPut, path, `{"ladder":"none"}`, &got); status != http.StatusOK || got.Ladder != "none" {
		t.Errorf("remove: %d %s", status, b)
	}
	err = l.Store().View(context.Background(), func(tx store.Tx) error {
		ps, err := tx.LeasePolicies().List()
		if err == nil && len(ps) != 0 {
			t.Errorf("policies left after removing: %+v", ps)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
