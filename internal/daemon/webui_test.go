package daemon

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

// TestServesTheWebConsole: the daemon serves the web console on its API's
// origin: "/" sends a browser without a session to the sign-in page, which
// is public; with the administrator's token the configurations page
// answers; the API still answers JSON beside it.
func TestServesTheWebConsole(t *testing.T) {
	d := runDaemon(t, slog.LevelInfo, nil)
	base := "http://" + d.addr
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(path, token string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, string(b)
	}
	res, _ := get("/", "")
	if res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(res.Header.Get("Location"), "/ui/login?next=") {
		t.Errorf("GET / = %d Location %q, want 303 to the sign-in page", res.StatusCode, res.Header.Get("Location"))
	}
	res, body := get("/ui/login", "")
	if res.StatusCode != http.StatusOK || !strings.Contains(body, `id="signin"`) {
		t.Errorf("GET /ui/login = %d: %.200s", res.StatusCode, body)
	}
	res, body = get("/ui/configs", d.adminToken(t))
	if res.StatusCode != http.StatusOK || !strings.Contains(body, `data-live-list="config"`) {
		t.Errorf("GET /ui/configs as the administrator = %d: %.200s", res.StatusCode, body)
	}
	res, _ = get("/api/v1/configs", "")
	if res.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
		t.Errorf("GET /api/v1/configs without credentials = %d %s, want a JSON 401", res.StatusCode, res.Header.Get("Content-Type"))
	}
}
