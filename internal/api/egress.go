package api

import (
	"stagehand/internal/api/wire"
	"stagehand/internal/lab"
)

func egressToWire(e *lab.EgressView) *wire.Egress {
	if e == nil {
		return nil
	}
	return &wire.Egress{Allow: e.Allow, Refused: e.Refused, Counted: e.Counted}
}
