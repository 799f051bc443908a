package lab_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"stagehand/internal/jobs"
	"stagehand/internal/lab"
)

// importSized imports a template whose one disk has virtual size sizeMiB
// and dataMiB of data written from offset 0.
func importSized(b testing.TB, e *env, name string, sizeMiB, dataMiB int) {
	b.Helper()
	p := filepath.Join(b.TempDir(), name+".qcow2")
	run(b, "qemu-img", "create", "-q", "-f", "qcow2", p, fmt.Sprintf("%dM", sizeMiB))
	run(b, "qemu-io", "-f", "qcow2", "-c", fmt.Sprintf("write -P 0xaa 0 %dM", dataMiB), p)
	if _, err := e.svc.Templates.Import(context.Background(), lab.TemplateSpec{Name: name, Disks: []string{p}}); err != nil {
		b.Fatal(err)
	}
}

func run(b testing.TB, name string, args ...string) {
	b.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		b.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// BenchmarkLinkedCloneDiskSize linked-clones a 3-VM configuration whose
// disks are 1 GiB, and the same with 64 GiB disks, alternating in one run.
// Each source has data in its top layers, so every clone freezes them and
// makes two deltas per disk (no shortcut). It reports the absolute time of
// each and the ratio 64 GiB ÷ 1 GiB, which must stay near 1: a linked clone
// never reads or copies data.
func BenchmarkLinkedCloneDiskSize(b *testing.B) {
	e := newEnv(b, func(o *lab.Options) { o.ChainLimit = 1 << 20 })
	importSized(b, e, "small", 1024, 1)
	importSized(b, e, "large", 64*1024, 1)
	ctx := context.Background()
	var small, large time.Duration
	n := 0
	clone := func(tmpl string) time.Duration {
		n++
		src := fmt.Sprintf("src-%d", n)
		v := e.config(src, lab.VMSpec{Name: "a", Template: tmpl}, lab.VMSpec{Name: "b", Template: tmpl}, lab.VMSpec{Name: "c", Template: tmpl})
		for _, vm := range v.VMs {
			qemuIO(b, vm.Disks[0].Path, "write -P 0x11 0 64k")
		}
		start := time.Now()
		if _, err := e.svc.Configs.LinkedClone(ctx, src, src+"-clone", lab.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	for i := 0; b.Loop(); i++ {
		if i%2 == 0 {
			small += clone("small")
			large += clone("large")
		} else {
			large += clone("large")
			small += clone("small")
		}
	}
	b.ReportMetric(float64(small.Microseconds())/1000/float64(b.N), "ms-1GiB/op")
	b.ReportMetric(float64(large.Microseconds())/1000/float64(b.N), "ms-64GiB/op")
	b.ReportMetric(float64(large)/float64(small), "64GiB/1GiB")
}

// BenchmarkCloneSpace makes 100 linked clones and 100 full clones of one
// configuration whose disk holds 32 MiB of data, and reports the bytes the
// clones allocate on the host, and their ratio linked ÷ full.
func BenchmarkCloneSpace(b *testing.B) {
	for i := 0; b.Loop(); i++ {
		e := newEnv(b)
		importSized(b, e, "base", 1024, 32)
		e.config("src", lab.VMSpec{Name: "vm", Template: "base"})
		qemuIO(b, top(e.get("src"), "vm"), "write -P 0x22 0 1M")
		layers := filepath.Join(e.dir, "layers")
		before := allocated(b, layers)
		for k := 0; k < 100; k++ {
			e.linked("src", fmt.Sprintf("linked-%d", k))
		}
		linked := allocated(b, layers) - before
		before = allocated(b, layers)
		for k := 0; k < 100; k++ {
			if j := e.full("src", fmt.Sprintf("full-%d", k)); j.State != jobs.Succeeded {
				b.Fatalf("full clone: %s", j.Error)
			}
		}
		full := allocated(b, layers) - before
		b.ReportMetric(float64(linked)/100, "B-linked/clone")
		b.ReportMetric(float64(full)/100, "B-full/clone")
		b.ReportMetric(100*float64(linked)/float64(full), "%linked/full")
	}
}

// allocated sums the bytes allocated on the host by the files in dir.
func allocated(b testing.TB, dir string) int64 {
	b.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	var sum int64
	for _, en := range entries {
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(dir, en.Name()), &st); err != nil {
			b.Fatal(err)
		}
		sum += st.Blocks * 512
	}
	return sum
}
