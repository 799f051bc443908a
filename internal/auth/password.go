package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"

	"stagehand/internal/errdefs"
)

// Password length limits. The minimum is counted in characters, so a
// passphrase in any script is judged alike; the maximum in bytes bounds
// the work one login attempt may ask of the daemon.
const (
	MinPasswordChars = 12
	MaxPasswordBytes = 1024
)

// Argon2Params are the cost parameters of an argon2id hash. Each hash
// carries its own in the PHC string, so they can change without
// invalidating stored hashes (see NeedsRehash).
type Argon2Params struct {
	MemoryKiB uint32
	Time      uint32
	Threads   uint8
	SaltLen   int
	KeyLen    int
}

// DefaultArgon2 is OWASP's first argon2id setting (19 MiB, 2 passes, one
// lane). Measured on the development machine (2 shared cores, Go 1.26,
// x/crypto v0.59.0) at about 23 ms per hash: slow enough to make guessing
// expensive, fast enough that a login stays well under a tenth of a second.
// 32 MiB × 2 measured 46 ms and 64 MiB × 1 43 ms, at the top of the budget.
var DefaultArgon2 = Argon2Params{MemoryKiB: 19 * 1024, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}

// ErrPasswordMismatch is the error of CheckPassword when the password is
// wrong. It is of kind unauthenticated.
var ErrPasswordMismatch = errdefs.Unauthenticated("wrong user name or password")

// b64 is the PHC string's base64: standard alphabet, no padding.
var b64 = base64.RawStdEncoding

// ValidatePassword refuses a password too short or too long to be set.
func ValidatePassword(pw string) error {
	if n := utf8.RuneCountInString(pw); n < MinPasswordChars {
		return errdefs.Invalid("password: %d characters, at least %d are required", n, MinPasswordChars)
	}
	if len(pw) > MaxPasswordBytes {
		return errdefs.Invalid("password: %d bytes, at most %d are allowed", len(pw), MaxPasswordBytes)
	}
	return nil
}

// HashPassword hashes pw with argon2id and DefaultArgon2 and returns the
// PHC string $argon2id$v=19$m=M,t=T,p=P$SALT$HASH, the form to store.
func HashPassword(pw string) (string, error) {
	return hashPassword(pw, DefaultArgon2)
}

func hashPassword(pw string, p Argon2Params) (string, error) {
	if err := ValidatePassword(pw); err != nil {
		return "", err
	}
	salt := make([]byte, p.SaltLen)
	rand.Read(salt) // never fails: crypto/rand aborts the program rather than return short
	key := argon2.IDKey([]byte(pw), salt, p.Time, p.MemoryKiB, p.Threads, uint32(p.KeyLen))
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.MemoryKiB, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// CheckPassword returns nil when pw matches the PHC hash, ErrPasswordMismatch
// when it does not, and another error when the hash cannot be read (a bug or
// a damaged store, not the caller's fault). The comparison takes the same
// time whichever byte differs. An over-long password is refused before any
// hashing, so it cannot be used to make the daemon work.
func CheckPassword(hash, pw string) error {
	if len(pw) > MaxPasswordBytes {
		return errdefs.Invalid("password: %d bytes, at most %d are allowed", len(pw), MaxPasswordBytes)
	}
	p, salt, want, err := parsePHC(hash)
	if err != nil {
		return err
	}
	got := argon2.IDKey([]byte(pw), salt, p.Time, p.MemoryKiB, p.Threads, uint32(len(want)))
	if subtle.ConstantTimeCompare(got, want) != 1 {
		return ErrPasswordMismatch
	}
	return nil
}

// NeedsRehash reports whether hash was made with parameters other than
// DefaultArgon2, so that a successful login can store a fresh hash.
func NeedsRehash(hash string) bool {
	p, salt, key, err := parsePHC(hash)
	if err != nil {
		return true
	}
	d := DefaultArgon2
	return p.MemoryKiB != d.MemoryKiB || p.Time != d.Time || p.Threads != d.Threads ||
		len(salt) != d.SaltLen || len(key) != d.KeyLen
}

// errBadHash marks a stored hash that is not an argon2id PHC string this
// package can check.
var errBadHash = errors.New("not an argon2id PHC hash")

// Bounds on parameters read back from a stored hash, so a damaged or
// planted hash cannot make one check allocate gigabytes or run for minutes.
const (
	maxMemoryKiB = 1 << 20 // 1 GiB
	maxTime      = 64
)

func parsePHC(hash string) (p Argon2Params, salt, key []byte, err error) {
	fail := func(why string) (Argon2Params, []byte, []byte, error) {
		return Argon2Params{}, nil, nil, fmt.Errorf("password hash: %w: %s", errBadHash, why)
	}
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, key
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return fail("want $argon2id$v=..$m=..,t=..,p=..$salt$hash")
	}
	if parts[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return fail(fmt.Sprintf("version %q, want v=%d", parts[2], argon2.Version))
	}
	var threads uint32
	// Read, then print back: only the canonical form passes, no trailing bytes.
	_, err = fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.MemoryKiB, &p.Time, &threads)
	if err != nil || parts[3] != fmt.Sprintf("m=%d,t=%d,p=%d", p.MemoryKiB, p.Time, threads) {
		return fail(fmt.Sprintf("parameters %q", parts[3]))
	}
	if p.MemoryKiB == 0 || p.MemoryKiB > maxMemoryKiB || p.Time == 0 || p.Time > maxTime ||
		threads == 0 || threads > 255 || p.MemoryKiB < 8*threads {
		return fail(fmt.Sprintf("parameters %q out of range", parts[3]))
	}
	p.Threads = uint8(threads)
	if salt, err = b64.Strict().DecodeString(parts[4]); err != nil || len(salt) < 8 || len(salt) > 64 {
		return fail("salt")
	}
	if key, err = b64.Strict().DecodeString(parts[5]); err != nil || len(key) < 16 || len(key) > 64 {
		return fail("key")
	}
	p.SaltLen, p.KeyLen = len(salt), len(key)
	return p, salt, key, nil
}
