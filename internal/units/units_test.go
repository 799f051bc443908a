package units

import "testing"

func TestBytes(t *testing.T) {
	for n, want := range map[int64]string{
		0:                 "0 B",
		512:               "512 B",
		1024:              "1.0 KiB",
		1536 * 1024:       "1.5 MiB",
		3 << 30:           "3.0 GiB",
		(1 << 40) + 1<<39: "1.5 TiB",
	} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}
