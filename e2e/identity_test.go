package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// identityJSON is what config show -o json says of each VM's identity.
type identityJSON struct {
	VMs []struct {
		Name       string `json:"name"`
		Hostname   string `json:"hostname"`
		InstanceID string `json:"instance_id"`
		NICs       []struct {
			IP         string `json:"ip"`
			ExternalIP string `json:"external_ip"`
		} `json:"nics"`
	} `json:"vms"`
}

// seedFiles reads one file of every seed in the data dir's run
// directories (isoinfo, by its Joliet name), keyed by the seed's hostname.
func seedFiles(t *testing.T, data, file string) map[string]string {
	t.Helper()
	seeds, _ := filepath.Glob(filepath.Join(data, "run", "*", "seed.iso"))
	out := map[string]string{}
	for _, s := range seeds {
		meta, err := exec.Command("isoinfo", "-J", "-i", s, "-x", "/meta-data").Output()
		if err != nil {
			t.Fatalf("isoinfo %s meta-data: %v", s, err)
		}
		body, err := exec.Command("isoinfo", "-J", "-i", s, "-x", "/"+file).Output()
		if err != nil {
			t.Fatalf("isoinfo %s %s: %v", s, file, err)
		}
		_, host, _ := strings.Cut(string(meta), "local-hostname: ")
		out[strings.TrimSpace(host)] = string(body)
	}
	return out
}

// TestGuestIdentityOnClone: each guest reads its NoCloud seed and answers
// GET /identity with the hostname and instance-id config show lists (a
// set hostname, else VM-CONFIG); a template's --user-data is in its VMs'
// seeds; a linked clone, deployed fenced beside its running source, gets
// new instance-ids and hostnames of its own; a hostname set on the clone
// shows at its next deploy with the instance-id kept; undeploy removes
// the seeds.
func TestGuestIdentityOnClone(t *testing.T) {
	t.Parallel() // own namespace, subnet and data dir
	requireVMs(t)
	if _, err := exec.LookPath("isoinfo"); err != nil {
		t.Skip("isoinfo (genisoimage) not installed")
	}
	guest := guestImages(t)
	ns := newNetns(t)
	client := newNetns(t)
	data := t.TempDir()
	d := startDaemonIn(t, ns, data)
	deployFixture(t, d, guest, "10.84.0.0/24", "10.84.0.10-10.84.0.60")
	cmdline, err := os.ReadFile(filepath.Join(guest, "cmdline"))
	if err != nil {
		t.Fatal(err)
	}
	userData := "#cloud-config\nruncmd:\n  - [touch, /etc/stagehand-identity-e2e]\n"
	udFile := filepath.Join(t.TempDir(), "user-data")
	if err := os.WriteFile(udFile, []byte(userData), 0o600); err != nil {
		t.Fatal(err)
	}
	d.ok("template", "import", "ciguest", "--disk", filepath.Join(guest, "data.qcow2"), "--memory", "256",
		"--kernel", filepath.Join(guest, "vmlinuz"), "--initrd", filepath.Join(guest, "initrd.img"),
		"--cmdline", strings.TrimSpace(string(cmdline)), "--user-data", udFile)
	if out := d.ok("template", "show", "ciguest"); !strings.Contains(out, "user-data "+strconv.Itoa(len(userData))+" bytes") {
		t.Errorf("template show does not count the user-data:\n%s", out)
	}
	d.ok("config", "create", "orig", "--vm", "a=kguest,net=lan", "--vm", "b=ciguest,net=lan,hostname=db1.lab.test")
	d.ok("config", "deploy", "orig")
	attachClient(t, ns, client, "lan", "10.84.0.200/24")

	// identityOf asks each VM's guest, at addr(i), who it is, and checks
	// it against config show; it returns the instance-ids.
	identityOf := func(name string, addr func(i int) string, wantHost []string) []string {
		t.Helper()
		var c identityJSON
		d.json(&c, "config", "show", name)
		var ids []string
		for i, vm := range c.VMs {
			if vm.Hostname != wantHost[i] {
				t.Errorf("%s/%s: config show hostname %q, want %q", name, vm.Name, vm.Hostname, wantHost[i])
			}
			client.waitGuest(t, addr(i), 90*time.Second)
			kv, err := client.guest(addr(i), "/identity")
			if err != nil {
				t.Fatalf("%s/%s /identity: %v", name, vm.Name, err)
			}
			if kv["instance-id"] != vm.InstanceID || kv["hostname"] != vm.Hostname || kv["seed"] != "vdb" {
				t.Errorf("%s/%s guest says %v; config show: hostname %s instance-id %s (seed on vdb)", name, vm.Name, kv, vm.Hostname, vm.InstanceID)
			}
			ids = append(ids, vm.InstanceID)
		}
		return ids
	}
	orig := d.config("orig")
	ips := ipsOf(orig)
	origIDs := identityOf("orig", func(i int) string { return ips[i] }, []string{"a-orig", "db1.lab.test"})
	if out := d.ok("config", "show", "orig"); !strings.Contains(out, origIDs[0]) || !strings.Contains(out, "db1.lab.test") {
		t.Errorf("config show does not list the identities:\n%s", out)
	}

	// The user-data is in the seed of the template's VM, and only there.
	ud := seedFiles(t, data, "user-data")
	if ud["db1.lab.test"] != userData {
		t.Errorf("b's seed user-data %q, want the template's %q", ud["db1.lab.test"], userData)
	}
	if strings.Contains(ud["a-orig"], "stagehand-identity-e2e") || !strings.Contains(ud["a-orig"], "hostname: a-orig") {
		t.Errorf("a's seed user-data %q, want the default naming a-orig", ud["a-orig"])
	}

	// A linked clone, fenced beside its running source: new identities.
	d.ok("config", "undeploy", "orig")
	d.ok("config", "clone", "orig", "copy")
	d.ok("config", "deploy", "orig")
	d.ok("config", "deploy", "copy", "--fenced")
	var cp identityJSON
	d.json(&cp, "config", "show", "copy")
	external := func(i int) string { return cp.VMs[i].NICs[0].ExternalIP }
	copyIDs := identityOf("copy", external, []string{"a-copy", "b-copy"})
	for i := range copyIDs {
		if copyIDs[i] == origIDs[i] || copyIDs[i] == "" {
			t.Errorf("clone VM %d instance-id %q, want a new one (source's %s)", i, copyIDs[i], origIDs[i])
		}
	}
	// The source, running beside it, is still itself.
	if again := identityOf("orig", func(i int) string { return ips[i] }, []string{"a-orig", "db1.lab.test"}); strings.Join(again, " ") != strings.Join(origIDs, " ") {
		t.Errorf("source's instance-ids %v after the clone, want %v", again, origIDs)
	}

	// A hostname set on the clone shows at its next deploy; the
	// instance-id stays.
	d.ok("config", "undeploy", "copy")
	d.ok("vm", "set-hostname", "copy", "a", "renamed-a")
	d.ok("config", "deploy", "copy", "--fenced")
	d.json(&cp, "config", "show", "copy")
	if got := identityOf("copy", external, []string{"renamed-a", "b-copy"}); strings.Join(got, " ") != strings.Join(copyIDs, " ") {
		t.Errorf("clone's instance-ids %v after a redeploy, want kept %v", got, copyIDs)
	}
	if r := d.run("vm", "set-hostname", "copy", "a", "bad_name"); r.code == 0 || !strings.Contains(r.stderr, "RFC 1123") {
		t.Errorf("set-hostname bad_name: exit %d, %q; want refused naming RFC 1123", r.code, r.stderr)
	}

	d.ok("config", "undeploy", "copy")
	d.ok("config", "undeploy", "orig")
	if left, _ := filepath.Glob(filepath.Join(data, "run", "*", "seed.iso")); len(left) != 0 {
		t.Errorf("seeds left after undeploy: %q", left)
	}
	if r := d.run("doctor"); r.code != 0 {
		t.Errorf("doctor: %s%s", r.stdout, r.stderr)
	}
}
