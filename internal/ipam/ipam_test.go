package ipam

import (
	"errors"
	"net/netip"
	"testing"

	"stagehand/internal/errdefs"
	"stagehand/internal/store"
)

func TestParseNetwork(t *testing.T) {
	tests := []struct {
		name, subnet, gw string
		pools            []string
		wantErr          bool
		wantGW           string
	}{
		{"ok default gateway", "10.0.0.0/24", "", []string{"10.0.0.10-10.0.0.20"}, false, "10.0.0.1"},
		{"ok explicit gateway", "10.0.0.0/24", "10.0.0.254", []string{"10.0.0.10-10.0.0.20", "10.0.0.30"}, false, "10.0.0.254"},
		{"not cidr", "10.0.0.0", "", []string{"10.0.0.10"}, true, ""},
		{"host bits", "10.0.0.1/24", "", []string{"10.0.0.10"}, true, ""},
		{"ipv6", "fd00::/64", "", []string{"fd00::10"}, true, ""},
		{"gateway outside", "10.0.0.0/24", "10.0.1.1", []string{"10.0.0.10"}, true, ""},
		{"gateway broadcast", "10.0.0.0/24", "10.0.0.255", []string{"10.0.0.10"}, true, ""},
		{"no pool", "10.0.0.0/24", "", nil, true, ""},
		{"pool leaves subnet", "10.0.0.0/24", "", []string{"10.0.0.200-10.0.1.5"}, true, ""},
		{"pool has gateway", "10.0.0.0/24", "", []string{"10.0.0.1-10.0.0.9"}, true, ""},
		{"pool has network addr", "10.0.0.0/24", "10.0.0.254", []string{"10.0.0.0-10.0.0.9"}, true, ""},
		{"pool has broadcast", "10.0.0.0/24", "", []string{"10.0.0.250-10.0.0.255"}, true, ""},
		{"pool reversed", "10.0.0.0/24", "", []string{"10.0.0.20-10.0.0.10"}, true, ""},
		{"pools overlap", "10.0.0.0/24", "", []string{"10.0.0.10-10.0.0.20", "10.0.0.15-10.0.0.25"}, true, ""},
		{"pool garbage", "10.0.0.0/24", "", []string{"ten-eleven"}, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := ParseNetwork(tt.subnet, tt.gw, tt.pools, nil)
			if tt.wantErr {
				if !errors.Is(err, errdefs.ErrInvalid) {
					t.Fatalf("want invalid error, got %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if n.Gateway.String() != tt.wantGW {
				t.Errorf("gateway %s, want %s", n.Gateway, tt.wantGW)
			}
		})
	}
}

func TestPickFreeAndExhaustion(t *testing.T) {
	n, err := ParseNetwork("10.1.0.0/24", "", []string{"10.1.0.10-10.1.0.11", "10.1.0.20"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	nw := &store.Network{Name: "lan", Subnet: n.Subnet, Gateway: n.Gateway, Pools: n.Pools}
	if PoolSize(nw.Pools) != 3 {
		t.Fatalf("pool size %d, want 3", PoolSize(nw.Pools))
	}
	held := map[netip.Addr]bool{}
	var got []string
	for i := 0; i < 3; i++ {
		a, err := PickFree(nw, held)
		if err != nil {
			t.Fatal(err)
		}
		held[a] = true
		got = append(got, a.String())
	}
	want := []string{"10.1.0.10", "10.1.0.11", "10.1.0.20"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("picked %v, want %v", got, want)
		}
	}
	if _, err := PickFree(nw, held); !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("exhausted pool: want conflict, got %v", err)
	}
}

func TestCheckManual(t *testing.T) {
	nw := &store.Network{Name: "lan", Subnet: netip.MustParsePrefix("10.2.0.0/24"), Gateway: netip.MustParseAddr("10.2.0.1")}
	for ip, ok := range map[string]bool{"10.2.0.5": true, "10.2.0.1": false, "10.3.0.5": false, "10.2.0.255": false, "10.2.0.0": false} {
		err := CheckManual(nw, netip.MustParseAddr(ip))
		if (err == nil) != ok {
			t.Errorf("%s: err=%v, want ok=%v", ip, err, ok)
		}
	}
}

func TestDynamicRange(t *testing.T) {
	n, err := ParseNetwork("10.1.0.0/28", "", []string{"10.1.0.2-10.1.0.5", "10.1.0.9"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	nw := &store.Network{Subnet: n.Subnet, Gateway: n.Gateway, Pools: n.Pools}
	first, last, ok := DynamicRange(nw)
	// Hosts .1-.14; gateway .1; pools .2-.5 and .9: runs .6-.8 (3) and .10-.14 (5).
	if !ok || first.String() != "10.1.0.10" || last.String() != "10.1.0.14" {
		t.Fatalf("dynamic range %s-%s ok=%v, want 10.1.0.10-10.1.0.14", first, last, ok)
	}
	full, _ := ParseNetwork("10.1.0.0/30", "", []string{"10.1.0.2"}, nil)
	if _, _, ok := DynamicRange(&store.Network{Subnet: full.Subnet, Gateway: full.Gateway, Pools: full.Pools}); ok {
		t.Fatal("a subnet filled by gateway and pool has no dynamic range")
	}
}

func TestPickFreeAfterRotates(t *testing.T) {
	n, _ := ParseNetwork("10.1.0.0/24", "", []string{"10.1.0.10-10.1.0.12", "10.1.0.20-10.1.0.21"}, nil)
	nw := &store.Network{Subnet: n.Subnet, Gateway: n.Gateway, Pools: n.Pools}
	held := map[netip.Addr]bool{netip.MustParseAddr("10.1.0.21"): true}
	for _, c := range []struct{ after, want string }{
		{"10.1.0.10", "10.1.0.11"},
		{"10.1.0.12", "10.1.0.20"}, // next range
		{"10.1.0.20", "10.1.0.10"}, // .21 held: wrap around
		{"10.1.0.15", "10.1.0.20"}, // between ranges
	} {
		got, err := PickFreeAfter(nw, held, netip.MustParseAddr(c.after))
		if err != nil || got.String() != c.want {
			t.Errorf("after %s: got %s %v, want %s", c.after, got, err, c.want)
		}
	}
}
