package cluster

import (
	"errors"
	"strings"
	"testing"
	"time"

	"stagehand/internal/errdefs"
	"stagehand/internal/store"
)

func TestPlace(t *testing.T) {
	seen := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	host := func(name string, mem, usedMem int, held ...int64) Candidate {
		c := Candidate{Name: name, State: store.HostActive, Online: true, MemoryMiB: mem, CPUs: 2, UsedMemoryMiB: usedMem, Held: map[int64]bool{}}
		for _, id := range held {
			c.Held[id] = true
		}
		return c
	}
	chain := []LayerNeed{{ID: 1, Size: 100 << 20}, {ID: 2, Size: 10 << 20}, {ID: 3, Size: 1 << 20}}
	need := Need{Config: "web", MemoryMiB: 1024, CPUs: 2, Layers: chain}
	offline := host("c", 8192, 0, 1, 2, 3)
	offline.Online, offline.LastSeen = false, seen
	draining := host("d", 8192, 0, 1, 2, 3)
	draining.State = store.HostDraining
	removed := host("e", 8192, 0, 1, 2, 3)
	removed.State = store.HostRemoved
	busyCPU := host("f", 8192, 0, 1, 2, 3)
	busyCPU.UsedCPUs = 7

	for _, tc := range []struct {
		name    string
		cands   []Candidate
		need    Need
		want    string
		wantErr error
		explain []string // substrings of the explanation, in order
	}{
		{name: "most of the chain wins over more memory",
			cands: []Candidate{host("a", 8192, 0), host("b", 4096, 0, 1, 2)}, need: need, want: "b",
			explain: []string{"b: fits: 4096 MiB and 8 vCPUs free, holds 2 of the chain's layers, would pull 1.0 MiB", "a: fits: 8192 MiB"}},
		{name: "same layers: more free memory",
			cands: []Candidate{host("a", 8192, 6144, 1), host("b", 8192, 2048, 1)}, need: need, want: "b"},
		{name: "same everything: by name",
			cands: []Candidate{host("b", 8192, 0), host("a", 8192, 0)}, need: need, want: "a"},
		{name: "memory is never overcommitted",
			cands: []Candidate{host("a", 8192, 7680, 1, 2, 3), host("b", 2048, 0)}, need: need, want: "b",
			explain: []string{"b: fits", "a: no: needs 1024 MiB of memory, 512 free"}},
		{name: "offline, draining, removed and CPU-full hosts are skipped",
			cands: []Candidate{offline, draining, removed, busyCPU, host("a", 2048, 0)}, need: need, want: "a",
			explain: []string{"a: fits", "c: no: offline (last seen 2026-12-01T12:00:00Z)", "d: no: draining", "f: no: needs 2 vCPUs, 1 free (2 processors × 4)"}},
		{name: "no host fits: every host named",
			cands: []Candidate{offline, host("a", 512, 0)}, need: need, wantErr: errdefs.ErrUnavailable,
			explain: []string{"a: no: needs 1024 MiB of memory, 512 free", "c: no: offline"}},
		{name: "--host chooses that host only",
			cands: []Candidate{host("a", 8192, 0, 1, 2, 3), host("b", 2048, 0)}, need: Need{Config: "web", MemoryMiB: 1024, Layers: chain, Host: "b"}, want: "b",
			explain: []string{"b: fits"}},
		{name: "--host that does not fit",
			cands: []Candidate{host("a", 8192, 0), draining}, need: Need{Config: "web", Host: "d"}, wantErr: errdefs.ErrUnavailable,
			explain: []string{"d: no: draining"}},
		{name: "--host unknown",
			cands: []Candidate{host("a", 8192, 0)}, need: Need{Config: "web", Host: "z"}, wantErr: errdefs.ErrNotFound},
		{name: "no hosts at all",
			need: need, wantErr: errdefs.ErrUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Place(tc.cands, tc.need)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Place: err %v, want kind %v", err, tc.wantErr)
				}
			} else if err != nil || d.Host != tc.want {
				t.Fatalf("Place: host %q err %v, want %q\n%s", d.Host, err, tc.want, d.Explain())
			}
			text := d.Explain()
			if err != nil {
				for _, v := range d.Verdicts {
					if !strings.Contains(err.Error(), v.String()) {
						t.Errorf("error %q does not name %q", err, v.String())
					}
				}
			}
			at := 0
			for _, want := range tc.explain {
				i := strings.Index(text[at:], want)
				if i < 0 {
					t.Fatalf("explanation lacks %q after offset %d:\n%s", want, at, text)
				}
				at += i + len(want)
			}
		})
	}
}
