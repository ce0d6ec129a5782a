package cli

import "github.com/ecr-replicator/ecr-replicator/internal/destinations"

// progressFunc has the engine report its blob transfers to p (nil: p draws nothing).
func progressFunc(p *progress) func(destinations.Progress) {
	if p == nil || p.mode == progressNone {
		return nil
	}
	return func(e destinations.Progress) { progressTo(p, e) }
}

// progressTo moves p by one engine event; a nil display, or one that draws nothing, ignores it.
func progressTo(p *progress, e destinations.Progress) {
	if p == nil || p.mode == progressNone {
		return
	}
	key := e.Destination + "@" + e.Blob
	switch e.Event {
	case destinations.BlobStarted:
		p.blobStarted(key, e.Size)
	case destinations.BlobBytes:
		p.blobBytes(key, e.Bytes)
	case destinations.BlobDone:
		p.blobDone(key)
	}
}
