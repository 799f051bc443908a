package seed

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"stagehand/internal/errdefs"
)

func validSpec() Spec {
	return Spec{
		InstanceID: "i-0123456789abcdef",
		Hostname:   "web-1",
		NICs: []NIC{
			{MAC: "52:54:00:AA:00:01", Mode: ModeDHCP},
			{
				MAC: "52:54:00:aa:00:02", Mode: ModeStatic,
				Addr:    netip.MustParsePrefix("10.20.0.5/24"),
				Gateway: netip.MustParseAddr("10.20.0.1"),
				DNS:     []netip.Addr{netip.MustParseAddr("10.20.0.1"), netip.MustParseAddr("10.20.0.2")},
			},
		},
	}
}

func TestValidate(t *testing.T) {
	long := strings.Repeat("a", 64)
	tests := []struct {
		name   string
		change func(*Spec)
		want   string // substring of the error; "" means valid
	}{
		{"valid", func(*Spec) {}, ""},
		{"fqdn", func(s *Spec) { s.Hostname = "web-1.lab.example" }, ""},
		{"no NICs", func(s *Spec) { s.NICs = nil }, ""},
		{"script user-data", func(s *Spec) { s.UserData = []byte("#!/bin/sh\necho hi\n") }, ""},
		{"cloud-config user-data", func(s *Spec) { s.UserData = []byte("#cloud-config\nruncmd: [true]\n") }, ""},
		{"static without gateway", func(s *Spec) { s.NICs[1].Gateway = netip.Addr{}; s.NICs[1].DNS = nil }, ""},
		{"static IPv6", func(s *Spec) {
			s.NICs[1].Addr = netip.MustParsePrefix("fd00::5/64")
			s.NICs[1].Gateway = netip.MustParseAddr("fd00::1")
		}, ""},
		{"no instance-id", func(s *Spec) { s.InstanceID = "" }, "instance-id is required"},
		{"instance-id with space", func(s *Spec) { s.InstanceID = "i 1" }, "instance-id"},
		{"instance-id with newline", func(s *Spec) { s.InstanceID = "i-1\nlocal-hostname: x" }, "instance-id"},
		{"no hostname", func(s *Spec) { s.Hostname = "" }, "hostname is required"},
		{"hostname underscore", func(s *Spec) { s.Hostname = "web_1" }, "is not a letter, digit or '-'"},
		{"hostname leading hyphen", func(s *Spec) { s.Hostname = "-web" }, "starts or ends with '-'"},
		{"hostname trailing hyphen", func(s *Spec) { s.Hostname = "web-.lab" }, "starts or ends with '-'"},
		{"hostname empty label", func(s *Spec) { s.Hostname = "web..lab" }, "empty label"},
		{"hostname label 64", func(s *Spec) { s.Hostname = long }, "longer than 63"},
		{"hostname 254", func(s *Spec) { s.Hostname = strings.Repeat("abc.", 63) + "ab" }, "more than 253"},
		{"hostname colon", func(s *Spec) { s.Hostname = "a: b" }, "is not a letter"},
		{"bad MAC", func(s *Spec) { s.NICs[0].MAC = "52:54:00:zz:00:01" }, "not a 48-bit MAC"},
		{"64-bit MAC", func(s *Spec) { s.NICs[0].MAC = "02:00:5e:10:00:00:00:01" }, "not a 48-bit MAC"},
		{"duplicate MAC", func(s *Spec) { s.NICs[1].MAC = "52-54-00-aa-00-01" }, "also nic 0's"},
		{"unknown mode", func(s *Spec) { s.NICs[0].Mode = "pool" }, `mode "pool" is neither`},
		{"dhcp with address", func(s *Spec) { s.NICs[0].Addr = netip.MustParsePrefix("10.0.0.2/24") }, "takes no address"},
		{"static without address", func(s *Spec) { s.NICs[1].Addr = netip.Prefix{} }, "needs an address"},
		{"gateway outside subnet", func(s *Spec) { s.NICs[1].Gateway = netip.MustParseAddr("10.21.0.1") }, "is not inside 10.20.0.0/24"},
		{"gateway other family", func(s *Spec) { s.NICs[1].Gateway = netip.MustParseAddr("fd00::1") }, "is not inside"},
		{"gateway is the address", func(s *Spec) { s.NICs[1].Gateway = netip.MustParseAddr("10.20.0.5") }, "own address"},
		{"zero DNS", func(s *Spec) { s.NICs[1].DNS = []netip.Addr{{}} }, "DNS server"},
		{"user-data not cloud-config", func(s *Spec) { s.UserData = []byte("hostname: x\n") }, `must start with "#cloud-config" or "#!"`},
		{"user-data too large", func(s *Spec) {
			s.UserData = append([]byte("#cloud-config\n"), make([]byte, MaxUserData)...)
		}, "more than 65536"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := validSpec()
			s.NICs = append([]NIC(nil), s.NICs...)
			tt.change(&s)
			err := s.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want an error containing %q", err, tt.want)
			}
			if !errors.Is(err, errdefs.ErrInvalid) {
				t.Fatalf("Validate = %v, not errdefs.ErrInvalid", err)
			}
			// Build refuses the same spec before writing anything.
			path := filepath.Join(t.TempDir(), "seed.iso")
			if err := Build(context.Background(), path, s); !errors.Is(err, errdefs.ErrInvalid) {
				t.Fatalf("Build = %v, want errdefs.ErrInvalid", err)
			}
			if _, err := os.Stat(path); !os.IsNotExist(err) {
				t.Fatalf("Build of an invalid spec left %s (%v)", path, err)
			}
		})
	}
}

func TestNewInstanceID(t *testing.T) {
	re := regexp.MustCompile(`^i-[0-9a-f]{16}$`)
	seen := map[string]bool{}
	for range 100 {
		id := NewInstanceID()
		if !re.MatchString(id) {
			t.Fatalf("NewInstanceID() = %q, want i-<16 hex>", id)
		}
		if seen[id] {
			t.Fatalf("NewInstanceID() repeated %q", id)
		}
		seen[id] = true
		if err := checkInstanceID(id); err != nil {
			t.Fatalf("own id %q is invalid: %v", id, err)
		}
	}
}

// needTool skips when a reader of the image is not installed; they are
// Debian packages (util-linux, genisoimage), not part of Stagehand.
func needTool(t *testing.T, name, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s not installed (apt-get install %s)", name, pkg)
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestBuildImage reads the image back with tools that know nothing of this
// package: blkid for the file system and label, isoinfo for both directory
// trees and the files' bytes.
func TestBuildImage(t *testing.T) {
	needTool(t, "blkid", "util-linux")
	needTool(t, "isoinfo", "genisoimage")
	path := filepath.Join(t.TempDir(), "seed.iso")
	spec := validSpec()
	if err := Build(context.Background(), path, spec); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600", fi.Mode().Perm())
	}
	t.Logf("seed image: %d bytes", fi.Size())
	if fi.Size() > 64<<10 {
		t.Errorf("size = %d bytes, want at most 64 KiB for small files", fi.Size())
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("directory holds %d entries after Build, want only the seed (no temporary file)", len(entries))
	}

	probe := run(t, "blkid", "-p", "-o", "export", path)
	for _, want := range []string{"TYPE=iso9660", "LABEL=" + Label} {
		if !strings.Contains(probe, want+"\n") {
			t.Errorf("blkid -p: no %s in\n%s", want, probe)
		}
	}

	// Joliet tree: the exact NoCloud names.
	if got, want := run(t, "isoinfo", "-J", "-f", "-i", path), "/meta-data\n/network-config\n/user-data\n"; got != want {
		t.Errorf("isoinfo -J -f:\n%s\nwant\n%s", got, want)
	}
	// Primary tree: what readers without Joliet see (Linux lowercases it).
	if got, want := run(t, "isoinfo", "-f", "-i", path), "/META-DATA.;1\n/NETWORK-CONFIG.;1\n/USER-DATA.;1\n"; got != want {
		t.Errorf("isoinfo -f:\n%s\nwant\n%s", got, want)
	}
	read := func(name string) string { return run(t, "isoinfo", "-J", "-i", path, "-x", "/"+name) }
	if diff := cmp.Diff("instance-id: i-0123456789abcdef\nlocal-hostname: web-1\n", read("meta-data")); diff != "" {
		t.Errorf("meta-data (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff("#cloud-config\npreserve_hostname: false\nhostname: web-1\n", read("user-data")); diff != "" {
		t.Errorf("default user-data (-want +got):\n%s", diff)
	}
	// The same bytes through the primary tree.
	if got := run(t, "isoinfo", "-i", path, "-x", "/META-DATA.;1"); got != read("meta-data") {
		t.Errorf("primary META-DATA = %q, Joliet meta-data = %q", got, read("meta-data"))
	}

	// The template's user-data is written as given, and a second Build
	// replaces the first seed in place.
	spec.UserData = []byte("#!/bin/sh\necho from the template\n")
	spec.InstanceID = "i-fedcba9876543210"
	if err := Build(context.Background(), path, spec); err != nil {
		t.Fatal(err)
	}
	if got := read("user-data"); got != string(spec.UserData) {
		t.Errorf("user-data = %q, want the template's %q", got, spec.UserData)
	}
	if got := read("meta-data"); !strings.HasPrefix(got, "instance-id: i-fedcba9876543210\n") {
		t.Errorf("meta-data after the second Build = %q", got)
	}

	// A user-data file of the largest allowed size spans many sectors.
	spec.UserData = append([]byte("#cloud-config\n#"), []byte(strings.Repeat("x", MaxUserData-16)+"\n")...)
	if err := Build(context.Background(), path, spec); err != nil {
		t.Fatal(err)
	}
	if got := read("user-data"); got != string(spec.UserData) {
		t.Errorf("64 KiB user-data read back as %d bytes, want %d", len(got), len(spec.UserData))
	}
}

// TestNetworkConfig decodes network-config as YAML and checks the version 2
// schema for a DHCP NIC and a static one.
func TestNetworkConfig(t *testing.T) {
	type route struct {
		To  string `yaml:"to"`
		Via string `yaml:"via"`
	}
	type ethernet struct {
		Match struct {
			MACAddress string `yaml:"macaddress"`
		} `yaml:"match"`
		DHCP4       *bool    `yaml:"dhcp4"`
		DHCP6       *bool    `yaml:"dhcp6"`
		Addresses   []string `yaml:"addresses"`
		Routes      []route  `yaml:"routes"`
		Nameservers struct {
			Addresses []string `yaml:"addresses"`
		} `yaml:"nameservers"`
	}
	type config struct {
		Version   int                 `yaml:"version"`
		Ethernets map[string]ethernet `yaml:"ethernets"`
	}
	yes, no := true, false
	decode := func(s Spec) config {
		t.Helper()
		var c config
		dec := yaml.NewDecoder(strings.NewReader(string(s.networkConfig())))
		dec.KnownFields(true) // a misspelt key would be ignored by cloud-init
		if err := dec.Decode(&c); err != nil {
			t.Fatalf("network-config is not the expected YAML: %v\n%s", err, s.networkConfig())
		}
		return c
	}

	got := decode(validSpec())
	var dhcp, static ethernet
	dhcp.Match.MACAddress = "52:54:00:aa:00:01"
	dhcp.DHCP4 = &yes
	static.Match.MACAddress = "52:54:00:aa:00:02"
	static.DHCP4, static.DHCP6 = &no, &no
	static.Addresses = []string{"10.20.0.5/24"}
	static.Routes = []route{{To: "0.0.0.0/0", Via: "10.20.0.1"}}
	static.Nameservers.Addresses = []string{"10.20.0.1", "10.20.0.2"}
	want := config{Version: 2, Ethernets: map[string]ethernet{"nic0": dhcp, "nic1": static}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("network-config (-want +got):\n%s", diff)
	}

	s := validSpec()
	s.NICs = []NIC{{MAC: "52:54:00:aa:00:03", Mode: ModeStatic,
		Addr: netip.MustParsePrefix("fd00::5/64"), Gateway: netip.MustParseAddr("fd00::1")}}
	if r := decode(s).Ethernets["nic0"].Routes; len(r) != 1 || r[0] != (route{To: "::/0", Via: "fd00::1"}) {
		t.Errorf("IPv6 static routes = %+v, want ::/0 via fd00::1", r)
	}
	s.NICs = nil
	if c := decode(s); c.Version != 2 || len(c.Ethernets) != 0 {
		t.Errorf("no NICs: %+v, want version 2 and no ethernets", c)
	}
}

func TestBuildCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	path := filepath.Join(t.TempDir(), "seed.iso")
	if err := Build(ctx, path, validSpec()); !errors.Is(err, context.Canceled) {
		t.Fatalf("Build with a canceled context = %v, want context.Canceled", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("canceled Build left %s", path)
	}
}

func TestDefaultHostname(t *testing.T) {
	for _, c := range []struct{ vm, config, want string }{
		{"web", "shop", "web-shop"},
		{"DB_1", "Team.Lab", "db-1-team-lab"},
		{"-a", "b-", "a-b"},
		{"x", strings.Repeat("y", 70), "x-" + strings.Repeat("y", 61)},
		{"a", strings.Repeat("-", 61) + "zz", "a"},
		{"_", "_", "vm"},
	} {
		got := DefaultHostname(c.vm, c.config)
		if got != c.want {
			t.Errorf("DefaultHostname(%q, %q) = %q, want %q", c.vm, c.config, got, c.want)
		}
		if err := CheckHostname(got); err != nil {
			t.Errorf("DefaultHostname(%q, %q) = %q: %v", c.vm, c.config, got, err)
		}
	}
	if got := Hostname("set.example", "a", "b"); got != "set.example" {
		t.Errorf("Hostname with a set name = %q", got)
	}
}
