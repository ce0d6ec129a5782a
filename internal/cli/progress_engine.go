package cli

import "github.com/ecr-replicator/ecr-replicator/internal/replication"

// progressOption connects the engine's per-blob events to the display. Until the engine
// reports blobs, progress advances per finished item (the clock still ticks).
func progressOption(p *progress) []replication.Option {
	return nil
}
