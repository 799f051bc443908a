package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"stagehand/internal/api"
	"stagehand/internal/auth"
	"stagehand/internal/errdefs"
	"stagehand/internal/store"
)

// AdminUser is the system administrator the first start makes, and
// AdminTokenFile the file in the data dir that holds its API token (0600):
// the credential of TCP clients until real users exist.
const (
	AdminUser      = "admin"
	AdminTokenFile = "admin.token"
)

// ensureAdmin makes, when the store has no user AdminUser, that user (a
// system administrator without a password, default workspace
// default/main) and an API token for it, written to DATA/AdminTokenFile.
// On later starts it changes nothing: a token revoked or a file removed
// stays so. The token is never logged, only the file's path.
func ensureAdmin(ctx context.Context, st store.Store, dataDir string, log *slog.Logger) error {
	file := filepath.Join(dataDir, AdminTokenFile)
	made := false
	err := st.Update(ctx, func(tx store.Tx) error {
		if _, err := tx.Users().Get(AdminUser); err == nil {
			return nil
		} else if !errors.Is(err, errdefs.ErrNotFound) {
			return err
		}
		org, err := tx.Orgs().Get(store.DefaultOrg)
		if err != nil {
			return fmt.Errorf("organization %s: %w", store.DefaultOrg, err)
		}
		ws, err := tx.Workspaces().Get(org.ID, store.MainWorkspace)
		if err != nil {
			return fmt.Errorf("workspace %s/%s: %w", store.DefaultOrg, store.MainWorkspace, err)
		}
		u := &store.User{Name: AdminUser, DisplayName: "Administrator", SystemAdmin: true, DefaultWorkspaceID: ws.ID}
		if err := tx.Users().Create(u); err != nil {
			return err
		}
		plain, id, hash := auth.NewToken()
		if err := tx.Tokens().Create(&store.Token{ID: id, UserID: u.ID, Hash: hash, Kind: store.TokenAPI,
			Name: "first start (" + AdminTokenFile + ")", ExpiresAt: time.Now().Add(api.MaxTokenLifetime)}); err != nil {
			return err
		}
		// Written inside the transaction: a file that cannot be written
		// leaves no user behind, so the next start tries again.
		if err := writePrivateFile(file, plain+"\n"); err != nil {
			return err
		}
		made = true
		return nil
	})
	if err != nil {
		if made {
			os.Remove(file)
		}
		return fmt.Errorf("first administrator %q: %w", AdminUser, err)
	}
	if made {
		log.Info("made the system administrator and its API token (send it as a bearer token over TCP: --token-file)",
			"user", AdminUser, "token_file", file)
	} else if _, err := os.Stat(file); err == nil {
		log.Info("the system administrator's API token", "user", AdminUser, "token_file", file)
	}
	return nil
}

// writePrivateFile creates file (which must not exist) 0600 with content.
func writePrivateFile(file, content string) error {
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		// Left by a start whose transaction failed after writing it: it
		// names no token, so it is replaced.
		if err = os.Remove(file); err == nil {
			f, err = os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		}
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", file, err)
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		os.Remove(file)
		return fmt.Errorf("write %s: %w", file, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(file)
		return fmt.Errorf("write %s: %w", file, err)
	}
	return nil
}
