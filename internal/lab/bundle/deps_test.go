package bundle_test

import (
	"testing"

	"stagehand/internal/deptest"
)

// TestBundleIsPureFormat keeps the format apart from the lab that uses
// it: reading and writing a bundle needs no store, job, lab or API.
func TestBundleIsPureFormat(t *testing.T) {
	deptest.Never(t, "stagehand/internal/lab/bundle",
		"stagehand/internal/lab", "stagehand/internal/store", "stagehand/internal/jobs", "stagehand/internal/api")
}
