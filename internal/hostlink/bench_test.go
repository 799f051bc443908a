package hostlink_test

import (
	"context"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"stagehand/internal/hostlink"
)

// BenchmarkPullVersusCopy pulls a 256 MiB qcow2 layer (256 MiB of data
// written by qemu-io) from a server on 127.0.0.1, over plain http and over
// pinned TLS, and copies the same file with cp --sparse=always in the same
// process. It reports each as MiB/s and the ratios pull ÷ cp (time) and
// pull ÷ (cp + fsync): the pull fsyncs before its rename, cp does not.
//
//	go test -run '^$' -bench PullVersusCopy -benchtime 5x ./internal/hostlink/
func BenchmarkPullVersusCopy(b *testing.B) {
	table := hosts{}
	a, dst := newSite(b, "a", table, nil), newSite(b, "b", table, nil)
	src := filepath.Join(a.dataDir, "layers", "big.qcow2")
	os.MkdirAll(filepath.Dir(src), 0o700)
	run(b, "qemu-img", "create", "-q", "-f", "qcow2", src, "512M")
	run(b, "qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 256M", src)
	l := describe(b, a.dataDir, "layers/big.qcow2")
	a.freeze(l)
	tlsSrv := httptest.NewUnstartedServer(a.srv.Config.Handler)
	tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0)
	tlsSrv.StartTLS()
	b.Cleanup(tlsSrv.Close)

	peers := map[string]hostlink.Peer{
		"http":  a.peer(),
		"https": {Name: "a", URL: tlsSrv.URL, Fingerprint: hostlink.Fingerprint(tlsSrv.Certificate().Raw)},
	}
	for _, scheme := range []string{"http", "https"} {
		b.Run(scheme, func(b *testing.B) {
			dest := filepath.Join(dst.dataDir, l.rel)
			var pull, cp, cpSync time.Duration
			b.SetBytes(l.size)
			for b.Loop() {
				start := time.Now()
				n, err := dst.puller.Pull(context.Background(), peers[scheme], l.sum, l.rel, nil)
				if err != nil || n != l.size {
					b.Fatalf("pull: %d bytes, %v", n, err)
				}
				pull += time.Since(start)
				os.Remove(dest)

				b.StopTimer()
				start = time.Now()
				if out, err := exec.Command("cp", "--sparse=always", src, dest).CombinedOutput(); err != nil {
					b.Fatalf("cp: %v: %s", err, out)
				}
				cp += time.Since(start)
				f, err := os.Open(dest)
				if err != nil {
					b.Fatal(err)
				}
				if err := f.Sync(); err != nil {
					b.Fatal(err)
				}
				f.Close()
				cpSync += time.Since(start)
				os.Remove(dest)
				b.StartTimer()
			}
			mib := float64(l.size) / (1 << 20) * float64(b.N)
			b.ReportMetric(mib/pull.Seconds(), "pull-MiB/s")
			b.ReportMetric(mib/cp.Seconds(), "cp-MiB/s")
			b.ReportMetric(pull.Seconds()/cp.Seconds(), "pull/cp")
			b.ReportMetric(pull.Seconds()/cpSync.Seconds(), "pull/cp+fsync")
		})
	}
}
