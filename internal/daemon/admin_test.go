package daemon

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"stagehand/internal/api/wire"
	"stagehand/internal/store"
	"stagehand/internal/store/sqlite"
)

// get sends GET path to the daemon over TCP with the bearer token tok
// ("" for none) and Host host ("" for the address), and returns the status.
func get(t *testing.T, addr, path, tok, host string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if host != "" {
		req.Host = host
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestFirstStartMakesTheAdminToken: the first start makes the user admin
// (a system administrator) and writes its API token to DATA/admin.token,
// 0600, never into the log; over TCP nothing is answered without a token
// (C1), everything with it; a second start on the same data dir keeps the
// user and the file as they are, and the token still works.
func TestFirstStartMakesTheAdminToken(t *testing.T) {
	requireQemuImg(t)
	data := t.TempDir()
	d := runDaemon(t, slog.LevelDebug, func(c *Config) { c.DataDir = data })
	file := filepath.Join(data, AdminTokenFile)
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatalf("no %s after the first start: %v", AdminTokenFile, err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s mode %v, want 0600", file, fi.Mode().Perm())
	}
	tok := d.adminToken(t)
	if !strings.HasPrefix(tok, "sht_") {
		t.Fatalf("%s holds %d bytes not starting sht_", file, len(tok))
	}
	if strings.Contains(d.logs.String(), tok) {
		t.Errorf("the admin token is in the log")
	}
	if !strings.Contains(d.logs.String(), "token_file="+file) {
		t.Errorf("the log does not name %s:\n%s", file, d.logs)
	}

	if status, body := get(t, d.addr, wire.APIPrefix+"/configs", "", ""); status != http.StatusUnauthorized {
		t.Errorf("GET /configs without a token over TCP: %d %s, want 401", status, body)
	}
	if status, body := get(t, d.addr, wire.APIPrefix+"/configs", tok, ""); status != http.StatusOK {
		t.Errorf("GET /configs with the admin token: %d %s", status, body)
	}
	if status, body := get(t, d.addr, wire.APIPrefix+"/status", tok, "evil.example"); status != http.StatusMisdirectedRequest {
		t.Errorf("GET /status with Host evil.example: %d %s, want 421 (DNS rebinding)", status, body)
	}
	if status, _ := get(t, d.addr, "/healthz", "", ""); status != http.StatusOK {
		t.Errorf("GET /healthz without a token: %d, want 200 (public)", status)
	}
	d.stop()

	d2 := runDaemon(t, slog.LevelInfo, func(c *Config) { c.DataDir = data })
	if again := d2.adminToken(t); again != tok {
		t.Errorf("the second start rewrote %s", file)
	}
	if status, body := get(t, d2.addr, wire.APIPrefix+"/status", tok, ""); status != http.StatusOK {
		t.Errorf("the first start's token after a restart: %d %s", status, body)
	}
	d2.stop()

	st, err := sqlite.Open(context.Background(), filepath.Join(data, StoreFile))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	users, tokens := 0, 0
	err = st.View(context.Background(), func(tx store.Tx) error {
		us, err := tx.Users().List()
		if err != nil {
			return err
		}
		for _, u := range us {
			if u.Name == AdminUser {
				users++
				if !u.SystemAdmin || u.PasswordHash != "" {
					t.Errorf("admin: system admin %v, password set %v; want a system admin without a password", u.SystemAdmin, u.PasswordHash != "")
				}
				ts, err := tx.Tokens().List(u.ID)
				if err != nil {
					return err
				}
				tokens = len(ts)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if users != 1 || tokens != 1 {
		t.Errorf("after two starts: %d admin users with %d tokens, want 1 and 1", users, tokens)
	}
}
