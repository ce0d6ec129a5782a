package cli

import "github.com/ecr-replicator/ecr-replicator/internal/copyengine"

// progressOption has the engine report its blob transfers to p.
func progressOption(p *progress) []copyengine.Option {
	if p == nil || p.mode == progressQuiet {
		return nil
	}
	return []copyengine.Option{copyengine.WithProgress(func(e copyengine.Progress) { progressTo(p, e) })}
}

// progressTo moves p by one engine event; a nil or quiet display ignores it.
func progressTo(p *progress, e copyengine.Progress) {
	if p == nil || p.mode == progressQuiet {
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
