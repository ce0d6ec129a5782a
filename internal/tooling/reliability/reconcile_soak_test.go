package reliability_test

import (
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
)

// TestReconcileSoak: reconcile runs, one after the other, each after random drift (new
// tags in the source, tags and images removed from the destination) and under random
// faults that a retry can pass (throttling, 5xx, resets, SQS failing entries on its
// side), transient or lasting up to three seconds, on any call the reconcile makes. After
// every run the destination must hold what the source holds (divergence 0) and the
// dead-letter queue must be empty. make test runs two rounds; make soak runs it for
// SOAK_DURATION (seed SOAK_SEED).
func TestReconcileSoak(t *testing.T) {
	rounds, dur := 2, time.Duration(0)
	if ds := os.Getenv("SOAK_DURATION"); ds != "" {
		d, err := time.ParseDuration(ds)
		if err != nil {
			t.Fatal(err)
		}
		rounds, dur = 1_000_000, d
	}
	seed := int64(1)
	if s, err := strconv.ParseInt(os.Getenv("SOAK_SEED"), 10, 64); err == nil {
		seed = s
	}
	rnd := rand.New(rand.NewSource(seed))
	w := sandboxtest.Start(t)
	base, _ := random.Image(128, 1)
	names := seedDriftOf(t, w, 8, base)
	s := startReconcile(t, w, reconcileRules(w, ""))
	src := ecr.NewFromConfig(w.Source.Config)
	raw, _ := base.RawManifest()
	mt, _ := base.MediaType()
	deadline := time.Now().Add(dur)
	fired, runs := 0, 0
	for round := 0; round < rounds && (dur == 0 || time.Now().Before(deadline)); round++ {
		// Drift: new tags in the source, tags and images gone from the destination.
		for range 1 + rnd.Intn(4) {
			repo := names[rnd.Intn(len(names))]
			variant := strings.Replace(string(raw), `"config"`, fmt.Sprintf(`"annotations":{"soak":"%d-%d"},"config"`, round, rnd.Int()), 1)
			if _, err := src.PutImage(w.Ctx, &ecr.PutImageInput{RepositoryName: aws.String(repo), ImageManifest: aws.String(variant),
				ImageManifestMediaType: aws.String(string(mt)), ImageTag: aws.String(fmt.Sprintf("s%d", rnd.Intn(6)))}); err != nil {
				t.Fatal(err)
			}
		}
		for range rnd.Intn(3) {
			repo := "mirror/" + names[rnd.Intn(len(names))]
			for tag := range w.Dest.Tags(t, w.Ctx, repo) {
				if _, err := ecr.NewFromConfig(w.Dest.Config).BatchDeleteImage(w.Ctx, &ecr.BatchDeleteImageInput{RepositoryName: aws.String(repo),
					ImageIds: []ecrtypes.ImageIdentifier{{ImageTag: aws.String(tag)}}}); err != nil {
					t.Fatal(err)
				}
				break
			}
		}
		armed := soakFaults(t, w, rnd)
		s.trigger(t, `{}`)
		s.wait(t)
		for _, a := range armed {
			fired += a.Answered()
			a.Disarm()
		}
		s.wait(t) // anything a fault held back
		runs++
		if bad := outOfSync(t, w, names); len(bad) > 0 {
			t.Fatalf("round %d: divergence in %d repositories: %v", round, len(bad), bad)
		}
		if dl := s.deadLetters(t); len(dl) > 0 {
			t.Fatalf("round %d: %d messages in the dead-letter queue", round, len(dl))
		}
	}
	t.Logf("SOAK reconcile: %d runs, %d faults fired, %d work items delivered more than once, divergence 0", runs, fired, s.duplicates())
}

// soakFaults arms one to three faults a retry can pass, on random calls of the reconcile.
func soakFaults(t *testing.T, w *sandboxtest.World, rnd *rand.Rand) []*sandbox.ArmedAPIFault {
	t.Helper()
	targets := []sandbox.APIFault{
		{Service: "ecr", Operation: "DescribeRepositories"},
		{Service: "ecr", Operation: "DescribeImages", Account: srcAcct},
		{Service: "ecr", Operation: "DescribeImages", Account: dstAcct},
		{Service: "sts", Operation: "AssumeRole"},
		{Service: "sqs", Operation: "SendMessageBatch", Resource: "*:rec-reconcile"},
		{Service: "sqs", Operation: "SendMessageBatch", Resource: "*:rec-copy"},
	}
	codes := map[string][]string{
		"ecr": {"ThrottlingException", "ServiceUnavailableException", "ServerException"},
		"sts": {"Throttling", "ServiceUnavailable"},
		"sqs": {"ThrottlingException", "ServiceUnavailable"},
	}
	var out []*sandbox.ArmedAPIFault
	for range 1 + rnd.Intn(3) {
		f := targets[rnd.Intn(len(targets))]
		switch k := rnd.Intn(4); {
		case k == 0:
			f.Reset = true
		case k == 1 && f.Service == "sqs":
			f.Entries = 1 + rnd.Intn(3)
		default:
			c := codes[f.Service]
			f.Code = c[rnd.Intn(len(c))]
		}
		f.Count = 1 + rnd.Intn(4)
		persistent := rnd.Intn(3) == 0
		if persistent {
			f.Count = -1
		}
		a, err := w.SB.ArmAPIFault(f)
		if err != nil {
			t.Fatal(err)
		}
		if persistent {
			time.AfterFunc(time.Duration(500+rnd.Intn(2500))*time.Millisecond, a.Disarm)
		}
		out = append(out, a)
	}
	return out
}
