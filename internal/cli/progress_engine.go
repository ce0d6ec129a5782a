package cli

import "github.com/ecr-replicator/ecr-replicator/internal/copyengine"

// progressOption connects the engine's per-blob events to the display, so the bar moves
// with bytes, not only when an image finishes.
func progressOption(p *progress) []copyengine.Option {
	if p == nil || p.mode == progressQuiet {
		return nil
	}
	return []copyengine.Option{copyengine.WithProgress(func(e copyengine.Progress) {
		key := e.Destination + "@" + e.Blob
		switch e.Event {
		case copyengine.BlobStarted:
			p.blobStarted(key, e.Size)
		case copyengine.BlobBytes:
			p.blobBytes(key, e.Bytes)
		case copyengine.BlobDone:
			p.blobDone(key)
		}
	})}
}
