package apitest

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"stagehand/internal/hypervisor"
)

// EchoConsole serves the console socket of a running VM (where QEMU would
// listen) and sends every byte it reads back, like a serial console with
// echo on. It returns the socket's path. An echo session ends when its
// client half-closes or closes. Everything stops when the test ends.
func (l *Lab) EchoConsole(tb testing.TB, config, vm string) string {
	tb.Helper()
	sock := l.runFile(tb, config, vm, "")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		tb.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]bool{}
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _ = io.Copy(c, c)
				c.Close()
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
			}()
		}
	}()
	tb.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
		os.Remove(sock)
	})
	return sock
}

// SerialLog returns the file a deployed VM's serial log is written to (by
// QEMU; here by the test), next to its console socket.
func (l *Lab) SerialLog(tb testing.TB, config, vm string) string {
	tb.Helper()
	return l.runFile(tb, config, vm, "log")
}

// runFile returns the console socket (what "") or the serial log ("log")
// of a running VM, creating its run directory as QEMU does.
func (l *Lab) runFile(tb testing.TB, config, vm, what string) string {
	tb.Helper()
	sock, err := l.Deployments.VMConsole(context.Background(), config, vm)
	if err != nil {
		tb.Fatal(err)
	}
	spec := hypervisor.Spec{RunDir: filepath.Dir(sock)}
	if err := os.MkdirAll(spec.RunDir, 0o700); err != nil {
		tb.Fatal(err)
	}
	if what == "log" {
		return spec.SerialLogPath()
	}
	return spec.ConsoleSocketPath()
}
