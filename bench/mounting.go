package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
)

// Scenario 5 (blob mounting): many repositories sharing a base image, copied into one
// destination registry, against the sandbox's ECR on both sides — the destination with
// blob mounting (BLOB_MOUNTING) on for crane, regctl and ours, off for ours once more. The
// destination repositories are deleted and created again, empty, before every run.

const mountRepos = 50

// mountBench is scenario 5's sandbox and what its runs need.
type mountBench struct {
	st       *sandboxState
	dst      *ecr.Client // the destination account's admin
	repos    []string
	digests  map[string]string // repository → the v1 digest
	unique   int64             // the bytes of all the images' distinct blobs
	dstHost  string            // the destination registry, not behind its proxy
	dstAuth  authn.Authenticator
	srcProxy string
}

var mnt *mountBench

// seedMounting starts scenario 5's sandbox and pushes its images: a base of four layers
// (200 MiB in all at scale 1) shared by mountRepos repositories, each adding a layer of
// its own (5 MiB). The base is pushed once and mounted into the other source repositories.
func (b *bench) seedMounting(ctx context.Context) (*scenario, error) {
	baseSize, ownSize := scaled(200<<20, b.scale), scaled(5<<20, b.scale)
	log.Printf("seeding scenario 5 (%d repositories: %s MiB base + %s MiB each)", mountRepos, mib(baseSize), mib(ownSize))
	sb, err := sandbox.New(sandbox.TwoAccounts("bench"))
	if err != nil {
		return nil, err
	}
	m := &mountBench{st: &sandboxState{sb: sb}, digests: map[string]string{}}
	mnt = m
	sides := map[string]*side5{}
	for _, acct := range []string{sandbox.SourceAccount, sandbox.DestinationAccount} {
		if sides[acct], err = newSide5(ctx, sb, acct); err != nil {
			return nil, err
		}
		if _, err := sides[acct].api.PutAccountSetting(ctx, &ecr.PutAccountSettingInput{Name: aws.String("BLOB_MOUNTING"), Value: aws.String("ENABLED")}); err != nil {
			return nil, err
		}
	}
	src, dst := sides[sandbox.SourceAccount], sides[sandbox.DestinationAccount]
	m.dst, m.dstHost, m.dstAuth = dst.api, dst.host, dst.auth
	var base []v1.Layer
	for i := range 4 {
		l, err := newRandLayer(fmt.Sprintf("s5-base-%d-%d", i, baseSize), baseSize/4)
		if err != nil {
			return nil, err
		}
		base = append(base, l)
		m.unique += baseSize / 4
	}
	for i := range mountRepos {
		repo := fmt.Sprintf("s5/app-%02d", i)
		own, err := newRandLayer(fmt.Sprintf("s5-own-%d-%d", i, ownSize), ownSize)
		if err != nil {
			return nil, err
		}
		img, err := newImage(amd64, append(append([]v1.Layer{}, base...), own)...)
		if err != nil {
			return nil, err
		}
		if err := src.seed(ctx, repo, img, base, m.repos); err != nil {
			return nil, fmt.Errorf("seeding %s: %w", repo, err)
		}
		d, _ := img.Digest()
		cfg, _ := img.RawConfigFile()
		m.digests[repo], m.repos = d.String(), append(m.repos, repo)
		m.unique += ownSize + int64(len(cfg))
	}
	if err := m.proxies(src, dst); err != nil {
		return nil, err
	}
	return &scenario{id: "5", title: fmt.Sprintf("5. %d repositories sharing a %s MiB base (+%s MiB each) into one destination registry, cold, against the sandbox's ECR",
		mountRepos, mib(baseSize), mib(ownSize)), repos: m.repos, cold: true, ecr: true, mounting: m,
		skip: map[string]string{"skopeo": "not run in this scenario (crane and regctl stand for the peers)"}}, nil
}

// side5 is one account of scenario 5's sandbox.
type side5 struct {
	api  *ecr.Client
	host string
	user string
	pass string
	auth authn.Authenticator
}

func newSide5(ctx context.Context, sb *sandbox.Sandbox, acct string) (*side5, error) {
	key, secret, err := sb.Credentials(acct, sandbox.AdminUser)
	if err != nil {
		return nil, err
	}
	api := ecr.New(ecr.Options{Region: sandbox.DefaultRegion, BaseEndpoint: aws.String(sb.APIURL()),
		Credentials: credentials.NewStaticCredentialsProvider(key, secret, "")})
	out, err := api.GetAuthorizationToken(ctx, &ecr.GetAuthorizationTokenInput{})
	if err != nil {
		return nil, err
	}
	raw, err := base64.StdEncoding.DecodeString(aws.ToString(out.AuthorizationData[0].AuthorizationToken))
	if err != nil {
		return nil, err
	}
	s := &side5{api: api, host: strings.TrimPrefix(aws.ToString(out.AuthorizationData[0].ProxyEndpoint), "http://")}
	s.user, s.pass, _ = strings.Cut(string(raw), ":")
	s.auth = &authn.Basic{Username: s.user, Password: s.pass}
	return s, nil
}

// seed creates repo and pushes img there, the base layers mounted from the first
// repository seeded (when there is one) rather than uploaded again.
func (s *side5) seed(ctx context.Context, repo string, img v1.Image, base []v1.Layer, seeded []string) error {
	if _, err := s.api.CreateRepository(ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String(repo)}); err != nil {
		return err
	}
	for _, l := range base {
		if len(seeded) == 0 {
			break
		}
		d, _ := l.Digest()
		u := fmt.Sprintf("http://%s/v2/%s/blobs/uploads/?mount=%s&from=%s", s.host, repo, d, seeded[0])
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
		req.SetBasicAuth(s.user, s.pass)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			return fmt.Errorf("mounting a base layer answered %d", resp.StatusCode)
		}
	}
	return push(ctx, s.host, repo, "v1", img, s.auth)
}

// proxies puts both registries and the API behind delaying, counting proxies (the API's
// answers rewritten to name the registries' proxies).
func (m *mountBench) proxies(src, dst *side5) error {
	srcP, err := newProxy(src.host, nil)
	if err != nil {
		return err
	}
	dstP, err := newProxy(dst.host, nil)
	if err != nil {
		return err
	}
	apiHost := strings.TrimPrefix(m.st.sb.APIURL(), "http://")
	apiP, err := newProxy(apiHost, strings.NewReplacer(src.host, srcP.addr(), dst.host, dstP.addr()))
	if err != nil {
		return err
	}
	m.st.proxies = []*proxy{apiP, srcP, dstP}
	m.st.apiAddr, m.srcProxy = apiP.addr(), srcP.addr()
	m.st.target = target{src: srcP.addr(), dst: dstP.addr(), auth: map[string][2]string{
		srcP.addr(): {src.user, src.pass}, dstP.addr(): {dst.user, dst.pass},
	}}
	return nil
}

// prepare empties the destination before a run — every repository deleted, then created
// again (crane and regctl do not create repositories; ours finds them) — and sets its
// blob mounting: off for the tool that measures ours without it, on for the others.
func (m *mountBench) prepare(ctx context.Context, t *tool) error {
	for _, repo := range m.repos {
		m.dst.DeleteRepository(ctx, &ecr.DeleteRepositoryInput{RepositoryName: aws.String(repo), Force: true}) // absent the first time
		// Adopted for the replicator, as an administrator does (docs/SECURITY.md): it
		// writes only to repositories tagged with its owner.
		owner := []ecrtypes.Tag{{Key: aws.String(ecraccess.OwnerTag), Value: aws.String(sandbox.SourceAccount)}}
		if _, err := m.dst.CreateRepository(ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String(repo), Tags: owner}); err != nil {
			return err
		}
	}
	value := "ENABLED"
	if t.mountingOff {
		value = "DISABLED"
	}
	_, err := m.dst.PutAccountSetting(ctx, &ecr.PutAccountSettingInput{Name: aws.String("BLOB_MOUNTING"), Value: aws.String(value)})
	return err
}

// check is a run's outcome: every destination repository has its image, by digest.
func (m *mountBench) check() error {
	for _, repo := range m.repos {
		ref, err := name.NewTag(m.dstHost+"/"+repo+":v1", name.Insecure)
		if err != nil {
			return err
		}
		d, err := remote.Head(ref, remote.WithAuth(m.dstAuth))
		if err != nil {
			return fmt.Errorf("%s: %w", repo, err)
		}
		if d.Digest.String() != m.digests[repo] {
			return fmt.Errorf("%s:v1 is %s, want %s", repo, d.Digest, m.digests[repo])
		}
	}
	return nil
}

// syncArgv is how ours runs scenario 5: `ecr-replicator sync` over a rules document
// sending s5/* to the destination account (same names, through its role).
func (m *mountBench) syncArgv(bin, tmp string) ([]string, error) {
	key, secret, err := m.st.sb.Credentials(sandbox.SourceAccount, sandbox.SourceUser)
	if err != nil {
		return nil, err
	}
	rules := fmt.Sprintf(`{"rules":[{"name":"bench","repositories":["s5/*"],"destinations":[{"accountId":%q,"region":%q,"roleArn":%q,"externalId":"bench"}]}]}`,
		sandbox.DestinationAccount, sandbox.DefaultRegion, sandbox.RoleARN(sandbox.DestinationAccount, sandbox.DestinationRole))
	file := filepath.Join(tmp, "rules.json")
	if err := os.WriteFile(file, []byte(rules), 0o600); err != nil {
		return nil, err
	}
	api := "http://" + m.st.apiAddr
	return []string{"env", "AWS_ENDPOINT_URL_ECR=" + api, "AWS_ENDPOINT_URL_STS=" + api,
		"AWS_ACCESS_KEY_ID=" + key, "AWS_SECRET_ACCESS_KEY=" + secret, "AWS_REGION=" + sandbox.DefaultRegion,
		"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null",
		bin, "sync", "--rules", file, "--quiet"}, nil
}

func (m *mountBench) close() {
	for _, p := range m.st.proxies {
		p.close()
	}
	m.st.sb.Close()
}
