package api_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"stagehand/internal/api"
	"stagehand/internal/api/apitest"
	"stagehand/internal/api/wire"
	"stagehand/internal/hostlink"
	"stagehand/internal/lab"
	"stagehand/internal/store"
)

// Two hosts of one installation in one process: two labs over one store,
// each behind its own API handler on 127.0.0.1, each knowing the other
// through the hosts table, as two daemons on PostgreSQL do. Configuration
// "web" lives on h1; the tests call h2.
type twoHosts struct {
	l1, l2     *apitest.Lab
	srv1, srv2 *httptest.Server
	cred1      string
}

func newTwoHosts(t *testing.T) *twoHosts {
	t.Helper()
	l1 := apitest.New(t, func(o *lab.Options) { o.HostName = "h1" }).Seed(t)
	return serveTwoHosts(t, l1, l1.OtherHost(t, "h2"))
}

// serveTwoHosts serves l1 as h1 and l2 as h2, and makes h1 the home of
// "web".
func serveTwoHosts(t *testing.T, l1, l2 *apitest.Lab) *twoHosts {
	t.Helper()
	th := &twoHosts{l1: l1, l2: l2}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	verifier := hostlink.VerifierFunc(func(ctx context.Context, host string) ([]byte, error) {
		var sum []byte
		err := l1.Store().View(ctx, func(tx store.Tx) error {
			var err error
			sum, err = tx.Hosts().SecretHash(host)
			return err
		})
		return sum, err
	})
	for i, l := range []*apitest.Lab{l1, l2} {
		name := "h" + strconv.Itoa(i+1)
		h := api.NewLabHandler(l.API(), log)
		srv := httptest.NewServer(h)
		t.Cleanup(func() { h.Drain(); srv.Close() })
		cred, hash, err := hostlink.NewCredential(name)
		if err != nil {
			t.Fatal(err)
		}
		err = l1.Store().Update(context.Background(), func(tx store.Tx) error {
			return tx.Hosts().Register(&store.Host{Name: name, AdvertiseURL: srv.URL, SecretHash: hash, StartedAt: time.Now(), LastSeen: time.Now()})
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := h.SetHostLink(api.HostLink{Self: name, Credential: cred, Verifier: verifier, Homes: api.StoreHomes{Store: l1.Store()}}); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			th.srv1, th.cred1 = srv, cred
		} else {
			th.srv2 = srv
		}
	}
	err := l1.Store().Update(context.Background(), func(tx store.Tx) error {
		c, err := tx.Configs().Get("web")
		if err != nil {
			return err
		}
		c.Host = "h1"
		return tx.Configs().Update(c)
	})
	if err != nil {
		t.Fatal(err)
	}
	return th
}

// hostSend sends a request with headers (name, value pairs) and returns the
// answer's status, headers and body.
func hostSend(t *testing.T, srv *httptest.Server, method, path, body string, headers ...string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func authHeader(tok string) []string { return []string{"Authorization", "Bearer " + tok} }

// A configuration's requests sent to another host run on its home host,
// deploy included: its VM runs on h1's machine, none on h2's.
func TestForwardRunsOnTheHomeHost(t *testing.T) {
	th := newTwoHosts(t)
	admin := authHeader(th.l1.AdminToken(t))

	status, hdr, body := hostSend(t, th.srv2, "GET", "/api/v1/configs/web", "", admin...)
	if status != http.StatusOK || hdr.Get(api.HostHeader) != "h1" {
		t.Fatalf("config show through h2: %d %s host %q, want 200 from h1", status, body, hdr.Values(api.HostHeader))
	}
	// A route of no configuration is answered where it is asked.
	if _, hdr, _ := hostSend(t, th.srv2, "GET", "/api/v1/templates", "", admin...); hdr.Get(api.HostHeader) != "h2" {
		t.Errorf("template list answered by %q, want h2", hdr.Values(api.HostHeader))
	}

	status, hdr, body = hostSend(t, th.srv2, "POST", "/api/v1/configs/web/deploy", `{}`, admin...)
	if status >= 300 || hdr.Get(api.HostHeader) != "h1" {
		t.Fatalf("deploy through h2: %d %s (host %q)", status, body, hdr.Get(api.HostHeader))
	}
	if on1, on2 := th.l1.Host.Hypervisor.Running(), th.l2.Host.Hypervisor.Running(); len(on1) != 1 || len(on2) != 0 {
		t.Fatalf("running on h1 %v, on h2 %v; want the one VM on h1 only", on1, on2)
	}

	// The serial console through h2 reaches the VM on h1 (an echoing
	// console socket where QEMU's would be).
	th.l1.EchoConsole(t, "web", "vm1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	u := "ws" + strings.TrimPrefix(th.srv2.URL, "http") + "/api/v1/configs/web/vms/vm1/serial/ws"
	c, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{Subprotocols: []string{wire.ConsoleSubprotocol},
		HTTPHeader: http.Header{"Authorization": {admin[1]}}})
	if err != nil {
		t.Fatalf("serial console through h2: %v (%v)", err, resp)
	}
	defer c.CloseNow()
	assertEchoedBy(ctx, t, c, resp, "h1", "hello over two hosts")
}

// assertEchoedBy checks that the console c, opened with answer resp, was
// served by host and echoes msg (an echoing console socket where QEMU's
// would be).
func assertEchoedBy(ctx context.Context, t *testing.T, c *websocket.Conn, resp *http.Response, host, msg string) {
	t.Helper()
	if resp.Header.Get(api.HostHeader) != host {
		t.Errorf("console served by %q, want %s", resp.Header.Values(api.HostHeader), host)
	}
	if err := c.Write(ctx, websocket.MessageBinary, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	var got []byte
	for !bytes.Contains(got, []byte(msg)) {
		typ, b, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("console read after %q: %v", got, err)
		}
		if typ == websocket.MessageBinary {
			got = append(got, b...)
		}
	}
}

// A forwarded request is authorized as its caller, on both hosts: a user
// with no right on the configuration is refused through h2 as through h1,
// and forwarding never turns a refusal into a success.
func TestForwardAuthorizesAsTheCaller(t *testing.T) {
	th := newTwoHosts(t)
	eve := authHeader(th.l1.Token(t, "eve", apitest.TokenOptions{}))
	s1, _, b1 := hostSend(t, th.srv1, "GET", "/api/v1/configs/web", "", eve...)
	s2, _, b2 := hostSend(t, th.srv2, "GET", "/api/v1/configs/web", "", eve...)
	if s1 < 400 || s1 != s2 {
		t.Fatalf("eve on h1: %d %s; through h2: %d %s; want the same refusal", s1, b1, s2, b2)
	}
	if s, _, b := hostSend(t, th.srv2, "POST", "/api/v1/configs/web/deploy", `{}`, eve...); s != s1 {
		t.Fatalf("eve deploys through h2: %d %s, want %d", s, b, s1)
	}
	if running := th.l1.Host.Hypervisor.Running(); len(running) != 0 {
		t.Fatalf("eve's refused deploy runs %v", running)
	}
	// The home host decides again: a host credential acting for eve gets
	// what eve gets.
	eveID := strconv.FormatInt(th.l1.User(t, "eve", false).ID, 10)
	if s, _, b := hostSend(t, th.srv1, "POST", "/api/v1/configs/web/deploy", `{}`, "Authorization", "Bearer "+th.cred1, api.ActingUserHeader, eveID); s != s1 {
		t.Fatalf("h1 asked by a host for eve: %d %s, want %d", s, b, s1)
	}
}

// The acting-user header is believed only with a verified host
// credential: from a user's token it is refused, and a host credential
// that is wrong, or that names no user, gets nothing of the API.
func TestActingUserForgeryRefused(t *testing.T) {
	th := newTwoHosts(t)
	eve := th.l1.Token(t, "eve", apitest.TokenOptions{})
	admin := th.l1.User(t, "admin", true)
	acting := strconv.FormatInt(admin.ID, 10)
	forged, _, _ := hostlink.NewCredential("h2") // right form, wrong secret
	for _, tc := range []struct {
		name    string
		headers []string
		want    int
	}{
		{"user token acting as the admin", []string{"Authorization", "Bearer " + eve, api.ActingUserHeader, acting}, http.StatusForbidden},
		{"no credential acting as root", []string{api.ActingUserHeader, "root"}, http.StatusForbidden},
		{"restriction header from a user", []string{"Authorization", "Bearer " + eve, api.ActingRestrictionHeader, "0:admin"}, http.StatusForbidden},
		{"forged host credential", []string{"Authorization", "Bearer " + forged, api.ActingUserHeader, acting}, http.StatusUnauthorized},
		{"host credential of no host", []string{"Authorization", "Bearer " + strings.Replace(forged, "h2", "h9", 1), api.ActingUserHeader, acting}, http.StatusUnauthorized},
		{"host credential without acting user", []string{"Authorization", "Bearer " + th.cred1}, http.StatusForbidden},
		{"host credential acting as nobody", []string{"Authorization", "Bearer " + th.cred1, api.ActingUserHeader, "999999"}, http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, _, body := hostSend(t, th.srv1, "GET", "/api/v1/configs/web", "", tc.headers...)
			if status != tc.want {
				t.Fatalf("%d %s, want %d", status, body, tc.want)
			}
		})
	}
	// The real credential with the admin as acting user is the admin.
	if s, _, b := hostSend(t, th.srv1, "GET", "/api/v1/configs/web", "", "Authorization", "Bearer "+th.cred1, api.ActingUserHeader, acting); s != http.StatusOK {
		t.Fatalf("host credential acting as the admin: %d %s", s, b)
	}
}

// A job started on h1 through h2 is named h1:ID to the client, and
// followed through h2 by that name.
func TestForwardedJobCarriesItsHost(t *testing.T) {
	th := newTwoHosts(t)
	admin := authHeader(th.l1.AdminToken(t))
	th.l1.Disks.Hold()
	status, hdr, body := hostSend(t, th.srv2, "POST", "/api/v1/configs/web/clone", `{"name": "web2", "mode": "full"}`, admin...)
	if status != http.StatusAccepted {
		t.Fatalf("full clone through h2: %d %s", status, body)
	}
	j := decodeAs[wire.Job](t, []byte(body))
	if !strings.HasPrefix(j.ID, "h1:") || hdr.Get("Location") != "/api/v1/jobs/"+j.ID {
		t.Fatalf("job %q at %q, want h1:ID at /api/v1/jobs/h1:ID", j.ID, hdr.Get("Location"))
	}
	th.l1.Disks.Release()
	status, hdr, body = hostSend(t, th.srv2, "GET", hdr.Get("Location")+"/wait?timeout=10s", "", admin...)
	j = decodeAs[wire.Job](t, []byte(body))
	if status != http.StatusOK || j.State != wire.JobSucceeded || !strings.HasPrefix(j.ID, "h1:") || hdr.Get(api.HostHeader) != "h1" {
		t.Fatalf("wait through h2: %d %s (host %q)", status, body, hdr.Get(api.HostHeader))
	}
	// h2 has no such job of its own.
	local := strings.TrimPrefix(j.ID, "h1:")
	if s, _, _ := hostSend(t, th.srv2, "GET", "/api/v1/jobs/"+local, "", admin...); s != http.StatusNotFound {
		t.Errorf("h2's own job %s: %d, want 404", local, s)
	}
}

// A configuration whose home host is offline is answered 503 naming the
// host and when it was last seen.
func TestForwardToOfflineHostIs503(t *testing.T) {
	th := newTwoHosts(t)
	admin := authHeader(th.l1.AdminToken(t))
	seen := time.Now().Add(-time.Hour)
	if err := th.l1.Store().Update(context.Background(), func(tx store.Tx) error { return tx.Hosts().Touch("h1", seen) }); err != nil {
		t.Fatal(err)
	}
	status, _, body := hostSend(t, th.srv2, "POST", "/api/v1/configs/web/deploy", `{}`, admin...)
	if status != http.StatusServiceUnavailable || !strings.Contains(body, `host \"h1\" is offline`) || !strings.Contains(body, seen.UTC().Format(time.RFC3339)) {
		t.Fatalf("deploy with h1 offline: %d %s, want 503 naming h1 and %s", status, body, seen.UTC().Format(time.RFC3339))
	}
	// What the store alone answers is still answered, by h2.
	if status, hdr, body := hostSend(t, th.srv2, "GET", "/api/v1/configs/web", "", admin...); status != http.StatusOK || hdr.Get(api.HostHeader) != "h2" {
		t.Fatalf("config show with h1 offline: %d %s (host %q), want 200 from h2", status, body, hdr.Get(api.HostHeader))
	}
}
