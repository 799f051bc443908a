package api_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"stagehand/internal/api"
	"stagehand/internal/api/apitest"
	"stagehand/internal/api/wire"
	"stagehand/internal/auth"
	"stagehand/internal/store"
)

// BenchmarkGate measures what authentication and authorization add to one
// request: GET /api/v1/configs/web through the whole handler (no network),
//   - trusted: a request without credentials that the handler trusts as
//     the system administrator (what root on the socket costs: no token,
//     the object's existence checked), the reference;
//   - admin-token: the same request with a system administrator's bearer
//     token: the token looked up, verified and its user loaded;
//   - member-token: a token of an author of default/main: authentication,
//     then the decision on the configuration from its workspace, the
//     membership and the shares.
//
// The differences to "trusted" are the costs per request (goal for
// authentication: < 50 µs); each case reports its time per request, its
// ratio to the reference timed alternately in the same loop, and the
// difference.
func BenchmarkGate(b *testing.B) {
	l := apitest.New(b, apitest.NoVMs()).Seed(b)
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))
	trusted := api.NewLabHandler(l.API(), discard)
	trusted.TrustRequestsWithoutCredentials(apitest.Root)
	strict := api.NewLabHandler(l.API(), discard)
	b.Cleanup(func() { trusted.Drain(); strict.Drain() })

	admin := l.AdminToken(b)
	member := l.Token(b, "bench-author", apitest.TokenOptions{})
	ctx := context.Background()
	if err := l.Store().Update(ctx, func(tx store.Tx) error {
		org, err := tx.Orgs().Get(store.DefaultOrg)
		if err != nil {
			return err
		}
		ws, err := tx.Workspaces().Get(org.ID, store.MainWorkspace)
		if err != nil {
			return err
		}
		u, err := tx.Users().Get("bench-author")
		if err != nil {
			return err
		}
		return tx.Memberships().Put(&store.Membership{UserID: u.ID, WorkspaceID: ws.ID, Role: string(auth.RoleAuthor)})
	}); err != nil {
		b.Fatal(err)
	}

	get := func(h http.Handler, token string) {
		req := httptest.NewRequest(http.MethodGet, "http://localhost"+wire.APIPrefix+"/configs/web", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("GET /configs/web: %d %s", rec.Code, rec.Body)
		}
	}
	for _, c := range []struct {
		name  string
		h     http.Handler
		token string
	}{
		{"trusted", trusted, ""},
		{"admin-token", strict, admin},
		{"member-token", strict, member},
	} {
		b.Run(c.name, func(b *testing.B) {
			// Each iteration times one request of the case and one of the
			// reference, alternating, so that load on the machine weighs
			// on both alike.
			var caseNs, refNs time.Duration
			for b.Loop() {
				t0 := time.Now()
				get(c.h, c.token)
				t1 := time.Now()
				get(trusted, "")
				caseNs += t1.Sub(t0)
				refNs += time.Since(t1)
			}
			n := float64(b.N)
			b.ReportMetric(float64(caseNs.Nanoseconds())/n, "ns/request")
			b.ReportMetric(float64(caseNs)/float64(refNs), "x-trusted")
			b.ReportMetric(float64((caseNs-refNs).Nanoseconds())/n/1000, "µs-added")
		})
	}
}
