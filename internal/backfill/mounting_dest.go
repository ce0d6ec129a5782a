package backfill

import (
	"context"
	"errors"
	"maps"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"

	"github.com/ecr-replicator/ecr-replicator/internal/destinations"
	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
)

// What the plan reads of the destination repositories to count what blob mounting saves:
// where their layers can be mounted from (their encryption: ECR mounts only between
// repositories of the same encryption type and key, blob-mounting.html) and which layers
// they already hold (those are not uploaded there, so not mounted either).

// destFacts is what the plan knows of one destination repository, for mounting.
type destFacts struct {
	encryption string          // as ecraccess.Repository.Encryption has it; "": unknown
	held       map[string]bool // of the layers its copies bring, those it holds already
}

// destinationFacts reads, for each destination repository of the uploads whose images
// were read, its encryption and the layers it holds. An existing repository: with the
// identity its copies use, ecr:DescribeRepositories (100 names a call) and
// ecr:BatchCheckLayerAvailability (100 layers a call; at most MaxMountingReads calls).
// One the copies create: the encryption they create it with (the rule's kmsKey, else the
// source repository's type, read with DescribeRepositories), holding nothing. A
// repository left out (a read failed, the bound) is not counted. srcErr: reading the
// source's settings failed; destErrs: reading a destination registry did.
func (r *invocation) destinationFacts(ctx context.Context, src *ecr.Client, uploads []upload, images map[string]readImage) (_ map[ecrname.Repo]destFacts, srcErr error, destErrs map[ecrname.Registry]error) {
	brought := map[ecrname.Repo]map[string]bool{}     // the layers its copies bring
	existing := map[ecraccess.Access][]ecrname.Repo{} // by the identity that copies there
	created := map[ecrname.Repo]upload{}
	for _, u := range uploads {
		img, ok := images[u.key()]
		if !ok {
			continue
		}
		d := u.dest()
		if brought[d] == nil {
			brought[d] = map[string]bool{}
			if u.exists {
				a := destinations.DestinationAccess(u.target.Destination)
				existing[a] = append(existing[a], d)
			} else {
				created[d] = u
			}
		}
		for _, l := range img.layers {
			brought[d][l.digest] = true
		}
	}
	out := map[ecrname.Repo]destFacts{}
	srcErr = r.createdFacts(ctx, src, created, out)
	destErrs = map[ecrname.Registry]error{}
	budget := MaxMountingReads
	for _, a := range slices.SortedFunc(maps.Keys(existing), compareAccess) {
		if err := r.existingFacts(ctx, a, existing[a], brought, &budget, out); err != nil {
			reg := ecrname.Registry{AccountID: a.AccountID, Region: a.Region}
			destErrs[reg] = errors.Join(destErrs[reg], err)
		}
	}
	return out, srcErr, destErrs
}

func compareAccess(x, y ecraccess.Access) int {
	for _, c := range [][2]string{{x.AccountID, y.AccountID}, {x.Region, y.Region}, {x.RoleARN, y.RoleARN}, {x.ExternalID, y.ExternalID}} {
		if c[0] != c[1] {
			if c[0] < c[1] {
				return -1
			}
			return 1
		}
	}
	return 0
}

// createdFacts: the repositories the copies create, with the encryption they are created
// with (as destinations creates them: the rule's kmsKey; else AES256 for a source of
// AES256; a source of KMS gets the destination's AWS managed key, whose ARN only the
// created repository says — unknown here).
func (r *invocation) createdFacts(ctx context.Context, src *ecr.Client, created map[ecrname.Repo]upload, out map[ecrname.Repo]destFacts) error {
	var names []string // source repositories whose encryption decides
	for d, u := range created {
		if key := u.target.Destination.KMSKey; key != "" {
			out[d] = destFacts{encryption: string(ecrtypes.EncryptionTypeKms) + " " + key, held: map[string]bool{}}
		} else if !slices.Contains(names, u.repo) {
			names = append(names, u.repo)
		}
	}
	slices.Sort(names)
	enc, err := describeEncryption(ctx, src, r.srcAccount, names)
	for d, u := range created {
		e, ok := enc[u.repo]
		if _, done := out[d]; done || !ok {
			continue
		}
		if e == "" || e == string(ecrtypes.EncryptionTypeAes256) {
			out[d] = destFacts{encryption: string(ecrtypes.EncryptionTypeAes256), held: map[string]bool{}}
		}
	}
	return err
}

// existingFacts reads the encryption and held layers of existing repositories that one
// identity copies into.
func (r *invocation) existingFacts(ctx context.Context, a ecraccess.Access, repos []ecrname.Repo, brought map[ecrname.Repo]map[string]bool, budget *int, out map[ecrname.Repo]destFacts) error {
	reg, err := r.b.Resolver.Client(ctx, a)
	if err != nil {
		return err
	}
	names := make([]string, len(repos))
	for i, d := range repos {
		names[i] = d.Name
	}
	slices.Sort(names)
	enc, err := describeEncryption(ctx, reg.API(), a.AccountID, names)
	for _, d := range repos {
		e, ok := enc[d.Name]
		if !ok || e == "" {
			continue
		}
		if *budget <= 0 || r.timeUp() {
			break
		}
		held, calls, herr := heldLayers(ctx, reg.API(), a.AccountID, d.Name, slices.Sorted(maps.Keys(brought[d])))
		*budget -= calls
		if herr != nil {
			err = errors.Join(err, herr)
			continue
		}
		out[d] = destFacts{encryption: e, held: held}
	}
	return err
}

// describeEncryption reads the encryption of repositories (ecr:DescribeRepositories, 100
// names a call: API_DescribeRepositories); a call that fails leaves its names out.
func describeEncryption(ctx context.Context, api *ecr.Client, registryID string, names []string) (map[string]string, error) {
	out := map[string]string{}
	var errs error
	for batch := range slices.Chunk(names, 100) {
		res, err := api.DescribeRepositories(ctx, &ecr.DescribeRepositoriesInput{RegistryId: aws.String(registryID), RepositoryNames: batch})
		if err != nil {
			errs = errors.Join(errs, ecraccess.WrapAWS("ecr:DescribeRepositories", err))
			continue
		}
		for _, repo := range res.Repositories {
			out[aws.ToString(repo.RepositoryName)] = ecraccess.EncryptionOf(repo.EncryptionConfiguration)
		}
	}
	return out, errs
}

// heldLayers asks which of the layers a repository holds (ecr:BatchCheckLayerAvailability,
// 1–100 layerDigests a call: API_BatchCheckLayerAvailability), as the copy's blob HEAD
// would: a layer listed and not UNAVAILABLE is held; one reported as a failure
// (MissingLayerDigest) is not. It returns the calls made.
func heldLayers(ctx context.Context, api *ecr.Client, registryID, repo string, digests []string) (map[string]bool, int, error) {
	held := map[string]bool{}
	calls := 0
	for batch := range slices.Chunk(digests, 100) {
		calls++
		res, err := api.BatchCheckLayerAvailability(ctx, &ecr.BatchCheckLayerAvailabilityInput{RegistryId: aws.String(registryID), RepositoryName: aws.String(repo), LayerDigests: batch})
		if err != nil {
			return nil, calls, ecraccess.WrapAWS("ecr:BatchCheckLayerAvailability", err)
		}
		for _, l := range res.Layers {
			if l.LayerAvailability != ecrtypes.LayerAvailabilityUnavailable {
				held[aws.ToString(l.LayerDigest)] = true
			}
		}
	}
	return held, calls, nil
}
