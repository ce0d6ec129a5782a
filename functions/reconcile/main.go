// Command reconcile is the reconcile Lambda function (provided.al2023, `bootstrap`):
// wiring only; the logic is in internal/reconcile.
package main

import "github.com/ecr-replicator/ecr-replicator/internal/wiring"

func main() { wiring.Start("reconcile") }
