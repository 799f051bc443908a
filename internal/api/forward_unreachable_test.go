package api_test

import (
	"net/http"
	"strings"
	"testing"

	"stagehand/internal/api"
)

// TestForwardToUnreachableHost: h1, home of "web", stops listening but is
// not offline yet (its last heartbeat is recent). Through h2, `config
// show` (the store alone answers it) is served by h2 itself, and a deploy
// is answered 503 naming h1 as unreachable.
func TestForwardToUnreachableHost(t *testing.T) {
	th := newTwoHosts(t)
	admin := authHeader(th.l1.AdminToken(t))
	th.srv1.Close() // connections to h1's address are refused from now on
	status, hdr, body := hostSend(t, th.srv2, "GET", "/api/v1/configs/web", "", admin...)
	if status != http.StatusOK || hdr.Get(api.HostHeader) != "h2" || !strings.Contains(body, `"web"`) {
		t.Fatalf("config show with h1 unreachable: %d %s (host %q), want 200 from h2", status, body, hdr.Get(api.HostHeader))
	}
	status, _, body = hostSend(t, th.srv2, "POST", "/api/v1/configs/web/deploy", `{}`, admin...)
	if status != http.StatusServiceUnavailable || !strings.Contains(body, `host \"h1\"`) || !strings.Contains(body, "is unreachable") {
		t.Fatalf("deploy with h1 unreachable: %d %s, want 503 naming h1 as unreachable", status, body)
	}
}
