package webui_test

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"stagehand/internal/lab"
	"stagehand/internal/store"
	"stagehand/internal/webui"
)

// TestConfigPageShowsWhatADeleteFreesAndSetIP: the page of a linked clone
// says what deleting it frees, the number the lab's space model gives
// (GET /configs/{name}/space), equal to its own writable top's size; in
// the SVG only that top is marked freed, the shared frozen layers kept.
// Each NIC of the fence map offers config.set-ip to a workspace admin,
// its dialog a PUT of the NIC's ip with the `config set-ip` CLI line; a
// viewer sees the page without it.
func TestConfigPageShowsWhatADeleteFreesAndSetIP(t *testing.T) {
	c := newConsole(t, webui.Options{})
	ctx := context.Background()
	if _, err := c.Configs.LinkedClone(ctx, "web", "web-2", lab.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	chain, err := c.Configs.DiskChain(ctx, "web-2", "vm1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(chain) < 2 || chain[0].Frozen {
		t.Fatalf("chain of a linked clone: %+v", chain)
	}
	sp, err := c.Leases.Space(ctx, "web-2")
	if err != nil {
		t.Fatal(err)
	}
	if sp.Frees != chain[0].ActualSize || len(sp.Layers) != 1 || sp.Layers[0].ID != chain[0].ID {
		t.Fatalf("space of web-2: %+v; want its top %d of %d bytes only", sp, chain[0].ID, chain[0].ActualSize)
	}

	admin := c.member(t, "arthur", "admin")
	page := c.page(t, admin, "/ui/configs/web-2")
	var frees []string
	for _, p := range elements(t, page, "p") {
		if v, ok := p["data-frees"]; ok {
			frees = append(frees, v)
			if !strings.Contains(p["#text"], "Deleting this configuration frees") {
				t.Errorf("the frees line says %q", p["#text"])
			}
		}
	}
	if len(frees) != 1 || frees[0] != strconv.FormatInt(sp.Frees, 10) {
		t.Errorf("page says a delete frees %v bytes, the lab %d", frees, sp.Frees)
	}
	marks := map[string]string{}
	for _, g := range elements(t, page, "g") {
		if n := g["data-name"]; n != "" {
			marks[n] = g["data-freed"]
			if (g["data-freed"] == "true") != strings.Contains(g["class"], "freed") || (g["data-freed"] == "true") != strings.Contains(g["#text"], "freed by deleting") {
				t.Errorf("layer %s: data-freed %s, class %q, text %q disagree", n, g["data-freed"], g["class"], g["#text"])
			}
		}
	}
	for i, l := range chain {
		want := strconv.FormatBool(i == 0)
		if got := marks[baseOf(l.Path)]; got != want {
			t.Errorf("layer %d (%s) marked freed=%q, want %s", i, l.Path, got, want)
		}
	}

	if !actions(t, page)["config.set-ip"] {
		t.Fatalf("the workspace admin is not offered config.set-ip on an undeployed configuration")
	}
	var found bool
	for _, f := range elements(t, page, "form") {
		if f["data-action-name"] != "config.set-ip" {
			continue
		}
		found = true
		if f["data-api-method"] != "PUT" || f["data-api-path"] != "/api/v1/configs/web-2/vms/vm1/nics/0/ip" ||
			f["data-cli"] != "stagehand config set-ip web-2 vm1 0 {ip}" {
			t.Errorf("set-ip dialog: %s %s, CLI %q", f["data-api-method"], f["data-api-path"], f["data-cli"])
		}
	}
	if !found {
		t.Errorf("no set-ip dialog on the page")
	}
	var ipField bool
	for _, in := range elements(t, page, "input") {
		if in["data-field"] == "ip" {
			ipField = true
		}
	}
	if !ipField {
		t.Errorf("the set-ip dialog has no ip field")
	}

	viewer := c.member(t, "vera", "viewer")
	for _, p := range []string{"/ui/configs/web-2", "/ui/configs/web-2/part/vms"} {
		body := c.page(t, viewer, p)
		if actions(t, body)["config.set-ip"] || strings.Contains(body, "config set-ip") {
			t.Errorf("the viewer is offered config.set-ip on %s", p)
		}
	}
	if !strings.Contains(c.page(t, viewer, "/ui/configs/web-2/part/disks"), "Deleting this configuration frees") {
		t.Errorf("the viewer's disks part does not say what a delete frees")
	}
}

func baseOf(p string) string { return p[strings.LastIndex(p, "/")+1:] }

// TestConfigPageNamesEachVMsHost: a VM that runs on another host than its
// configuration's home (a spread deployment's member VM) says which host
// on the page; VMs on the home say nothing more.
func TestConfigPageNamesEachVMsHost(t *testing.T) {
	c := newConsole(t, webui.Options{})
	viewer := c.member(t, "vera", "viewer")
	if strings.Contains(c.page(t, viewer, "/ui/configs/web/part/vms"), `data-field="vm-host"`) {
		t.Fatalf("a configuration on one host names its VMs' host")
	}
	err := c.Store().Update(context.Background(), func(tx store.Tx) error {
		cfg, err := tx.Configs().Get("web")
		if err != nil {
			return err
		}
		cfg.Host = "h1"
		if err := tx.Configs().Update(cfg); err != nil {
			return err
		}
		cfg.VMs[0].Host = "h2"
		return tx.Configs().UpdateVM(&cfg.VMs[0])
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/ui/configs/web", "/ui/configs/web/part/vms"} {
		body := c.page(t, viewer, p)
		if n := strings.Count(body, `data-field="vm-host"`); n != 1 || !strings.Contains(body, "on host h2") {
			t.Errorf("%s: %d VM host marks, want one saying on host h2", p, n)
		}
	}
}
