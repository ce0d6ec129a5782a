// Command replicate is the replicate Lambda function (provided.al2023, `bootstrap`):
// wiring only; the logic is in internal/eventhandler.
package main

import "github.com/ecr-replicator/ecr-replicator/internal/wiring"

func main() { wiring.Start("replicate") }
