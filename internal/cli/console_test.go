package cli_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"stagehand/internal/api/wire"
)

// TestConsoleLinkCommands: a link is made (its URL on this server, with
// its token), listed without its token, revoked; root on the socket has
// no user to own one; a screenshot of a VM without a screen says so and
// leaves no file.
func TestConsoleLinkCommands(t *testing.T) {
	e := newEnv(t)
	e.run("config", "deploy", "web")
	env := map[string]string{"STAGEHAND_SERVER": e.url, "STAGEHAND_TOKEN": e.lab.AdminToken(t)}

	out, errOut, code := runEnv(env, "vm", "console-link", "create", "web", "vm1", "--expires-in", "2h", "-o", "json")
	var l wire.ConsoleLink
	if code != 0 || json.Unmarshal([]byte(out), &l) != nil {
		t.Fatalf("create: exit %d %s %s", code, out, errOut)
	}
	if !strings.HasPrefix(l.URL, e.url+"/console/web/vm1?console_link=sht_") || l.Token == "" || l.State != wire.TokenActive {
		t.Errorf("link %+v", l)
	}
	out, _, code = runEnv(env, "vm", "console-link", "list")
	if code != 0 || !strings.Contains(out, l.ID) || !strings.Contains(out, "web/vm1") || strings.Contains(out, l.Token) {
		t.Errorf("list: exit %d\n%s", code, out)
	}
	if _, errOut, code := runEnv(env, "vm", "console-link", "revoke", l.ID); code != 0 {
		t.Errorf("revoke: exit %d %s", code, errOut)
	}
	out, _, _ = runEnv(env, "vm", "console-link", "list", "-o", "json")
	var ls []wire.ConsoleLink
	if json.Unmarshal([]byte(out), &ls) != nil || len(ls) != 1 || ls[0].State != wire.TokenRevoked {
		t.Errorf("after revoke: %s", out)
	}
	if _, errOut, code := runEnv(env, "vm", "console-link", "create", "web", "vm1", "--expires-in", "40d"); code == 0 {
		t.Errorf("a 40-day link: exit %d %s", code, errOut)
	}
	// Requests without credentials act as root on the socket: no user.
	if _, errOut, code := e.run("vm", "console-link", "create", "web", "vm1"); code == 0 || !strings.Contains(errOut, "root") {
		t.Errorf("root's link: exit %d %s", code, errOut)
	}

	file := filepath.Join(t.TempDir(), "screen.png")
	if _, errOut, code := e.run("vm", "screenshot", "web", "vm1", file); code == 0 || !strings.Contains(errOut, "no screen") {
		t.Errorf("screenshot of a VM without a screen: exit %d %s", code, errOut)
	}
	if _, err := os.Stat(file); err == nil {
		t.Errorf("a failed screenshot left %s", file)
	}
}
