package peer_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"stagehand/internal/peer"
)

// TestReadCredOverARealSocket connects to a unix listener and reads, on
// the accepted side, the credentials of this very process.
func TestReadCredOverARealSocket(t *testing.T) {
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(t.TempDir(), "s.sock"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("unix", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	got, err := peer.ReadCred(server)
	if err != nil {
		t.Fatal(err)
	}
	want := peer.Cred{UID: uint32(os.Getuid()), GID: uint32(os.Getgid()), PID: int32(os.Getpid())}
	if got != want {
		t.Errorf("ReadCred = %+v, want %+v", got, want)
	}
}

// TestReadCredOfASocketpair reads both ends of a socketpair: each names
// this process.
func TestReadCredOfASocketpair(t *testing.T) {
	a, b, err := socketpair()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	defer b.Close()
	for _, c := range []*net.UnixConn{a, b} {
		got, err := peer.ReadCred(c)
		if err != nil || got.PID != int32(os.Getpid()) || got.UID != uint32(os.Getuid()) {
			t.Errorf("ReadCred = %+v, %v; want pid %d uid %d", got, err, os.Getpid(), os.Getuid())
		}
	}
}

func TestContext(t *testing.T) {
	if c, ok := peer.FromContext(context.Background()); ok {
		t.Errorf("a bare context carries %+v", c)
	}
	want := peer.Cred{UID: 1000, GID: 100, PID: 42}
	got, ok := peer.FromContext(peer.WithCred(context.Background(), want))
	if !ok || got != want {
		t.Errorf("FromContext = %+v, %v; want %+v", got, ok, want)
	}
}

// socketpair returns the two connected ends of a unix stream socketpair.
func socketpair() (*net.UnixConn, *net.UnixConn, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	var conns [2]*net.UnixConn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f) // dups fd
		f.Close()
		if err != nil {
			return nil, nil, err
		}
		conns[i] = c.(*net.UnixConn)
	}
	return conns[0], conns[1], nil
}
