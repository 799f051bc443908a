package apitest

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// EchoConsole serves a unix socket that sends every byte it reads back,
// like a serial console with echo on, makes it the fake's ConsoleSocket and
// returns its path. An echo session ends when its client half-closes or
// closes. Everything stops when the test ends.
func (f *Fake) EchoConsole(tb testing.TB) string {
	tb.Helper()
	// A short directory: unix socket paths are limited to about 100 bytes.
	dir, err := os.MkdirTemp("", "stagehand-console-")
	if err != nil {
		tb.Fatal(err)
	}
	sock := filepath.Join(dir, "console.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		os.RemoveAll(dir)
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
		os.RemoveAll(dir)
	})
	f.mu.Lock()
	f.ConsoleSocket = sock
	f.mu.Unlock()
	return sock
}
