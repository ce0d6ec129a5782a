package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
)

var amd64 = v1.Platform{OS: "linux", Architecture: "amd64"}

// seed pushes every scenario's images to the source registry (once) and the in-sync
// copy of scenario 2 to its own destination registry, and starts the sandbox for 4-ecr.
func (b *bench) seed(ctx context.Context, ntags int, want map[string]bool) ([]*scenario, error) {
	var scs []*scenario
	src := b.src.addr
	if want["1"] {
		log.Printf("seeding scenario 1 (%s MiB)", mib(scaled(1<<30, b.scale)))
		var layers []v1.Layer
		per := scaled(128<<20, b.scale)
		for i := 0; i < 8; i++ {
			l, err := newRandLayer(fmt.Sprintf("s1-%d-%d", i, per), per)
			if err != nil {
				return nil, err
			}
			layers = append(layers, l)
		}
		img, err := newImage(amd64, layers...)
		if err != nil {
			return nil, err
		}
		if err := push(ctx, src, "s1/big", "v1", img, nil); err != nil {
			return nil, err
		}
		d, _ := img.Digest()
		scs = append(scs, &scenario{id: "1", title: fmt.Sprintf("1. One image, %s MiB in 8 layers, cold copy", mib(8*per)), repo: "s1/big", tag: "v1", cold: true, digest: d.String()})
	}

	var s2imgs []v1.Image
	var s2tags []string
	base := scaled(20<<20, b.scale)
	if want["2"] || want["4"] {
		log.Printf("seeding scenario 2 (%d tags)", ntags)
		bl, err := newRandLayer(fmt.Sprintf("s2-base-%d", base), base)
		if err != nil {
			return nil, err
		}
		for i := 0; i < ntags; i++ {
			l, err := newRandLayer(fmt.Sprintf("s2-tag-%d", i), 64<<10)
			if err != nil {
				return nil, err
			}
			img, err := newImage(amd64, bl, l)
			if err != nil {
				return nil, err
			}
			tag := fmt.Sprintf("t%03d", i)
			if err := push(ctx, src, "s2/app", tag, img, nil); err != nil {
				return nil, err
			}
			s2imgs, s2tags = append(s2imgs, img), append(s2tags, tag)
		}
	}
	if want["2"] {
		scs = append(scs, &scenario{id: "2", title: fmt.Sprintf("2. %d tags sharing a %s MiB base (+64 KiB each), cold copy of all tags", ntags, mib(base)), repo: "s2/app", tags: s2tags, allTags: true, cold: true})
	}
	if want["3"] {
		per := scaled(16<<20, b.scale)
		log.Printf("seeding scenario 3 (4 platforms × 2 × %s MiB)", mib(per))
		idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
		for i, p := range []v1.Platform{amd64, {OS: "linux", Architecture: "arm64"}, {OS: "linux", Architecture: "arm", Variant: "v7"}, {OS: "linux", Architecture: "ppc64le"}} {
			var layers []v1.Layer
			for j := 0; j < 2; j++ {
				l, err := newRandLayer(fmt.Sprintf("s3-%d-%d-%d", i, j, per), per)
				if err != nil {
					return nil, err
				}
				layers = append(layers, l)
			}
			img, err := newImage(p, layers...)
			if err != nil {
				return nil, err
			}
			p := p
			idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
		}
		if err := push(ctx, src, "s3/multi", "v1", idx, nil); err != nil {
			return nil, err
		}
		d, _ := idx.Digest()
		scs = append(scs, &scenario{id: "3", title: fmt.Sprintf("3. A 4-platform index (%s MiB per platform), cold copy", mib(2*per)), repo: "s3/multi", tag: "v1", cold: true, digest: d.String()})
	}
	if want["5"] {
		sc, err := b.seedMounting(ctx)
		if err != nil {
			return nil, fmt.Errorf("scenario 5: %w", err)
		}
		scs = append(scs, sc)
	}
	if want["4"] {
		log.Printf("seeding scenario 4 (in-sync destination)")
		var err error
		if b.dstSync, err = startRegistry(b.registryBin, filepath.Join(b.work, "reg-dst-sync")); err != nil {
			return nil, err
		}
		for i, img := range s2imgs {
			if err := push(ctx, b.dstSync.addr, "s2/app", s2tags[i], img, nil); err != nil {
				return nil, err
			}
		}
		scs = append(scs, &scenario{id: "4", title: fmt.Sprintf("4. Scenario 2 again, already in sync (plain registries, %d tags)", ntags), repo: "s2/app", tags: s2tags, allTags: true})
		if err := startSandbox(ctx, s2imgs, s2tags); err != nil {
			log.Printf("sandbox scenario not available: %v", err)
		} else {
			scs = append(scs, &scenario{id: "4-ecr", title: fmt.Sprintf("4b. Scenario 2 again, already in sync, against the sandbox's ECR (API + registries, %d tags)", ntags), repo: "s2/app", tags: s2tags, allTags: true, ecr: true})
		}
	}
	return scs, nil
}

// --- the sandbox (ECR API and registries), each behind a delaying proxy ---

type sandboxState struct {
	sb      *sandbox.Sandbox
	proxies []*proxy
	target  target
	apiAddr string // the ECR/STS API behind its delay proxy
	err     error
}

var sbx *sandboxState

func startSandbox(ctx context.Context, imgs []v1.Image, tags []string) error {
	sb, err := sandbox.New(sandbox.TwoAccounts("bench"))
	if err != nil {
		return err
	}
	sbx = &sandboxState{sb: sb}
	region := sandbox.DefaultRegion
	hosts := map[string]string{}  // account → registry host
	tokens := map[string]string{} // account → password
	for _, acct := range []string{sandbox.SourceAccount, sandbox.DestinationAccount} {
		key, secret, err := sb.Credentials(acct, sandbox.AdminUser)
		if err != nil {
			return err
		}
		client := ecr.New(ecr.Options{
			Region:       region,
			BaseEndpoint: aws.String(sb.APIURL()),
			Credentials:  credentials.NewStaticCredentialsProvider(key, secret, ""),
		})
		in := &ecr.CreateRepositoryInput{RepositoryName: aws.String("s2/app")}
		if acct == sandbox.DestinationAccount {
			// The replicator's (docs/SECURITY.md): it writes only to repositories it owns.
			in.Tags = []ecrtypes.Tag{{Key: aws.String(ecraccess.OwnerTag), Value: aws.String(sandbox.SourceAccount)}}
		}
		if _, err := client.CreateRepository(ctx, in); err != nil {
			return fmt.Errorf("CreateRepository in %s: %w", acct, err)
		}
		out, err := client.GetAuthorizationToken(ctx, &ecr.GetAuthorizationTokenInput{})
		if err != nil {
			return fmt.Errorf("GetAuthorizationToken in %s: %w", acct, err)
		}
		raw, err := base64.StdEncoding.DecodeString(aws.ToString(out.AuthorizationData[0].AuthorizationToken))
		if err != nil {
			return err
		}
		user, pass, _ := strings.Cut(string(raw), ":")
		host := strings.TrimPrefix(aws.ToString(out.AuthorizationData[0].ProxyEndpoint), "http://")
		hosts[acct], tokens[acct] = host, pass
		auth := &authn.Basic{Username: user, Password: pass}
		for i, img := range imgs {
			if err := push(ctx, host, "s2/app", tags[i], img, auth); err != nil {
				return fmt.Errorf("seeding the sandbox (%s): %w", acct, err)
			}
		}
	}
	srcP, err := newProxy(hosts[sandbox.SourceAccount], nil)
	if err != nil {
		return err
	}
	dstP, err := newProxy(hosts[sandbox.DestinationAccount], nil)
	if err != nil {
		return err
	}
	apiHost := strings.TrimPrefix(sb.APIURL(), "http://")
	apiP, err := newProxy(apiHost, strings.NewReplacer(
		hosts[sandbox.SourceAccount], srcP.addr(), hosts[sandbox.DestinationAccount], dstP.addr()))
	if err != nil {
		return err
	}
	sbx.proxies = []*proxy{apiP, srcP, dstP}
	sbx.apiAddr = apiP.addr()
	sbx.target = target{src: srcP.addr(), dst: dstP.addr(), auth: map[string][2]string{
		srcP.addr(): {"AWS", tokens[sandbox.SourceAccount]},
		dstP.addr(): {"AWS", tokens[sandbox.DestinationAccount]},
	}}
	return nil
}

func sandboxTarget() (*sandboxState, error) {
	if sbx == nil || sbx.proxies == nil {
		return nil, fmt.Errorf("sandbox not started")
	}
	return sbx, nil
}

func stopSandbox() {
	if sbx == nil {
		return
	}
	for _, p := range sbx.proxies {
		p.close()
	}
	sbx.sb.Close()
}

// syncArgv is how ours runs scenario 4b: `ecr-replicator sync` over a rules document
// naming the sandbox's destination account and role, with the SDK pointed at the API
// behind its delay proxy. It plans from DescribeImages on both sides.
func syncArgv(bin, tmp string) ([]string, error) {
	st, err := sandboxTarget()
	if err != nil {
		return nil, err
	}
	key, secret, err := st.sb.Credentials(sandbox.SourceAccount, sandbox.SourceUser)
	if err != nil {
		return nil, err
	}
	rules := fmt.Sprintf(`{"rules":[{"name":"bench","repositories":["s2/app"],"destinations":[{"accountId":%q,"region":%q,"roleArn":%q,"externalId":"bench"}]}]}`,
		sandbox.DestinationAccount, sandbox.DefaultRegion, sandbox.RoleARN(sandbox.DestinationAccount, sandbox.DestinationRole))
	file := filepath.Join(tmp, "rules.json")
	if err := os.WriteFile(file, []byte(rules), 0o600); err != nil {
		return nil, err
	}
	api := "http://" + st.apiAddr
	// env(1) execs the tool in place, so what is measured is ecr-replicator itself.
	return []string{"env", "AWS_ENDPOINT_URL_ECR=" + api, "AWS_ENDPOINT_URL_STS=" + api,
		"AWS_ACCESS_KEY_ID=" + key, "AWS_SECRET_ACCESS_KEY=" + secret, "AWS_REGION=" + sandbox.DefaultRegion,
		"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null",
		bin, "sync", "--rules", file}, nil
}
