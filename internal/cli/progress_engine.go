package cli

import "github.com/ecr-replicator/ecr-replicator/internal/replication"

// progressOption connects the engine's per-blob events to the display, so the bar moves
// with bytes, not only when an image finishes.
func progressOption(p *progress) []replication.Option {
	if p == nil || p.mode == progressQuiet {
		return nil
	}
	return []replication.Option{replication.WithProgress(func(e replication.Progress) {
		key := e.Destination + "@" + e.Blob
		switch e.Event {
		case replication.BlobStarted:
			p.blobStarted(key, e.Size)
		case replication.BlobBytes:
			p.blobBytes(key, e.Bytes)
		case replication.BlobDone:
			p.blobDone(key)
		}
	})}
}
