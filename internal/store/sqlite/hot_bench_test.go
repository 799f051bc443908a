package sqlite

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"stagehand/internal/auth"
	"stagehand/internal/store"
)

// hotBench is the store of the per-request benchmarks, shaped like
// access.BenchmarkCheck's: a user with 20 memberships (private
// workspaces), one API token, and a configuration in the last workspace
// owned by someone else and shared with the user and 9 others.
type hotBench struct {
	db        *DB
	userID    int64
	tokenID   string
	plaintext string // the API token as a client sends it
	configID  int64
}

func newHotBench(b *testing.B) *hotBench {
	b.Helper()
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(b.TempDir(), "stagehand.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	hb := &hotBench{db: db}
	plaintext, id, hash := auth.NewToken()
	hb.tokenID, hb.plaintext = id, plaintext
	err = db.Update(ctx, func(tx store.Tx) error {
		def, err := tx.Orgs().Get(store.DefaultOrg)
		if err != nil {
			return err
		}
		u := &store.User{Name: "bench"}
		if err := tx.Users().Create(u); err != nil {
			return err
		}
		hb.userID = u.ID
		if err := tx.Tokens().Create(&store.Token{ID: id, UserID: u.ID, Hash: hash, Kind: store.TokenAPI, Name: "bench"}); err != nil {
			return err
		}
		var last int64
		for i := range 20 {
			ws := &store.Workspace{OrgID: def.ID, Name: fmt.Sprintf("w%d", i), Kind: store.WorkspacePrivate}
			if err := tx.Workspaces().Create(ws); err != nil {
				return err
			}
			if err := tx.Memberships().Put(&store.Membership{UserID: u.ID, WorkspaceID: ws.ID, Role: "user"}); err != nil {
				return err
			}
			last = ws.ID
		}
		owner := &store.User{Name: "owner"}
		if err := tx.Users().Create(owner); err != nil {
			return err
		}
		c := &store.Config{Name: "web", State: store.StateUndeployed, WorkspaceID: last, OwnerID: owner.ID}
		if err := tx.Configs().Create(c); err != nil {
			return err
		}
		hb.configID = c.ID
		for i := range 9 {
			o := &store.User{Name: fmt.Sprintf("other%d", i)}
			if err := tx.Users().Create(o); err != nil {
				return err
			}
			if err := tx.Shares().Put(&store.Share{ObjectKind: store.ObjectConfig, ObjectID: c.ID, UserID: o.ID, Level: store.ShareRead}); err != nil {
				return err
			}
		}
		return tx.Shares().Put(&store.Share{ObjectKind: store.ObjectConfig, ObjectID: c.ID, UserID: u.ID, Level: store.ShareChange})
	})
	if err != nil {
		b.Fatal(err)
	}
	return hb
}

// BenchmarkHotLookups measures each statement of the per-request path on
// its own, one read transaction per operation (Empty: the transaction
// alone). LoadAccess is what access.Checker.Check reads; GetConfig is
// what it read before (with ListSharesOf and LoadViewer). The context can be canceled, like a request's: the driver then
// watches it during every statement.
func BenchmarkHotLookups(b *testing.B) {
	hb := newHotBench(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, bc := range []struct {
		name string
		fn   func(tx store.Tx) error
	}{
		{"Empty", func(store.Tx) error { return nil }},
		{"GetToken", func(tx store.Tx) error { _, err := tx.Tokens().Get(hb.tokenID); return err }},
		{"GetUserByID", func(tx store.Tx) error { _, err := tx.Users().GetByID(hb.userID); return err }},
		{"LoadViewer", func(tx store.Tx) error {
			v, err := tx.Viewers().Load(hb.userID)
			if err == nil && len(v.Workspaces) != 20 {
				err = fmt.Errorf("%d memberships, want 20", len(v.Workspaces))
			}
			return err
		}},
		{"ObjectRef", func(tx store.Tx) error { _, err := tx.Objects().Ref(store.ObjectConfig, "web"); return err }},
		{"LoadAccess", func(tx store.Tx) error {
			a, err := tx.Objects().Access(hb.userID, store.ObjectConfig, "web")
			if err == nil && (len(a.Viewer.Workspaces) != 1 || len(a.Shares) != 1) {
				err = fmt.Errorf("%d memberships and %d shares, want 1 and 1", len(a.Viewer.Workspaces), len(a.Shares))
			}
			return err
		}},
		{"ListSharesOf", func(tx store.Tx) error {
			ss, err := tx.Shares().Of(store.ObjectConfig, hb.configID)
			if err == nil && len(ss) != 10 {
				err = fmt.Errorf("%d shares, want 10", len(ss))
			}
			return err
		}},
		{"GetConfig", func(tx store.Tx) error { _, err := tx.Configs().Get("web"); return err }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if err := hb.db.View(ctx, bc.fn); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAuthenticate is the store's part of authenticating one request
// by API token, as the api's authenticator does it: parse the token, then
// in one read transaction read the token by id, verify its secret
// (auth.VerifyToken: SHA-256 and a constant-time compare), check
// revocation and expiry, and read its user. The context can be canceled,
// like a request's. Issue 11's goal: under 50 µs.
func BenchmarkAuthenticate(b *testing.B) {
	hb := newHotBench(b)
	plaintext := hb.plaintext
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	now := time.Now()
	for b.Loop() {
		id, secret, err := auth.ParseToken(plaintext)
		if err != nil {
			b.Fatal(err)
		}
		var user *store.User
		err = hb.db.View(ctx, func(tx store.Tx) error {
			tk, err := tx.Tokens().Get(id)
			if err != nil {
				return err
			}
			switch {
			case tk.Kind != store.TokenAPI || !auth.VerifyToken(tk.Hash, secret):
				return errors.New("wrong secret")
			case !tk.RevokedAt.IsZero():
				return errors.New("revoked")
			case !tk.ExpiresAt.IsZero() && !now.Before(tk.ExpiresAt):
				return errors.New("expired")
			}
			user, err = tx.Users().GetByID(tk.UserID)
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		if user.ID != hb.userID || user.Disabled {
			b.Fatalf("authenticated as %+v, want user %d", user, hb.userID)
		}
	}
}
