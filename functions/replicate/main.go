// Command replicate is the replicate Lambda function (provided.al2023, `bootstrap`):
// wiring only, configured by its environment (read here, once); the logic is in internal/eventhandler. It alone verifies the signatures
// promotion gates require, so it alone links the signature libraries.
package main

import (
	"os"

	"github.com/ecr-replicator/ecr-replicator/internal/gate/verify"
	"github.com/ecr-replicator/ecr-replicator/internal/wiring"
)

func main() { wiring.Start("replicate", os.Getenv, verify.ForLambda) }
