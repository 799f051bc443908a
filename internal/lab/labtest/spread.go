package labtest

import (
	"context"

	"stagehand/internal/hostlink"
)

// The spread deployment's calls of a link, made in-process to the other
// lab's endpoints as hostlink.Puller makes them over HTTP.

func (l link) AdoptVM(ctx context.Context, peer hostlink.Peer, config, vm string) (hostlink.AdoptResult, error) {
	a, err := l.end(peer.Name)
	if err != nil {
		return hostlink.AdoptResult{}, err
	}
	return a.AdoptVM(ctx, config, vm, l.self)
}

func (l link) ReleaseVM(ctx context.Context, peer hostlink.Peer, config, vm string) error {
	a, err := l.end(peer.Name)
	if err != nil {
		return err
	}
	return a.ReleaseVM(ctx, config, vm, l.self)
}

func (l link) StartPart(ctx context.Context, peer hostlink.Peer, config string) error {
	a, err := l.end(peer.Name)
	if err != nil {
		return err
	}
	return a.StartPart(ctx, config, l.self)
}

func (l link) StopPart(ctx context.Context, peer hostlink.Peer, config string, saveState bool) error {
	a, err := l.end(peer.Name)
	if err != nil {
		return err
	}
	return a.StopPart(ctx, config, l.self, saveState)
}
