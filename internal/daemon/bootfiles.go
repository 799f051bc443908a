package daemon

import (
	"stagehand/internal/errdefs"
	"stagehand/internal/store"
)

// bootFileByHash finds the template boot file (kernel or initrd) whose
// recorded content hash is sum, as a frozen layer for the host server:
// boot files never change after import, and a host adopting a
// configuration that boots one pulls it by hash. Only paths the store
// recorded are returned, never anything of the request.
func bootFileByHash(tx store.Tx, sum string) (*store.Layer, error) {
	ts, err := tx.Templates().List()
	if err != nil {
		return nil, err
	}
	for _, t := range ts {
		switch sum {
		case t.KernelSHA256:
			if t.Kernel != "" {
				return &store.Layer{Path: t.Kernel, Frozen: true, SHA256: sum, Size: t.KernelSize}, nil
			}
		case t.InitrdSHA256:
			if t.Initrd != "" {
				return &store.Layer{Path: t.Initrd, Frozen: true, SHA256: sum, Size: t.InitrdSize}, nil
			}
		}
	}
	return nil, errdefs.NotFound("no frozen layer nor boot file has sha256 %s", sum)
}
