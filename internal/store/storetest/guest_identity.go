package storetest

import (
	"testing"

	"stagehand/internal/store"
)

// testGuestIdentity: a VM's instance-id and hostname and a template's
// user-data and seed opt-out are kept as written by Create, and UpdateVM
// changes the VM's (issue 15: fresh guest identity).
func testGuestIdentity(t *testing.T, s store.Store) {
	userData := []byte("#cloud-config\nruncmd: [\"echo \\u00fc\"]\n\x00binary too")
	var plain, seeded store.Template
	var c store.Config
	update(t, s, func(tx store.Tx) error {
		plain = store.Template{Name: "plain", CPUs: 1, MemoryMiB: 64, NoSeed: true}
		if err := tx.Templates().Create(&plain); err != nil {
			return err
		}
		seeded = store.Template{Name: "seeded", CPUs: 1, MemoryMiB: 64, UserData: userData}
		if err := tx.Templates().Create(&seeded); err != nil {
			return err
		}
		c = store.Config{Name: "ident", State: store.StateUndeployed, VMs: []store.VM{
			{Name: "a", CPUs: 1, MemoryMiB: 64, State: store.StateUndeployed, InstanceID: "i-00000000000000aa", Hostname: "db.example"},
			{Name: "b", CPUs: 1, MemoryMiB: 64, State: store.StateUndeployed, InstanceID: "i-00000000000000bb"},
		}}
		return tx.Configs().Create(&c)
	})
	view(t, s, func(tx store.Tx) error {
		got, err := tx.Templates().Get("plain")
		if err != nil {
			return err
		}
		if !got.NoSeed || got.UserData != nil {
			t.Errorf("template without user-data, opted out: NoSeed %v, UserData %q", got.NoSeed, got.UserData)
		}
		got, err = tx.Templates().GetByID(seeded.ID)
		if err != nil {
			return err
		}
		if got.NoSeed || string(got.UserData) != string(userData) {
			t.Errorf("template with user-data: NoSeed %v, UserData %q, want %q", got.NoSeed, got.UserData, userData)
		}
		cfg, err := tx.Configs().Get("ident")
		if err != nil {
			return err
		}
		diff(t, "VMs' instance-ids and hostnames after Create",
			[][2]string{{"i-00000000000000aa", "db.example"}, {"i-00000000000000bb", ""}},
			[][2]string{{cfg.VMs[0].InstanceID, cfg.VMs[0].Hostname}, {cfg.VMs[1].InstanceID, cfg.VMs[1].Hostname}})
		return nil
	})
	update(t, s, func(tx store.Tx) error {
		v := c.VMs[1]
		v.InstanceID, v.Hostname = "i-00000000000000cc", "b-renamed"
		return tx.Configs().UpdateVM(&v)
	})
	view(t, s, func(tx store.Tx) error {
		cfg, err := tx.Configs().GetByID(c.ID)
		if err != nil {
			return err
		}
		if v := cfg.VMs[1]; v.InstanceID != "i-00000000000000cc" || v.Hostname != "b-renamed" {
			t.Errorf("after UpdateVM: instance-id %q hostname %q", v.InstanceID, v.Hostname)
		}
		if v := cfg.VMs[0]; v.InstanceID != "i-00000000000000aa" || v.Hostname != "db.example" {
			t.Errorf("UpdateVM of b changed a: instance-id %q hostname %q", v.InstanceID, v.Hostname)
		}
		return nil
	})
}
