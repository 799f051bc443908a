package cli

import (
	"strings"
	"testing"

	"stagehand/internal/api/wire"
)

func TestParseVMFlag(t *testing.T) {
	tests := []struct {
		in      string
		want    wire.VMRequest
		wantErr string
	}{
		{in: "web=debian", want: wire.VMRequest{Name: "web", Template: "debian"}},
		{in: "web=debian,net=lan", want: wire.VMRequest{Name: "web", Template: "debian", Network: "lan"}},
		{in: "web=tmpl,net=lan,ip=10.0.0.5", want: wire.VMRequest{Name: "web", Template: "tmpl", Network: "lan", IP: "10.0.0.5"}},
		{in: "web=tmpl,ip=dhcp,net=lan", want: wire.VMRequest{Name: "web", Template: "tmpl", Network: "lan", IP: "dhcp"}},
		{in: "web=tmpl,net=lan,ip=pool", want: wire.VMRequest{Name: "web", Template: "tmpl", Network: "lan", IP: "pool"}},
		{in: "web=tmpl,net=lan,ip=fd00::0005", want: wire.VMRequest{Name: "web", Template: "tmpl", Network: "lan", IP: "fd00::5"}},
		{in: "web=tmpl,net=lan,hostname=db1.example", want: wire.VMRequest{Name: "web", Template: "tmpl", Network: "lan", Hostname: "db1.example"}},
		{in: "web=tmpl,hostname=a,hostname=b", wantErr: "hostname given twice"},
		{in: "web", wantErr: "want VM=TEMPLATE"},
		{in: "=tmpl", wantErr: "want VM=TEMPLATE"},
		{in: "web=", wantErr: "want VM=TEMPLATE"},
		{in: "", wantErr: "want VM=TEMPLATE"},
		{in: "web=tmpl,foo=1", wantErr: `unknown key "foo"`},
		{in: "web=tmpl,network=lan", wantErr: `unknown key "network"`},
		{in: "web=tmpl,net", wantErr: `"net" is not KEY=VALUE`},
		{in: "web=tmpl,net=", wantErr: `"net=" is not KEY=VALUE`},
		{in: "web=tmpl,net=a,net=b", wantErr: "net given twice"},
		{in: "web=tmpl,net=lan,ip=10.0.0.300", wantErr: `ip "10.0.0.300" is not pool, dhcp or an IP address`},
		{in: "web=tmpl,net=lan,ip=static", wantErr: `ip "static" is not pool, dhcp`},
		{in: "web=tmpl,,net=lan", wantErr: `"" is not KEY=VALUE`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseVMFlag(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				if !isUsage(err) {
					t.Errorf("err %v is not a usage error", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestParseVMFlagsLeavesTheRulesToTheDaemon: duplicate names and a missing
// --vm are sent as they are; the lab refuses them (TestVMRulesAreTheLabs).
func TestParseVMFlagsLeavesTheRulesToTheDaemon(t *testing.T) {
	vms, err := parseVMFlags([]string{"a=t", "b=t", "a=u"})
	if err != nil || len(vms) != 3 {
		t.Fatalf("vms = %+v, %v", vms, err)
	}
	if vms, err := parseVMFlags(nil); err != nil || len(vms) != 0 {
		t.Fatalf("no --vm: %+v, %v", vms, err)
	}
}

func TestSize(t *testing.T) {
	for n, want := range map[int64]string{
		0: "0 B", 1023: "1023 B", 1024: "1 KiB", 196608: "192 KiB", 1536: "1.5 KiB",
		1 << 30: "1 GiB", 64 << 20: "64 MiB", 10*(1<<30) + 1<<29: "10 GiB",
	} {
		if got := size(n); got != want {
			t.Errorf("size(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestOneLine(t *testing.T) {
	if got := oneLine("a\nb  c\n"); got != "a; b c" {
		t.Errorf("oneLine = %q", got)
	}
}
