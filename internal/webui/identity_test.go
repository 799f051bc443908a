package webui_test

import (
	"context"
	"strings"
	"testing"

	"stagehand/internal/webui"
)

// TestConfigPageShowsGuestIdentity: the configuration page shows each VM's
// hostname and cloud-init instance-id, the ones the lab has.
func TestConfigPageShowsGuestIdentity(t *testing.T) {
	c := newConsole(t, webui.Options{})
	cfg, err := c.Configs.Get(context.Background(), "web")
	if err != nil {
		t.Fatal(err)
	}
	admin := c.member(t, "arthur", "admin")
	page := c.page(t, admin, "/ui/configs/web")
	for _, vm := range cfg.VMs {
		if vm.Hostname == "" || vm.InstanceID == "" {
			t.Fatalf("VM %s: hostname %q instance-id %q", vm.Name, vm.Hostname, vm.InstanceID)
		}
		if want := vm.Hostname + " · " + vm.InstanceID; !strings.Contains(page, want) {
			t.Errorf("page lacks %q for VM %s", want, vm.Name)
		}
	}
}
