package lab_test

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"stagehand/internal/lab"
)

// doctorBenchLayers is how many layers BenchmarkDoctor checks: a
// template's base and the top layers of 199 VMs.
const doctorBenchLayers = 200

// BenchmarkDoctor times the doctor over 200 layers made by the real disk
// tool, against the work it replaces, in the same iterations:
//
//   - cold: the first run of a new Service (as after a daemon start),
//     which reads every layer with qemu-img check;
//   - warm: a second run, in which every layer is unchanged since it
//     passed, so none is read again;
//   - the reference: `qemu-img check` of each of the same layers, one
//     after the other.
//
// It reports cold ÷ reference and warm ÷ cold, and the time of each.
func BenchmarkDoctor(b *testing.B) {
	e := newEnv(b)
	ctx := context.Background()
	e.template("base") // 64 MiB, 1 MiB of data
	const perConfig = 10
	for made, c := 1, 0; made < doctorBenchLayers; c++ {
		var vms []lab.VMSpec
		for ; len(vms) < perConfig && made < doctorBenchLayers; made++ {
			vms = append(vms, lab.VMSpec{Name: fmt.Sprintf("vm%d", len(vms)), Template: "base"})
		}
		v := e.config(fmt.Sprintf("c%d", c), vms...)
		// Some data above the base in one VM of each configuration.
		qemuIO(b, v.VMs[0].Disks[0].Path, "write -P 0x5a 0 256k")
	}
	layers, err := filepath.Glob(filepath.Join(e.dir, "layers", "*.qcow2"))
	if err != nil || len(layers) != doctorBenchLayers {
		b.Fatalf("%d layer files (%v), want %d", len(layers), err, doctorBenchLayers)
	}

	reference := func() time.Duration {
		start := time.Now()
		for _, l := range layers {
			if out, err := exec.Command("qemu-img", "check", "--output=json", "-f", "qcow2", l).CombinedOutput(); err != nil {
				b.Fatalf("qemu-img check %s: %v\n%s", l, err, out)
			}
		}
		return time.Since(start)
	}
	doctor := func(wantRead int) time.Duration {
		start := time.Now()
		r, err := e.svc.Doctor(ctx, false)
		took := time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		for _, p := range r.Problems {
			b.Errorf("doctor: %s %s: %s", p.Kind, p.Subject, p.Detail)
		}
		if r.Checked != len(layers) || r.ImageChecks != wantRead {
			b.Fatalf("doctor checked %d layers and read %d, want %d and %d", r.Checked, r.ImageChecks, len(layers), wantRead)
		}
		return took
	}

	var tRef, tCold, tWarm time.Duration
	for i := 0; b.Loop(); i++ {
		if i%2 == 0 {
			tRef += reference()
		}
		b.StopTimer()
		e.restart() // a new Service remembers no layer: the next run is cold
		b.StartTimer()
		tCold += doctor(len(layers))
		tWarm += doctor(0)
		if i%2 == 1 {
			tRef += reference()
		}
	}
	b.ReportMetric(float64(len(layers)), "layers")
	b.ReportMetric(ms(tCold)/float64(b.N), "ms-cold/op")
	b.ReportMetric(ms(tWarm)/float64(b.N), "ms-warm/op")
	b.ReportMetric(ms(tRef)/float64(b.N), "ms-qemu-img-check/op")
	b.ReportMetric(float64(tCold)/float64(tRef), "cold/qemu-img-check")
	b.ReportMetric(float64(tWarm)/float64(tCold), "warm/cold")
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
