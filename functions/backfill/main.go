// Command backfill is the backfill Lambda function (provided.al2023, `bootstrap`):
// wiring only; the logic is in internal/backfill.
package main

import "github.com/ecr-replicator/ecr-replicator/internal/wiring"

func main() { wiring.Start("backfill") }
