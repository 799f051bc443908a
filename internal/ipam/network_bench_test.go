package ipam

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"stagehand/internal/store"
)

// BenchmarkAddressPlanSubnetSize times ParseNetwork then DynamicRange (what
// creating a network and every deploy on it ask of ipam) for a /8 with
// MaxPools single-address pools spread over it, against the same for a /23
// with MaxPools consecutive single-address pools (a /24 cannot hold 256
// pools besides its gateway), alternating in each iteration. The old code
// walked every address of the subnet (55.7 s for a /8); it reports
// /8 ÷ /23, which should stay near 1: only the pool count matters.
func BenchmarkAddressPlanSubnetSize(b *testing.B) {
	large := make([]string, MaxPools)
	small := make([]string, MaxPools)
	for i := range MaxPools {
		large[i] = fmt.Sprintf("10.%d.0.10", i)                                      // 10.0.0.10 … 10.255.0.10
		small[i] = addrOf(u32(netip.MustParseAddr("10.0.0.2")) + uint32(i)).String() // 10.0.0.2 … 10.0.1.1
	}
	plan := func(subnet string, pools []string) time.Duration {
		start := time.Now()
		n, err := ParseNetwork(subnet, "", pools, nil)
		if err != nil {
			b.Fatal(err)
		}
		first, last, ok := DynamicRange(&store.Network{Subnet: n.Subnet, Gateway: n.Gateway, Pools: n.Pools})
		took := time.Since(start)
		if !ok || !first.IsValid() || last.Less(first) {
			b.Fatalf("DynamicRange(%s) = %v-%v, %v", subnet, first, last, ok)
		}
		return took
	}
	var tLarge, tSmall time.Duration
	for i := 0; b.Loop(); i++ {
		if i%2 == 0 {
			tLarge += plan("10.0.0.0/8", large)
			tSmall += plan("10.0.0.0/23", small)
		} else {
			tSmall += plan("10.0.0.0/23", small)
			tLarge += plan("10.0.0.0/8", large)
		}
	}
	b.ReportMetric(float64(tLarge.Nanoseconds())/1000/float64(b.N), "µs-/8/op")
	b.ReportMetric(float64(tSmall.Nanoseconds())/1000/float64(b.N), "µs-/23/op")
	b.ReportMetric(float64(tLarge)/float64(tSmall), "/8÷/23")
}
