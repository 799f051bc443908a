package hypervisor

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"stagehand/internal/errdefs"
)

// The VM's screen: a standard VGA card, shown over VNC (VNCSocketPath),
// captured as PNG with QMP screendump, and typed on with QMP send-key.

// keyHoldMillis is how long each key of TypeText is held: short enough to
// type a line in a moment, long enough for a guest's PS/2 driver under
// TCG to see every press.
const keyHoldMillis = 20

// MaxTypeText bounds the text of one TypeText: each character is a QMP
// command and some milliseconds of the guest's keyboard.
const MaxTypeText = 4096

// Screendump returns the VM's screen as a PNG image (QMP screendump,
// format png: QEMU 7.1 and later).
func (v *VM) Screendump(ctx context.Context) ([]byte, error) {
	// QEMU writes the file itself, in the run directory that only the
	// daemon reads; a random name keeps two dumps apart.
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	file := filepath.Join(v.runDir, "screen-"+hex.EncodeToString(rnd[:])+".png")
	defer os.Remove(file)
	if _, err := v.execute(ctx, "screendump", map[string]any{"filename": file, "format": "png"}); err != nil {
		return nil, fmt.Errorf("screendump: %w", err)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("vm %q: screendump: %w", v.id, err)
	}
	return b, nil
}

// SendKeys presses the keys of chord together and releases them (QMP
// send-key): "ctrl-alt-delete" is ["ctrl", "alt", "delete"]. Keys are
// QEMU's key codes (QKeyCode) or the aliases of KeyCode.
func (v *VM) SendKeys(ctx context.Context, chord []string) error {
	keys, err := chordKeys(chord)
	if err != nil {
		return err
	}
	_, err = v.execute(ctx, "send-key", map[string]any{"keys": keys, "hold-time": keyHoldMillis * 5})
	return err
}

// TypeText types text on the VM's keyboard as a US-layout keyboard would:
// printable ASCII, newline (Enter) and tab. Anything else is refused
// before a key is pressed. It returns once QEMU has queued every key; the
// guest sees them over the next len(text)×2×keyHoldMillis.
func (v *VM) TypeText(ctx context.Context, text string) error {
	chords, err := TextChords(text)
	if err != nil {
		return err
	}
	for _, chord := range chords {
		keys, _ := chordKeys(chord)
		if _, err := v.execute(ctx, "send-key", map[string]any{"keys": keys, "hold-time": keyHoldMillis}); err != nil {
			return fmt.Errorf("type text: %w", err)
		}
	}
	return nil
}

type qmpKey struct {
	Type string `json:"type"`
	Data string `json:"data"`
}

func chordKeys(chord []string) ([]qmpKey, error) {
	if len(chord) == 0 {
		return nil, errdefs.Invalid("no key to send")
	}
	keys := make([]qmpKey, 0, len(chord))
	for _, k := range chord {
		code, err := KeyCode(k)
		if err != nil {
			return nil, err
		}
		keys = append(keys, qmpKey{Type: "qcode", Data: code})
	}
	return keys, nil
}

// keyAliases are the friendlier names of some QKeyCodes.
var keyAliases = map[string]string{
	"del": "delete", "enter": "ret", "return": "ret", "escape": "esc", "control": "ctrl",
	"win": "meta_l", "super": "meta_l", "meta": "meta_l", "pgup": "pgup", "pageup": "pgup",
	"pgdn": "pgdn", "pagedown": "pgdn", "ins": "insert", "bs": "backspace", "space": "spc",
	"sysrq": "sysrq", "printscreen": "print", "altgr": "alt_r",
}

// qcodes are the QKeyCodes of QEMU 7.2's QAPI schema that a console's
// toolbar may send.
var qcodes = func() map[string]bool {
	m := map[string]bool{}
	for _, k := range strings.Fields(`shift shift_r alt alt_r ctrl ctrl_r menu esc
		1 2 3 4 5 6 7 8 9 0 minus equal backspace tab q w e r t y u i o p bracket_left bracket_right
		ret a s d f g h j k l semicolon apostrophe grave_accent backslash z x c v b n m comma dot slash
		asterisk spc caps_lock f1 f2 f3 f4 f5 f6 f7 f8 f9 f10 f11 f12 num_lock scroll_lock
		kp_divide kp_multiply kp_subtract kp_add kp_enter kp_decimal sysrq kp_0 kp_1 kp_2 kp_3 kp_4
		kp_5 kp_6 kp_7 kp_8 kp_9 less print home pgup pgdn end left up down right insert delete
		meta_l meta_r pause power sleep wake`) {
		m[k] = true
	}
	return m
}()

// KeyCode returns the QKeyCode of a key name: a QKeyCode ("f2", "delete",
// "meta_l") or an alias ("del", "enter", "win", "pagedown"). Case does not
// matter.
func KeyCode(name string) (string, error) {
	k := strings.ToLower(strings.TrimSpace(name))
	if a, ok := keyAliases[k]; ok {
		k = a
	}
	if !qcodes[k] {
		return "", errdefs.Invalid("unknown key %q (QEMU key codes such as ctrl, alt, delete, f1, esc, tab, ret)", name)
	}
	return k, nil
}

// ParseChord splits "ctrl-alt-del" into its keys and checks each. A
// lone "-" is the minus key.
func ParseChord(s string) ([]string, error) {
	if s == "-" || s == "minus" {
		return []string{"minus"}, nil
	}
	parts := strings.Split(s, "-")
	out := make([]string, 0, len(parts))
	for _, p := range parts {
		code, err := KeyCode(p)
		if err != nil {
			return nil, fmt.Errorf("key chord %q: %w", s, err)
		}
		out = append(out, code)
	}
	return out, nil
}

// usKeys maps the printable ASCII characters to their key on a US
// keyboard, and whether Shift is held.
var usKeys = func() map[byte][]string {
	m := map[byte][]string{' ': {"spc"}, '\n': {"ret"}, '\t': {"tab"}}
	for c := byte('a'); c <= 'z'; c++ {
		m[c] = []string{string(c)}
		m[c-'a'+'A'] = []string{"shift", string(c)}
	}
	for c := byte('0'); c <= '9'; c++ {
		m[c] = []string{string(c)}
	}
	plain := map[byte]string{'-': "minus", '=': "equal", '[': "bracket_left", ']': "bracket_right",
		';': "semicolon", '\'': "apostrophe", '`': "grave_accent", '\\': "backslash", ',': "comma",
		'.': "dot", '/': "slash"}
	for c, k := range plain {
		m[c] = []string{k}
	}
	shifted := map[byte]string{'!': "1", '@': "2", '#': "3", '$': "4", '%': "5", '^': "6", '&': "7",
		'*': "8", '(': "9", ')': "0", '_': "minus", '+': "equal", '{': "bracket_left", '}': "bracket_right",
		':': "semicolon", '"': "apostrophe", '~': "grave_accent", '|': "backslash", '<': "comma",
		'>': "dot", '?': "slash"}
	for c, k := range shifted {
		m[c] = []string{"shift", k}
	}
	return m
}()

// ErrNotTypable refuses text with characters a US keyboard cannot type.
var ErrNotTypable = errors.New("only printable ASCII, newline and tab can be typed (US keyboard layout)")

// TextChords returns the key chords that type text on a US keyboard. A
// carriage return is dropped (a pasted CRLF is one Enter).
func TextChords(text string) ([][]string, error) {
	if len(text) > MaxTypeText {
		return nil, errdefs.Invalid("type text: %d bytes, at most %d at once", len(text), MaxTypeText)
	}
	out := make([][]string, 0, len(text))
	for i := 0; i < len(text); i++ {
		c := text[i]
		if c == '\r' {
			continue
		}
		keys, ok := usKeys[c]
		if !ok {
			return nil, errdefs.Invalid("type text: character %q at byte %d: %w", rune(c), i, ErrNotTypable)
		}
		out = append(out, keys)
	}
	return out, nil
}
