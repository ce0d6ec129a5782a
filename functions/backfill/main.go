// Command backfill is the backfill Lambda function (provided.al2023, `bootstrap`):
// wiring only, configured by its environment (read here, once); the logic is in internal/backfill.
package main

import (
	"os"

	"github.com/ecr-replicator/ecr-replicator/internal/wiring"
)

func main() { wiring.Start("backfill", os.Getenv) }
