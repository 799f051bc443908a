package auth

import (
	"bytes"
	"strings"
	"testing"

	"stagehand/internal/errdefs"
)

func TestNewToken(t *testing.T) {
	seen := map[string]bool{}
	for _, tc := range []struct {
		name   string
		make   func() (string, string, []byte)
		prefix string
		parse  func(string) (string, []byte, error)
		other  func(string) (string, []byte, error)
	}{
		{"api", NewToken, "sht_", ParseToken, ParseSessionToken},
		{"session", NewSessionToken, "shs_", ParseSessionToken, ParseToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for range 50 {
				plain, id, hash := tc.make()
				if !strings.HasPrefix(plain, tc.prefix+id+"_") || len(plain) != TokenLen || len(id) != 12 {
					t.Fatalf("token %q id %q: want %s<12-char id>_<43-char secret>", plain, id, tc.prefix)
				}
				if seen[id] || seen[plain] {
					t.Fatalf("token %q repeats", plain)
				}
				seen[id], seen[plain] = true, true
				gotID, secret, err := tc.parse(plain)
				if err != nil || gotID != id || len(secret) != 32 {
					t.Fatalf("parse %q: id %q secret %d bytes err %v", plain, gotID, len(secret), err)
				}
				if !VerifyToken(hash, secret) || !bytes.Equal(HashTokenSecret(secret), hash) {
					t.Fatalf("the token's own secret does not verify against its hash")
				}
				if _, _, err := tc.other(plain); errdefs.Kind(err) != errdefs.ErrUnauthenticated {
					t.Fatalf("a %s token accepted as the other kind: %v", tc.name, err)
				}
			}
		})
	}
}

func TestParseToken(t *testing.T) {
	good, id, _ := NewToken()
	secretPart := good[len("sht_")+13:]
	for _, tc := range []struct {
		name, s string
		ok      bool
	}{
		{"good", good, true},
		{"empty", "", false},
		{"prefix only", "sht_", false},
		{"no prefix", good[4:], false},
		{"bearer word kept", "Bearer " + good, false},
		{"session prefix", "shs_" + good[4:], false},
		{"upper-case id", "sht_" + strings.ToUpper(id) + "_" + secretPart, false},
		{"id with underscore", "sht_" + id[:11] + "_" + "_" + secretPart, false},
		{"missing separator", "sht_" + id + "x" + secretPart, false},
		{"one character short", good[:len(good)-1], false},
		{"one character long", good + "A", false},
		{"padded secret", "sht_" + id + "_" + secretPart[:42] + "=", false},
		{"standard base64 in secret", "sht_" + id + "_" + strings.Repeat("+", 43), false},
		// 43 characters carry 258 bits; the last two must be zero (Strict).
		{"non-canonical last character", "sht_" + id + "_" + secretPart[:42] + "B", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gotID, secret, err := ParseToken(tc.s)
			if tc.ok {
				if err != nil || gotID != id || len(secret) != 32 {
					t.Fatalf("ParseToken(%q): %q %d %v", tc.s, gotID, len(secret), err)
				}
				return
			}
			if errdefs.Kind(err) != errdefs.ErrUnauthenticated || gotID != "" || secret != nil {
				t.Fatalf("ParseToken(%q) = %q, %x, %v; want an unauthenticated error", tc.s, gotID, secret, err)
			}
			if len(tc.s) > 8 && strings.Contains(err.Error(), tc.s) {
				t.Fatalf("the error %q echoes the token", err)
			}
		})
	}
}

func TestVerifyToken(t *testing.T) {
	_, _, hash := NewToken()
	_, _, otherHash := NewToken()
	plain, _, _ := NewToken()
	_, secret, _ := ParseToken(plain)
	right := HashTokenSecret(secret)
	flipped := bytes.Clone(secret)
	flipped[31] ^= 1
	for _, tc := range []struct {
		name   string
		stored []byte
		secret []byte
		want   bool
	}{
		{"right", right, secret, true},
		{"other token's hash", otherHash, secret, false},
		{"one bit of the secret", right, flipped, false},
		{"empty stored hash", nil, secret, false},
		{"truncated stored hash", right[:16], secret, false},
		{"the secret stored in place of its hash", secret, secret, false},
		{"unrelated", hash, secret, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := VerifyToken(tc.stored, tc.secret); got != tc.want {
				t.Fatalf("VerifyToken = %v, want %v", got, tc.want)
			}
		})
	}
}
