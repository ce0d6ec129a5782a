package cli

import "github.com/ecr-replicator/ecr-replicator/internal/copyengine"

// progressOption has the engine report its blob transfers to p.
func progressOption(p *progress) []copyengine.Option {
	if p == nil || p.mode == progressNone {
		return nil
	}
	return []copyengine.Option{copyengine.WithProgress(func(e copyengine.Progress) { progressTo(p, e) })}
}

// progressTo moves p by one engine event; a nil display, or one that draws nothing, ignores it.
func progressTo(p *progress, e copyengine.Progress) {
	if p == nil || p.mode == progressNone {
		return
	}
	key := e.Destination + "@" + e.Blob
	switch e.Event {
	case copyengine.BlobStarted:
		p.blobStarted(key, e.Size)
	case copyengine.BlobBytes:
		p.blobBytes(key, e.Bytes)
	case copyengine.BlobDone:
		p.blobDone(key)
	}
}
