package hypervisor

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"image/png"
	"io"
	"net"
	"regexp"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"stagehand/internal/errdefs"
)

// RFBScreenSize runs the RFB 3.8 handshake on conn (a VNC server without
// authentication, as QEMU's unix socket is) and returns the framebuffer
// size from the server's ServerInit.
func rfbScreenSize(conn net.Conn) (width, height int, err error) {
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	banner := make([]byte, 12)
	if _, err := io.ReadFull(conn, banner); err != nil {
		return 0, 0, fmt.Errorf("banner: %w", err)
	}
	if string(banner) != "RFB 003.008\n" {
		return 0, 0, fmt.Errorf("banner %q", banner)
	}
	conn.Write(banner)
	var n [1]byte
	if _, err := io.ReadFull(conn, n[:]); err != nil || n[0] == 0 {
		return 0, 0, fmt.Errorf("security types: %d, %v", n[0], err)
	}
	types := make([]byte, n[0])
	io.ReadFull(conn, types)
	if !bytes.Contains(types, []byte{1}) {
		return 0, 0, fmt.Errorf("security types %v lack None", types)
	}
	conn.Write([]byte{1})
	var result [4]byte
	if _, err := io.ReadFull(conn, result[:]); err != nil || result != [4]byte{} {
		return 0, 0, fmt.Errorf("security result %v, %v", result, err)
	}
	conn.Write([]byte{1}) // ClientInit: shared
	var init [4]byte
	if _, err := io.ReadFull(conn, init[:]); err != nil {
		return 0, 0, fmt.Errorf("ServerInit: %w", err)
	}
	return int(binary.BigEndian.Uint16(init[0:])), int(binary.BigEndian.Uint16(init[2:])), nil
}

// TestScreenVNCAndKeys boots the test guest with its VGA screen: the
// screendump is a PNG as large as the framebuffer the VNC socket
// announces, two VNC clients are served at once, and keys sent reach the
// guest's keyboard (its power-button watcher powers off on any input
// event).
func TestScreenVNCAndKeys(t *testing.T) {
	g := needGuest(t)
	spec := testSpec(t, g, true)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	vm, err := Start(ctx, spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Kill(context.Background())
	waitSerial(t, spec.SerialLogPath(), 0, regexp.MustCompile(`STAGEHAND-ACPI armed \S+: .*[Kk]eyboard`), 60*time.Second)

	shot, err := vm.Screendump(ctx)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("screendump is not a PNG: %v", err)
	}
	var sizes [][2]int
	for range 2 { // shared: a second client does not push the first off
		c, err := net.Dial("unix", vm.VNCSocketPath())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		w, h, err := rfbScreenSize(c)
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, [2]int{w, h})
	}
	b := img.Bounds()
	want := [][2]int{{b.Dx(), b.Dy()}, {b.Dx(), b.Dy()}}
	if diff := cmp.Diff(want, sizes); diff != "" || b.Dx() < 640 {
		t.Errorf("VNC framebuffers vs screendump %dx%d (-want +got):\n%s", b.Dx(), b.Dy(), diff)
	}

	if err := vm.TypeText(ctx, "é"); !errors.Is(err, ErrNotTypable) || !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("typing é: %v, want ErrNotTypable", err)
	}
	if err := vm.SendKeys(ctx, []string{"nokey"}); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("an unknown key: %v", err)
	}
	from := fileSize(spec.SerialLogPath())
	if err := vm.TypeText(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	waitSerial(t, spec.SerialLogPath(), from, regexp.MustCompile(`STAGEHAND-ACPI-POWEROFF`), 30*time.Second)
}

func TestTextChordsAndKeyNames(t *testing.T) {
	got, err := TextChords("aZ 1!\r\n")
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"a"}, {"shift", "z"}, {"spc"}, {"1"}, {"shift", "1"}, {"ret"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("chords (-want +got):\n%s", diff)
	}
	for c := byte(' '); c < 0x7f; c++ {
		if _, err := TextChords(string(c)); err != nil {
			t.Errorf("printable %q: %v", c, err)
		}
	}
	if _, err := TextChords("\x1b"); !errors.Is(err, ErrNotTypable) {
		t.Errorf("escape: %v", err)
	}
	if _, err := TextChords(string(make([]byte, MaxTypeText+1))); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("too long: %v", err)
	}
	chord, err := ParseChord("Ctrl-Alt-Del")
	if err != nil || !cmp.Equal(chord, []string{"ctrl", "alt", "delete"}) {
		t.Errorf("ctrl-alt-del: %v, %v", chord, err)
	}
	if _, err := ParseChord("ctrl-nope"); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("unknown key: %v", err)
	}
}
