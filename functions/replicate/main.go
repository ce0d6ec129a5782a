// Command replicate is the replicate Lambda function (provided.al2023, `bootstrap`):
// wiring only; the logic is in internal/eventhandler.
package main

import (
	"context"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/ecr-replicator/ecr-replicator/internal/gate/verify"
	"github.com/ecr-replicator/ecr-replicator/internal/wiring"
)

func main() {
	log := wiring.Logger(os.Stdout, os.Getenv)
	deps, err := wiring.Load(context.Background(), "replicate", log)
	if err != nil {
		lambda.Start(wiring.ColdStartFailed(log, err))
		return
	}
	if deps.RulesErr != nil {
		log.Error("invalid rules document", "error", deps.RulesErr.Error())
	} else {
		log.Info("rules loaded", "rules", deps.Rules.String())
	}
	// The promotion gates' signers are compiled at cold start: a key that does not parse
	// fails every invocation, naming its field. Their files are in the code directory.
	vs, err := verify.Compile(deps.Rules, verify.Options{KMS: kms.NewFromConfig(deps.AWS), Dir: os.Getenv("LAMBDA_TASK_ROOT")})
	gated := deps.Gated(os.Getenv, vs, err)
	lambda.Start(deps.Handler(os.Getenv, os.Stdout, gated).Handle)
}
