package lab_test

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"stagehand/internal/lab"
)

// mixedImage writes a raw image of sizeMiB whose content compresses about
// like a system disk: half random bytes, half repeated text, in 64 KiB runs.
func mixedImage(b testing.TB, sizeMiB int) string {
	b.Helper()
	p := filepath.Join(b.TempDir(), "mixed.raw")
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	rng := rand.New(rand.NewSource(1))
	text := []byte("stagehand archives compress system disks: libraries, logs, configuration files. ")
	chunk := make([]byte, 64<<10)
	for i := 0; i < sizeMiB*16; i++ {
		if i%2 == 0 {
			rng.Read(chunk)
		} else {
			for j := range chunk {
				chunk[j] = text[j%len(text)]
			}
		}
		if _, err := f.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	return p
}

// BenchmarkBundleThroughput measures archive export and import against
// what tar and sha256sum take on the same files in the same run,
// alternating: export ÷ (tar -cf of the archive's files + sha256sum of
// them), import ÷ (tar -xf of the bundle + sha256sum of what it wrote).
// Both sides read warm files. Export and import also fsync what they write
// (tar does not), and import checks each disk with qemu-img; those costs
// are in the ratios. Reports MB/s of each and the ratios (goal >= 0.9).
func BenchmarkBundleThroughput(b *testing.B) {
	sizeMiB := 512
	if s := os.Getenv("STAGEHAND_BENCH_MIB"); s != "" {
		fmt.Sscan(s, &sizeMiB)
	}
	e := newEnv(b)
	ctx := context.Background()
	if _, err := e.svc.Templates.Import(ctx, lab.TemplateSpec{Name: "base", Disks: []string{mixedImage(b, sizeMiB)}, Format: "raw"}); err != nil {
		b.Fatal(err)
	}
	e.config("src", lab.VMSpec{Name: "vm", Template: "base"})
	e.ok(e.svc.Archives.StartCreate(ctx, "src", "arch", lab.CreateOptions{}))
	a, err := e.svc.Archives.Get(ctx, "arch")
	if err != nil {
		b.Fatal(err)
	}
	var files []string
	for _, vm := range a.VMs {
		for _, d := range vm.Disks {
			files = append(files, d.Path)
		}
	}
	bytes := float64(a.Size)
	b.Logf("archive: %d MiB of data in a %.1f MiB archive (%d files)", sizeMiB, bytes/(1<<20), len(files))
	e2 := newEnv(b)
	out := b.TempDir()

	timed := func(fn func()) time.Duration {
		start := time.Now()
		fn()
		return time.Since(start)
	}
	sh := func(script string) {
		if o, err := exec.Command("sh", "-c", script).CombinedOutput(); err != nil {
			b.Fatalf("%s: %v\n%s", script, err, o)
		}
	}
	var exp, tarc, imp, tarx time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		bundle := filepath.Join(out, fmt.Sprintf("b%d.tar", i))
		exp += timed(func() { exportBundle(b, e.svc, "arch", bundle) })
		ref := filepath.Join(out, fmt.Sprintf("ref%d.tar", i))
		tarc += timed(func() {
			sh(fmt.Sprintf("cd %s && tar -cf %s manifest.json disks boot && sha256sum disks/* >/dev/null", a.Dir, ref))
		})
		name := fmt.Sprintf("imp%d", i)
		imp += timed(func() { e2.ok(e2.svc.Archives.StartImport(ctx, lab.ImportSpec{File: bundle, Name: name})) })
		dir := filepath.Join(out, fmt.Sprintf("x%d", i))
		os.Mkdir(dir, 0o755)
		tarx += timed(func() {
			sh(fmt.Sprintf("tar -xf %s -C %s && sha256sum %s/disks/* >/dev/null", bundle, dir, dir))
		})
		b.StopTimer()
		os.Remove(bundle)
		os.Remove(ref)
		os.RemoveAll(dir)
		if err := e2.svc.Archives.Delete(ctx, name); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	n := float64(b.N)
	mbps := func(d time.Duration) float64 { return bytes / (1 << 20) / (d.Seconds() / n) }
	b.ReportMetric(mbps(exp), "export-MB/s")
	b.ReportMetric(mbps(tarc), "tar+sha-MB/s")
	b.ReportMetric(tarc.Seconds()/exp.Seconds(), "export-ratio")
	b.ReportMetric(mbps(imp), "import-MB/s")
	b.ReportMetric(mbps(tarx), "untar+sha-MB/s")
	b.ReportMetric(tarx.Seconds()/imp.Seconds(), "import-ratio")
}
