package ipam

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"stagehand/internal/errdefs"
	"stagehand/internal/store"
)

// The subnets, DNS servers and pool lists of the security review's M2 and
// M3 reproductions are refused as invalid.
func TestParseNetworkRefusesReservedAndHugeInput(t *testing.T) {
	manyPools := make([]string, MaxPools+1)
	for i := range manyPools {
		manyPools[i] = fmt.Sprintf("10.%d.%d.10", i/256, i%256)
	}
	tests := []struct {
		name, subnet string
		pools, dns   []string
	}{
		{"whole internet", "0.0.0.0/0", []string{"0.0.0.2-255.255.255.254"}, nil},
		{"half the internet", "0.0.0.0/1", []string{"0.0.0.10-0.0.0.20"}, nil},
		{"shorter than /8", "10.0.0.0/7", []string{"10.0.0.10"}, nil},
		{"this network", "0.0.0.0/8", []string{"0.0.0.10"}, nil},
		{"loopback", "127.0.0.0/8", []string{"127.0.0.10-127.0.0.20"}, nil},
		{"loopback /24", "127.1.2.0/24", []string{"127.1.2.10"}, nil},
		{"link-local", "169.254.10.0/24", []string{"169.254.10.10"}, nil},
		{"multicast", "224.0.0.0/4", []string{"224.0.0.10-224.0.0.20"}, nil},
		{"multicast /24", "239.1.1.0/24", []string{"239.1.1.10"}, nil},
		{"reserved", "240.0.0.0/24", []string{"240.0.0.10"}, nil},
		{"broadcast block", "255.255.255.0/30", []string{"255.255.255.2"}, nil},
		{"too many pools", "10.0.0.0/8", manyPools, nil},
		{"dns loopback", "10.0.0.0/24", []string{"10.0.0.10"}, []string{"127.0.0.53"}},
		{"dns broadcast", "10.0.0.0/24", []string{"10.0.0.10"}, []string{"255.255.255.255"}},
		{"dns multicast", "10.0.0.0/24", []string{"10.0.0.10"}, []string{"224.0.0.251"}},
		{"dns unspecified", "10.0.0.0/24", []string{"10.0.0.10"}, []string{"0.0.0.0"}},
		{"dns link-local", "10.0.0.0/24", []string{"10.0.0.10"}, []string{"169.254.169.254"}},
		{"too many dns", "10.0.0.0/24", []string{"10.0.0.10"}, []string{"1.1.1.1", "1.1.1.2", "1.1.1.3", "1.1.1.4", "1.1.1.5", "1.1.1.6", "1.1.1.7", "1.1.1.8", "1.1.1.9"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseNetwork(tt.subnet, "", tt.pools, tt.dns)
			if !errors.Is(err, errdefs.ErrInvalid) {
				t.Fatalf("ParseNetwork(%s, %d pools, dns %v): want invalid, got %v", tt.subnet, len(tt.pools), tt.dns, err)
			}
		})
	}
	// The edges that stay allowed.
	for _, ok := range []struct {
		subnet string
		pools  []string
		dns    []string
	}{
		{"10.0.0.0/8", manyPools[:MaxPools], []string{"10.0.0.2", "192.168.1.1"}},
		{"11.0.0.0/8", []string{"11.0.0.10"}, nil},
		{"223.255.255.0/24", []string{"223.255.255.10"}, nil},
		{"169.253.0.0/16", []string{"169.253.0.10"}, nil},
	} {
		if _, err := ParseNetwork(ok.subnet, "", ok.pools, ok.dns); err != nil {
			t.Errorf("ParseNetwork(%s): %v", ok.subnet, err)
		}
	}
}

// Overlap is found whatever the order the pools come in, including pools
// that touch end to start and a pool inside another.
func TestParseNetworkPoolOverlapAnyOrder(t *testing.T) {
	for _, pools := range [][]string{
		{"10.0.0.30-10.0.0.40", "10.0.0.10-10.0.0.30"},
		{"10.0.0.10-10.0.0.90", "10.0.0.20-10.0.0.21"},
		{"10.0.0.20-10.0.0.21", "10.0.0.10-10.0.0.90"},
		{"10.0.0.50", "10.0.0.60", "10.0.0.50"},
	} {
		if _, err := ParseNetwork("10.0.0.0/24", "", pools, nil); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("pools %v: want overlap refused, got %v", pools, err)
		}
	}
	if _, err := ParseNetwork("10.0.0.0/24", "", []string{"10.0.0.31-10.0.0.40", "10.0.0.10-10.0.0.30"}, nil); err != nil {
		t.Errorf("adjacent pools: %v", err)
	}
}

// The largest network ParseNetwork accepts (a /8 with MaxPools pools) is
// parsed and its dynamic range computed in well under the time walking
// its 16 million addresses took (about 0.5 s at 31 ns per address, the
// review's measurement), since DynamicRange runs inside the deploy's
// write transaction.
func TestLargestNetworkIsCheap(t *testing.T) {
	pools := make([]string, MaxPools)
	for i := range pools {
		// Spread over the /8, in reverse order so sorting is exercised.
		j := MaxPools - 1 - i
		pools[i] = fmt.Sprintf("10.%d.0.10-10.%d.0.20", j, j)
	}
	start := time.Now()
	n, err := ParseNetwork("10.0.0.0/8", "", pools, nil)
	if err != nil {
		t.Fatal(err)
	}
	nw := &store.Network{Subnet: n.Subnet, Gateway: n.Gateway, Pools: n.Pools}
	first, last, ok := DynamicRange(nw)
	took := time.Since(start)
	if !ok || first.String() != "10.0.0.21" || last.String() != "10.1.0.9" {
		t.Errorf("dynamic range %s-%s ok=%v, want 10.0.0.21-10.1.0.9", first, last, ok)
	}
	if took > 50*time.Millisecond {
		t.Errorf("parse and dynamic range of a /8 with %d pools took %v: it must not depend on the subnet's size", MaxPools, took)
	}
}

// DynamicRange agrees with a walk over every address on random small
// networks.
func TestDynamicRangeMatchesWalk(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 2000; i++ {
		bits := 24 + rng.IntN(7) // /24 to /30
		p := netip.PrefixFrom(netip.MustParseAddr("10.5.0.0"), bits).Masked()
		size := uint32(1) << (32 - bits)
		base := u32(p.Addr())
		gw := addrOf(base + 1 + rng.Uint32N(size-2))
		var pools []store.IPRange
		for k := rng.IntN(5); k > 0; k-- {
			a := base + 1 + rng.Uint32N(size-2)
			b := a + rng.Uint32N(min(8, base+size-1-a))
			r := store.IPRange{First: addrOf(a), Last: addrOf(b)}
			if InRange(r, gw) || InPools(pools, r.First) || InPools(pools, r.Last) || rangesCover(pools, r) {
				continue
			}
			pools = append(pools, r)
		}
		nw := &store.Network{Subnet: p, Gateway: gw, Pools: pools}
		f1, l1, ok1 := DynamicRange(nw)
		f2, l2, ok2 := walkDynamicRange(nw)
		if f1 != f2 || l1 != l2 || ok1 != ok2 {
			t.Fatalf("%s gw %s pools %v: got %s-%s %v, walk says %s-%s %v", p, gw, pools, f1, l1, ok1, f2, l2, ok2)
		}
	}
}

func rangesCover(pools []store.IPRange, r store.IPRange) bool {
	for _, o := range pools {
		if InRange(r, o.First) {
			return true
		}
	}
	return false
}

// walkDynamicRange is the definition DynamicRange computes: the first
// longest run of host addresses outside the pools and the gateway.
func walkDynamicRange(nw *store.Network) (first, last netip.Addr, ok bool) {
	var bestLen, curLen int
	var cur netip.Addr
	end := Broadcast(nw.Subnet)
	for a := nw.Subnet.Masked().Addr().Next(); a.IsValid() && a != end; a = a.Next() {
		if a == nw.Gateway || InPools(nw.Pools, a) {
			curLen = 0
			continue
		}
		if curLen == 0 {
			cur = a
		}
		curLen++
		if curLen > bestLen {
			bestLen, first, last = curLen, cur, a
		}
	}
	return first, last, bestLen > 0
}
