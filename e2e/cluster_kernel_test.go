package e2e

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"stagehand/internal/hostlink"
)

// TestKernelBootConfigurationMovesToAnotherHost (issue 13): a
// configuration of the demo's kernel-boot template (--kernel, --initrd,
// --cmdline), made on h1 where the template was imported, deployed with
// --host h2: h2 pulls the template's kernel and initrd by the hashes
// recorded at import (from h1's host server, verified), with the chain,
// and the guest boots from them on h2 and answers.
func TestKernelBootConfigurationMovesToAnotherHost(t *testing.T) {
	guest := guestImages(t)
	c := newCluster(t, 2)
	logOnFailure(t, c)
	h1, h2 := c.host(1), c.host(2)
	cmdline, err := os.ReadFile(filepath.Join(guest, "cmdline"))
	if err != nil {
		t.Fatal(err)
	}
	h1.ok("template", "import", "kguest", "--disk", filepath.Join(guest, "data.qcow2"), "--memory", "256",
		"--kernel", filepath.Join(guest, "vmlinuz"), "--initrd", filepath.Join(guest, "initrd.img"),
		"--cmdline", strings.TrimSpace(string(cmdline)))
	h1.ok("network", "create", "lan", "--subnet", "10.73.0.0/24", "--pool", "10.73.0.10-10.73.0.50")
	h1.ok("config", "create", "kc", "--vm", "vm=kguest,net=lan")

	var got placementJSON
	h1.json(&got, "config", "deploy", "kc", "--host", "h2")
	if got.State != "deployed" || got.Host != "h2" || got.Placement == nil || !got.Placement.Moved {
		t.Fatalf("deploy kc --host h2: %+v", got)
	}
	// The boot files are on h2 now, byte for byte h1's, pulled from h1.
	files, err := filepath.Glob(filepath.Join(h1.dataDir, "files", "t-*"))
	if err != nil || len(files) != 2 {
		t.Fatalf("h1's boot files: %v (%v), want the kernel and the initrd", files, err)
	}
	log := h2.logTail(3000)
	for _, f := range files {
		rel := filepath.Join("files", filepath.Base(f))
		want, _, err := hostlink.HashFile(context.Background(), f)
		if err != nil {
			t.Fatal(err)
		}
		have, _, err := hostlink.HashFile(context.Background(), filepath.Join(h2.dataDir, rel))
		if err != nil || have != want {
			t.Errorf("h2's %s: sha256 %s (%v), want h1's %s", rel, have, err, want)
		}
		if !regexp.MustCompile(`msg="pulled layer" layer=` + regexp.QuoteMeta(rel) + ` from=h1 .*sha256=` + want).MatchString(log) {
			t.Errorf("h2's log shows no verified pull of %s from h1", rel)
		}
	}
	ip := h2.config("kc").VMs[0].NICs[0].IP
	h2.ns.waitGuest(t, ip, 180*time.Second)
	if pids := h1.ns.qemuPIDs(t); len(pids) != 0 {
		t.Errorf("QEMU runs on h1: %v", pids)
	}
	h2.ok("config", "undeploy", "kc")
}
