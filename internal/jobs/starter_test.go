package jobs

import (
	"context"
	"testing"

	"stagehand/internal/auth"
)

// TestStartFromRecordsTheStarter: a job started by a request records its
// identity's user, so authorization can let the starter read and cancel
// it; a job the system starts records none.
func TestStartFromRecordsTheStarter(t *testing.T) {
	m := NewManager()
	defer m.Close()
	noop := func(context.Context, func(done, total int64)) error { return nil }
	ctx := auth.WithIdentity(context.Background(), auth.Identity{UserID: 42, Name: "bob", Via: auth.ViaToken})
	if j := m.StartFrom(ctx, "archive", "a", noop); j.UserID != 42 {
		t.Errorf("job started by user 42 records user %d", j.UserID)
	}
	if j := m.StartFrom(context.Background(), "archive", "b", noop); j.UserID != 0 {
		t.Errorf("job started by the system records user %d", j.UserID)
	}
}
