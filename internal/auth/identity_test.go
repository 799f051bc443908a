package auth

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestIdentityContext(t *testing.T) {
	for _, tc := range []struct {
		name string
		id   Identity
	}{
		{"unix peer root", Identity{UserID: 1, Name: "admin", SystemAdmin: true, Via: ViaUnixPeer}},
		{"token", Identity{UserID: 7, Name: "bob", Via: ViaToken, TokenID: "abcdefghijkl"}},
		{"restricted token", Identity{UserID: 7, Name: "bob", Via: ViaToken, TokenID: "abcdefghijkl",
			Restrict: &Restriction{WorkspaceID: 3, MaxRole: RoleViewer}}},
		{"session", Identity{UserID: 8, Name: "carol", Via: ViaSession, TokenID: "mnopqrstuvwx"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, ok := FromContext(context.Background()); ok {
				t.Fatal("an empty context carries an identity")
			}
			ctx := WithIdentity(context.Background(), tc.id)
			got, ok := FromContext(ctx)
			if !ok {
				t.Fatal("no identity back")
			}
			if diff := cmp.Diff(tc.id, got); diff != "" {
				t.Fatalf("identity changed on the way (-put +got):\n%s", diff)
			}
			if tc.id.Restrict != nil {
				// Neither the caller's pointer nor the returned one reaches
				// what the context holds.
				tc.id.Restrict.MaxRole = RoleAdmin
				got.Restrict.WorkspaceID = 99
				again, _ := FromContext(ctx)
				if again.Restrict.MaxRole != RoleViewer || again.Restrict.WorkspaceID != 3 {
					t.Fatalf("the restriction in the context was widened: %+v", *again.Restrict)
				}
			}
			a := got.Actor([]int64{5})
			if a.UserID != got.UserID || a.SystemAdmin != got.SystemAdmin || a.Name != got.Name || len(a.OrgAdminOf) != 1 {
				t.Errorf("Actor = %+v from %+v", a, got)
			}
		})
	}
}
