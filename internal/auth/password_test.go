package auth

import (
	"errors"
	"strings"
	"testing"
	"time"

	"stagehand/internal/errdefs"
)

func TestValidatePassword(t *testing.T) {
	for _, tc := range []struct {
		name, pw string
		want     error // the kind, nil when accepted
		msg      string
	}{
		{"empty", "", errdefs.ErrInvalid, "0 characters, at least 12"},
		{"eleven", "abcdefghijk", errdefs.ErrInvalid, "11 characters, at least 12"},
		{"twelve", "abcdefghijkl", nil, ""},
		// 12 characters of 3 bytes each: counted as characters, not bytes.
		{"twelve CJK", strings.Repeat("鍵", 12), nil, ""},
		{"eleven CJK is 33 bytes", strings.Repeat("鍵", 11), errdefs.ErrInvalid, "11 characters"},
		{"1024 bytes", strings.Repeat("a", 1024), nil, ""},
		{"1025 bytes", strings.Repeat("a", 1025), errdefs.ErrInvalid, "1025 bytes, at most 1024"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidatePassword(tc.pw)
			if errdefs.Kind(err) != tc.want || (err != nil) != (tc.want != nil) {
				t.Fatalf("ValidatePassword: %v, want kind %v", err, tc.want)
			}
			if err != nil && !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("message %q does not say %q", err, tc.msg)
			}
			if _, herr := HashPassword(tc.pw); (herr != nil) != (tc.want != nil) {
				t.Errorf("HashPassword refused %v, ValidatePassword %v", herr, err)
			}
		})
	}
}

func TestCheckPassword(t *testing.T) {
	const pw = "correct horse battery staple"
	hash, err := HashPassword(pw)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(hash, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash %q is not the PHC form with the default parameters", hash)
	}
	if again, _ := HashPassword(pw); again == hash {
		t.Fatal("two hashes of one password are equal: the salt is not random")
	}
	// A hash made with other parameters still checks: they travel in it.
	cheap, err := hashPassword(pw, Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1, SaltLen: 8, KeyLen: 16})
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(hash, "$")
	for _, tc := range []struct {
		name, hash, pw string
		want           error // nil, ErrPasswordMismatch, or errBadHash
	}{
		{"right", hash, pw, nil},
		{"wrong", hash, pw + "!", ErrPasswordMismatch},
		{"empty", hash, "", ErrPasswordMismatch},
		{"case", hash, strings.ToUpper(pw), ErrPasswordMismatch},
		{"other parameters, right", cheap, pw, nil},
		{"other parameters, wrong", cheap, "correct horse battery stapl", ErrPasswordMismatch},
		{"not PHC", "plaintext", pw, errBadHash},
		{"bcrypt", "$2a$10$abcdefghijklmnopqrstuu", pw, errBadHash},
		{"argon2i", strings.Replace(hash, "argon2id", "argon2i", 1), pw, errBadHash},
		{"version 16", strings.Replace(hash, "v=19", "v=16", 1), pw, errBadHash},
		{"trailing bytes in parameters", strings.Replace(hash, "p=1$", "p=1x$", 1), pw, errBadHash},
		{"huge memory", strings.Replace(hash, "m=19456", "m=4194304", 1), pw, errBadHash},
		{"zero passes", strings.Replace(hash, "t=2", "t=0", 1), pw, errBadHash},
		{"short salt", strings.Join([]string{"", parts[1], parts[2], parts[3], "YWJj", parts[5]}, "$"), pw, errBadHash},
		{"bad key base64", strings.Join([]string{"", parts[1], parts[2], parts[3], parts[4], "!!!!"}, "$"), pw, errBadHash},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckPassword(tc.hash, tc.pw)
			if !errors.Is(err, tc.want) || (err == nil) != (tc.want == nil) {
				t.Fatalf("CheckPassword: %v, want %v", err, tc.want)
			}
		})
	}
	if err := CheckPassword(hash, strings.Repeat("a", MaxPasswordBytes+1)); errdefs.Kind(err) != errdefs.ErrInvalid {
		t.Errorf("an over-long password: %v, want invalid", err)
	}
	if errdefs.Kind(ErrPasswordMismatch) != errdefs.ErrUnauthenticated {
		t.Errorf("a wrong password is of kind %v, want unauthenticated", errdefs.Kind(ErrPasswordMismatch))
	}
	if NeedsRehash(hash) || !NeedsRehash(cheap) || !NeedsRehash("junk") {
		t.Errorf("NeedsRehash: default %v, cheap %v, junk %v; want false, true, true",
			NeedsRehash(hash), NeedsRehash(cheap), NeedsRehash("junk"))
	}
}

// TestPasswordCost states what a hash costs here: the parameters are meant
// to take 20–50 ms. It logs the best of five and fails only far outside the
// range (the machine is shared, so the bound is loose).
func TestPasswordCost(t *testing.T) {
	if testing.Short() {
		t.Skip("timing")
	}
	hash, err := HashPassword("correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	best := time.Hour
	for range 5 {
		start := time.Now()
		_ = CheckPassword(hash, "correct horse battery staple")
		best = min(best, time.Since(start))
	}
	t.Logf("argon2id m=%d KiB t=%d p=%d: best of 5 checks %v", DefaultArgon2.MemoryKiB, DefaultArgon2.Time, DefaultArgon2.Threads, best)
	if best < 5*time.Millisecond || best > 500*time.Millisecond {
		t.Errorf("one check took %v; the parameters aim at 20–50 ms", best)
	}
}
