package webui_test

import (
	"context"
	"net/http"
	"testing"

	"stagehand/internal/api/apitest"
	"stagehand/internal/webui"
)

// TestConfigPageSnapshots: the configuration page has a snapshot section
// (also served alone as a part) with the tree, the current point marked,
// and for an administrator the actions to take a snapshot and to revert
// to, clone from and delete each; a viewer is offered none of them.
func TestConfigPageSnapshots(t *testing.T) {
	c := newConsole(t, webui.Options{})
	c.User(t, "admin", true)
	admin := c.Token(t, "admin", apitest.TokenOptions{Session: true})
	viewer := c.member(t, "vera", "viewer")
	ctx := context.Background()
	for _, name := range []string{"s1", "s2"} {
		if _, err := c.Service.Snapshots.Create(ctx, "web", name, false); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Service.Snapshots.Revert(ctx, "web", "s1"); err != nil {
		t.Fatal(err)
	}
	res, page := c.get(t, admin, "/ui/configs/web/part/snapshots")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("snapshot part = %d: %s", res.StatusCode, page)
	}
	rows, _ := listRows(t, page)
	if len(rows) != 2 || rows[0] != "s1" || rows[1] != "s2" {
		t.Errorf("snapshot rows %v; want s1, s2", rows)
	}
	current := 0
	for _, tr := range elements(t, "<table><tbody>"+page+"</tbody></table>", "tr") {
		if _, ok := tr["data-current"]; ok {
			current++
			if tr["data-name"] != "s1" {
				t.Errorf("current snapshot %q, want s1", tr["data-name"])
			}
		}
	}
	if current != 1 {
		t.Errorf("%d rows marked current, want 1", current)
	}
	got := actions(t, page)
	for _, a := range []string{"config.snapshot", "config.snapshot.revert", "config.snapshot.clone", "config.snapshot.delete"} {
		if !got[a] {
			t.Errorf("the administrator is not offered %s", a)
		}
	}
	_, full := c.get(t, admin, "/ui/configs/web")
	if !actions(t, full)["config.snapshot.revert"] {
		t.Error("the configuration page has no snapshot section")
	}
	_, page = c.get(t, viewer, "/ui/configs/web/part/snapshots")
	for a := range actions(t, page) {
		t.Errorf("the viewer is offered %s", a)
	}
}
