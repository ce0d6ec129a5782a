package sandbox_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
)

const extID = "sandbox-test-external-id"

type env struct {
	sb  *sandbox.Sandbox
	ctx context.Context
}

func start(t *testing.T) *env {
	t.Helper()
	sb, err := sandbox.New(sandbox.TwoAccounts(extID))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	// The SDK finds the sandbox the way it finds any custom endpoint.
	t.Setenv("AWS_ENDPOINT_URL_ECR", sb.APIURL())
	t.Setenv("AWS_ENDPOINT_URL_STS", sb.APIURL())
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return &env{sb: sb, ctx: ctx}
}

func (e *env) userConfig(t *testing.T, account, user string, opts ...func(*config.LoadOptions) error) aws.Config {
	t.Helper()
	key, secret, err := e.sb.Credentials(account, user)
	if err != nil {
		t.Fatal(err)
	}
	opts = append([]func(*config.LoadOptions) error{
		config.WithRegion(sandbox.DefaultRegion),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(key, secret, "")),
	}, opts...)
	cfg, err := config.LoadDefaultConfig(e.ctx, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func (e *env) destinationRoleConfig(t *testing.T) aws.Config {
	t.Helper()
	src := e.userConfig(t, sandbox.SourceAccount, sandbox.SourceUser)
	provider := stscreds.NewAssumeRoleProvider(sts.NewFromConfig(src), sandbox.RoleARN(sandbox.DestinationAccount, sandbox.DestinationRole), func(o *stscreds.AssumeRoleOptions) {
		o.ExternalID = aws.String(extID)
		o.RoleSessionName = "ecr-replicator-test"
	})
	cfg := src.Copy()
	cfg.Credentials = aws.NewCredentialsCache(provider)
	return cfg
}

// registryAuth logs in the way every ECR client does: GetAuthorizationToken, then Basic
// auth to proxyEndpoint.
func registryAuth(t *testing.T, ctx context.Context, cfg aws.Config) (host string, auth authn.Authenticator) {
	t.Helper()
	out, err := ecr.NewFromConfig(cfg).GetAuthorizationToken(ctx, &ecr.GetAuthorizationTokenInput{})
	if err != nil {
		t.Fatal(err)
	}
	d := out.AuthorizationData[0]
	raw, err := base64.StdEncoding.DecodeString(aws.ToString(d.AuthorizationToken))
	if err != nil {
		t.Fatal(err)
	}
	user, pass, _ := strings.Cut(string(raw), ":")
	if user != "AWS" {
		t.Fatalf("token user = %q, want AWS", user)
	}
	if d.ExpiresAt == nil || time.Until(*d.ExpiresAt) < 11*time.Hour {
		t.Fatalf("expiresAt = %v, want ~12h from now", d.ExpiresAt)
	}
	return strings.TrimPrefix(aws.ToString(d.ProxyEndpoint), "http://"), &authn.Basic{Username: user, Password: pass}
}

func createRepo(t *testing.T, ctx context.Context, cfg aws.Config, repo string, mutability ecrtypes.ImageTagMutability) *ecrtypes.Repository {
	t.Helper()
	out, err := ecr.NewFromConfig(cfg).CreateRepository(ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String(repo), ImageTagMutability: mutability})
	if err != nil {
		t.Fatal(err)
	}
	return out.Repository
}

func ref(t *testing.T, host, repo, tagOrDigest string) name.Reference {
	t.Helper()
	sep := ":"
	if strings.HasPrefix(tagOrDigest, "sha256:") {
		sep = "@"
	}
	r, err := name.ParseReference(host + "/" + repo + sep + tagOrDigest)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func TestPushDescribeAndCopyAcrossAccounts(t *testing.T) {
	e := start(t)
	src := e.userConfig(t, sandbox.SourceAccount, sandbox.SourceUser)
	srcRepo := createRepo(t, e.ctx, src, "team-a/app", "")
	srcHost, srcAuth := registryAuth(t, e.ctx, src)
	if got := aws.ToString(srcRepo.RepositoryUri); got != srcHost+"/team-a/app" {
		t.Fatalf("repositoryUri = %q, want %q", got, srcHost+"/team-a/app")
	}

	img, err := random.Image(2048, 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref(t, srcHost, "team-a/app", "v1"), img, remote.WithAuth(srcAuth), remote.WithContext(e.ctx)); err != nil {
		t.Fatalf("push image: %v", err)
	}
	idx, err := random.Index(1024, 2, 4)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref(t, srcHost, "team-a/app", "multi"), idx, remote.WithAuth(srcAuth), remote.WithContext(e.ctx)); err != nil {
		t.Fatalf("push index: %v", err)
	}
	imgDigest, _ := img.Digest()
	idxDigest, _ := idx.Digest()
	layers, _ := img.Layers()
	var layerBytes int64
	for _, l := range layers {
		n, _ := l.Size()
		layerBytes += n
	}

	// Copy A→B with two tokens: the source's, and one minted with the assumed role in B.
	dst := e.destinationRoleConfig(t)
	createRepo(t, e.ctx, dst, "mirror/team-a/app", "")
	dstHost, dstAuth := registryAuth(t, e.ctx, dst)
	if dstHost == srcHost {
		t.Fatal("source and destination registries share a host")
	}
	mark := e.sb.AccessLogMark()
	for _, tag := range []string{"v1", "multi"} {
		desc, err := remote.Get(ref(t, srcHost, "team-a/app", tag), remote.WithAuth(srcAuth))
		if err != nil {
			t.Fatal(err)
		}
		var tg remote.Taggable = desc
		if desc.MediaType.IsIndex() {
			tg, _ = desc.ImageIndex()
		} else {
			tg, _ = desc.Image()
		}
		if err := remote.Push(ref(t, dstHost, "mirror/team-a/app", tag), tg, remote.WithAuth(dstAuth)); err != nil {
			t.Fatalf("copy %s: %v", tag, err)
		}
	}

	out, err := ecr.NewFromConfig(dst).DescribeImages(e.ctx, &ecr.DescribeImagesInput{
		RepositoryName: aws.String("mirror/team-a/app"),
		ImageIds:       []ecrtypes.ImageIdentifier{{ImageTag: aws.String("v1")}, {ImageTag: aws.String("multi")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]ecrtypes.ImageDetail{}
	for _, d := range out.ImageDetails {
		got[aws.ToString(d.ImageDigest)] = d
	}
	d, ok := got[imgDigest.String()]
	if !ok {
		t.Fatalf("destination lacks image %s: %+v", imgDigest, out.ImageDetails)
	}
	if aws.ToInt64(d.ImageSizeInBytes) != layerBytes || aws.ToString(d.ImageManifestMediaType) != "application/vnd.docker.distribution.manifest.v2+json" ||
		len(d.ImageTags) != 1 || d.ImageTags[0] != "v1" || d.ImagePushedAt == nil || time.Since(*d.ImagePushedAt) > time.Minute {
		t.Errorf("image detail = size %d type %s tags %v pushed %v", aws.ToInt64(d.ImageSizeInBytes), aws.ToString(d.ImageManifestMediaType), d.ImageTags, d.ImagePushedAt)
	}
	if aws.ToString(d.ArtifactMediaType) != "application/vnd.docker.container.image.v1+json" {
		t.Errorf("artifactMediaType = %q", aws.ToString(d.ArtifactMediaType))
	}
	if _, ok := got[idxDigest.String()]; !ok {
		t.Errorf("destination lacks index %s", idxDigest)
	}
	all, err := ecr.NewFromConfig(dst).DescribeImages(e.ctx, &ecr.DescribeImagesInput{RepositoryName: aws.String("mirror/team-a/app")})
	if err != nil {
		t.Fatal(err)
	}
	if len(all.ImageDetails) != 6 { // image + index + 4 children
		t.Errorf("destination holds %d images, want 6", len(all.ImageDetails))
	}

	// The access log proves the pushes into B were made with the assumed role.
	wantPrincipal := "arn:aws:sts::" + sandbox.DestinationAccount + ":assumed-role/" + sandbox.DestinationRole + "/ecr-replicator-test"
	puts := sandbox.Filter(e.sb.AccessLogSince(mark), func(en sandbox.Entry) bool { return en.Action == "ecr:PutImage" })
	if len(puts) != 6 {
		t.Fatalf("saw %d manifest PUTs, want 6", len(puts))
	}
	for _, p := range puts {
		if p.Account != sandbox.DestinationAccount || p.Principal != wantPrincipal || p.Status != http.StatusCreated {
			t.Errorf("PUT manifest entry %+v: want account %s principal %s status 201", p, sandbox.DestinationAccount, wantPrincipal)
		}
	}
}

func TestAssumeRoleExternalID(t *testing.T) {
	e := start(t)
	src := e.userConfig(t, sandbox.SourceAccount, sandbox.SourceUser)
	client := sts.NewFromConfig(src)
	roleARN := sandbox.RoleARN(sandbox.DestinationAccount, sandbox.DestinationRole)
	for _, tc := range []struct {
		name     string
		external *string
		wantCode string
	}{
		{"right external ID", aws.String(extID), ""},
		{"wrong external ID", aws.String("not-the-id"), "AccessDenied"},
		{"missing external ID", nil, "AccessDenied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := client.AssumeRole(e.ctx, &sts.AssumeRoleInput{RoleArn: aws.String(roleARN), RoleSessionName: aws.String("s1"), ExternalId: tc.external, DurationSeconds: aws.Int32(1800)})
			if tc.wantCode != "" {
				if errorCode(err) != tc.wantCode {
					t.Fatalf("err = %v, want %s", err, tc.wantCode)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			exp := aws.ToTime(out.Credentials.Expiration)
			if d := time.Until(exp); d < 29*time.Minute || d > 31*time.Minute {
				t.Errorf("expiration in %v, want DurationSeconds=1800 honoured", d)
			}
			if aws.ToString(out.Credentials.SessionToken) == "" {
				t.Error("no session token")
			}
			// The temporary credentials act in account B.
			cfg := src.Copy()
			cfg.Credentials = credentials.NewStaticCredentialsProvider(aws.ToString(out.Credentials.AccessKeyId), aws.ToString(out.Credentials.SecretAccessKey), aws.ToString(out.Credentials.SessionToken))
			id, err := sts.NewFromConfig(cfg).GetCallerIdentity(e.ctx, &sts.GetCallerIdentityInput{})
			if err != nil {
				t.Fatal(err)
			}
			if aws.ToString(id.Account) != sandbox.DestinationAccount || !strings.Contains(aws.ToString(id.Arn), ":assumed-role/"+sandbox.DestinationRole+"/s1") {
				t.Errorf("caller identity = %s %s", aws.ToString(id.Account), aws.ToString(id.Arn))
			}
		})
	}
	// A principal of an untrusted account is refused.
	admin := e.userConfig(t, sandbox.DestinationAccount, sandbox.AdminUser)
	_, err := sts.NewFromConfig(admin).AssumeRole(e.ctx, &sts.AssumeRoleInput{RoleArn: aws.String(sandbox.RoleARN(sandbox.SourceAccount, sandbox.SourceReaderRole)), RoleSessionName: aws.String("x1")})
	if errorCode(err) != "AccessDenied" {
		t.Fatalf("untrusted AssumeRole err = %v, want AccessDenied", err)
	}
	// DurationSeconds beyond the role's maximum is a validation error.
	_, err = client.AssumeRole(e.ctx, &sts.AssumeRoleInput{RoleArn: aws.String(roleARN), RoleSessionName: aws.String("s2"), ExternalId: aws.String(extID), DurationSeconds: aws.Int32(7200)})
	if errorCode(err) != "ValidationError" {
		t.Fatalf("long duration err = %v, want ValidationError", err)
	}
}

func TestSignatureChecks(t *testing.T) {
	e := start(t)
	key, _, _ := e.sb.Credentials(sandbox.SourceAccount, sandbox.SourceUser)
	noRetry := config.WithRetryer(func() aws.Retryer { return aws.NopRetryer{} })
	for _, tc := range []struct {
		name, key, secret string
		wantECR, wantSTS  string
	}{
		{"unknown key", "AKIAUNKNOWNUNKNOWN00", "secret", "UnrecognizedClientException", "InvalidClientTokenId"},
		{"tampered signature (wrong secret)", key, "wrong-secret", "InvalidSignatureException", "SignatureDoesNotMatch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.LoadDefaultConfig(e.ctx, config.WithRegion(sandbox.DefaultRegion), noRetry,
				config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(tc.key, tc.secret, "")))
			if err != nil {
				t.Fatal(err)
			}
			_, err = ecr.NewFromConfig(cfg).DescribeRepositories(e.ctx, &ecr.DescribeRepositoriesInput{})
			if errorCode(err) != tc.wantECR {
				t.Errorf("ECR err = %v, want %s", err, tc.wantECR)
			}
			_, err = sts.NewFromConfig(cfg).GetCallerIdentity(e.ctx, &sts.GetCallerIdentityInput{})
			if errorCode(err) != tc.wantSTS {
				t.Errorf("STS err = %v, want %s", err, tc.wantSTS)
			}
		})
	}
	// A body changed after signing is caught too.
	src := e.userConfig(t, sandbox.SourceAccount, sandbox.SourceUser, noRetry)
	_, err := ecr.NewFromConfig(src, func(o *ecr.Options) {
		o.HTTPClient = tamperingClient{}
	}).CreateRepository(e.ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("abc")})
	if errorCode(err) != "InvalidSignatureException" {
		t.Errorf("tampered body err = %v, want InvalidSignatureException", err)
	}
	// Expired session credentials.
	dst := e.destinationRoleConfig(t)
	if _, err := ecr.NewFromConfig(dst).DescribeRepositories(e.ctx, &ecr.DescribeRepositoriesInput{}); err != nil {
		t.Fatal(err)
	}
	e.sb.ExpireSessions(sandbox.DestinationAccount)
	dst.Retryer = func() aws.Retryer { return aws.NopRetryer{} }
	_, err = ecr.NewFromConfig(dst).DescribeRepositories(e.ctx, &ecr.DescribeRepositoriesInput{})
	if errorCode(err) != "ExpiredTokenException" {
		t.Errorf("expired session err = %v, want ExpiredTokenException", err)
	}
}

// tamperingClient changes the request body after the SDK signed it.
type tamperingClient struct{}

func (tamperingClient) Do(r *http.Request) (*http.Response, error) {
	body, _ := io.ReadAll(r.Body)
	body = bytes.Replace(body, []byte(`"abc"`), []byte(`"xyz"`), 1)
	r.Body = io.NopCloser(bytes.NewReader(body))
	return http.DefaultClient.Do(r)
}

func TestRegistryRules(t *testing.T) {
	e := start(t)
	src := e.userConfig(t, sandbox.SourceAccount, sandbox.SourceUser)
	createRepo(t, e.ctx, src, "frozen", ecrtypes.ImageTagMutabilityImmutable)
	host, auth := registryAuth(t, e.ctx, src)
	img, _ := random.Image(512, 1)

	t.Run("missing repository", func(t *testing.T) {
		_, err := remote.Head(ref(t, host, "nope", "latest"), remote.WithAuth(auth))
		var terr *transport.Error
		if !errors.As(err, &terr) || terr.StatusCode != http.StatusNotFound {
			t.Fatalf("HEAD manifest in a missing repository: %v, want 404", err)
		}
		// GET shows the code in the body.
		_, err = remote.Get(ref(t, host, "nope", "latest"), remote.WithAuth(auth))
		if !errors.As(err, &terr) || len(terr.Errors) == 0 || terr.Errors[0].Code != "NAME_UNKNOWN" {
			t.Fatalf("GET manifest in a missing repository: %v, want NAME_UNKNOWN", err)
		}
		// A blob upload gets its connection closed, as ECR does.
		req, _ := http.NewRequest(http.MethodPost, "http://"+host+"/v2/nope/blobs/uploads/", nil)
		req.SetBasicAuth("AWS", auth.(*authn.Basic).Password)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("upload to a missing repository answered %d, want a closed connection", resp.StatusCode)
		}
	})

	t.Run("immutable tag", func(t *testing.T) {
		r := ref(t, host, "frozen", "v1")
		if err := remote.Write(r, img, remote.WithAuth(auth)); err != nil {
			t.Fatal(err)
		}
		// Re-pushing the same digest under the same tag is refused (raw PUT: ggcr's own
		// Write would look first and skip).
		raw, _ := img.RawManifest()
		mt, _ := img.MediaType()
		req, _ := http.NewRequest(http.MethodPut, "http://"+host+"/v2/frozen/manifests/v1", bytes.NewReader(raw))
		req.Header.Set("Content-Type", string(mt))
		req.SetBasicAuth("AWS", auth.(*authn.Basic).Password)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "TAG_INVALID") {
			t.Fatalf("re-push of an immutable tag: %d %s, want 400 TAG_INVALID", resp.StatusCode, body)
		}
		// Through the API it is ImageTagAlreadyExistsException.
		_, err = ecr.NewFromConfig(src).PutImage(e.ctx, &ecr.PutImageInput{RepositoryName: aws.String("frozen"), ImageManifest: aws.String(string(raw)), ImageTag: aws.String("v1")})
		if errorCode(err) != "ImageTagAlreadyExistsException" {
			t.Fatalf("PutImage on an immutable tag: %v", err)
		}
	})

	t.Run("exclusion filters", func(t *testing.T) {
		_, err := ecr.NewFromConfig(src).CreateRepository(e.ctx, &ecr.CreateRepositoryInput{
			RepositoryName:     aws.String("mostly-frozen"),
			ImageTagMutability: ecrtypes.ImageTagMutabilityImmutableWithExclusion,
			ImageTagMutabilityExclusionFilters: []ecrtypes.ImageTagMutabilityExclusionFilter{
				{FilterType: ecrtypes.ImageTagMutabilityExclusionFilterTypeWildcard, Filter: aws.String("latest*")},
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		img2, _ := random.Image(256, 1)
		for _, tag := range []string{"latest", "v1"} {
			if err := remote.Write(ref(t, host, "mostly-frozen", tag), img, remote.WithAuth(auth)); err != nil {
				t.Fatal(err)
			}
		}
		if err := remote.Write(ref(t, host, "mostly-frozen", "latest"), img2, remote.WithAuth(auth)); err != nil {
			t.Errorf("moving an excluded (mutable) tag: %v", err)
		}
		err = remote.Write(ref(t, host, "mostly-frozen", "v1"), img2, remote.WithAuth(auth))
		var terr *transport.Error
		if !errors.As(err, &terr) || terr.Errors[0].Code != "TAG_INVALID" {
			t.Errorf("moving an immutable tag: %v, want TAG_INVALID", err)
		}
	})

	t.Run("wrong account token", func(t *testing.T) {
		dst := e.destinationRoleConfig(t)
		_, dstAuth := registryAuth(t, e.ctx, dst)
		req, _ := http.NewRequest(http.MethodGet, "http://"+host+"/v2/", nil)
		req.SetBasicAuth("AWS", dstAuth.(*authn.Basic).Password)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
			t.Fatalf("other account's token: %d %q, want 401 with a Basic challenge", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	})

	t.Run("chunked upload with a small non-final part", func(t *testing.T) {
		createRepo(t, e.ctx, src, "chunks", "")
		pass := auth.(*authn.Basic).Password
		do := func(method, url string, body []byte, hdr map[string]string) *http.Response {
			req, _ := http.NewRequest(method, url, bytes.NewReader(body))
			req.SetBasicAuth("AWS", pass)
			for k, v := range hdr {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return resp
		}
		resp := do(http.MethodPost, "http://"+host+"/v2/chunks/blobs/uploads/", nil, nil)
		loc := "http://" + host + resp.Header.Get("Location")
		resp = do(http.MethodPatch, loc, make([]byte, 1024), map[string]string{"Content-Range": "0-1023"})
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("first PATCH: %d, want 201 (ECR's answer)", resp.StatusCode)
		}
		resp = do(http.MethodPatch, loc, make([]byte, 1024), map[string]string{"Content-Range": "1024-2047"})
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("PATCH after a 1 KiB part: %d, want 400", resp.StatusCode)
		}
	})

	t.Run("expired token", func(t *testing.T) {
		e.sb.ExpireRegistryTokens(sandbox.SourceAccount)
		_, err := remote.Head(ref(t, host, "frozen", "v1"), remote.WithAuth(auth))
		var terr *transport.Error
		if !errors.As(err, &terr) || terr.StatusCode != http.StatusForbidden {
			t.Fatalf("expired token: %v, want 403", err)
		}
		_, fresh := registryAuth(t, e.ctx, src)
		if _, err := remote.Head(ref(t, host, "frozen", "v1"), remote.WithAuth(fresh)); err != nil {
			t.Fatalf("fresh token: %v", err)
		}
	})
}

func TestECRAPI(t *testing.T) {
	e := start(t)
	src := e.userConfig(t, sandbox.SourceAccount, sandbox.SourceUser)
	client := ecr.NewFromConfig(src)
	if _, err := client.CreateRepository(e.ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("Bad_Name")}); errorCode(err) != "InvalidParameterException" {
		t.Fatalf("bad name: %v", err)
	}
	repo, err := client.CreateRepository(e.ctx, &ecr.CreateRepositoryInput{
		RepositoryName:             aws.String("team-b/svc"),
		ImageScanningConfiguration: &ecrtypes.ImageScanningConfiguration{ScanOnPush: true},
		EncryptionConfiguration:    &ecrtypes.EncryptionConfiguration{EncryptionType: ecrtypes.EncryptionTypeKms, KmsKey: aws.String("arn:aws:kms:us-east-1:111111111111:key/abc")},
		Tags:                       []ecrtypes.Tag{{Key: aws.String("team"), Value: aws.String("b")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.CreateRepository(e.ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-b/svc")}); errorCode(err) != "RepositoryAlreadyExistsException" {
		t.Fatalf("duplicate: %v", err)
	}
	if !repo.Repository.ImageScanningConfiguration.ScanOnPush || repo.Repository.EncryptionConfiguration.EncryptionType != ecrtypes.EncryptionTypeKms {
		t.Errorf("settings not kept: %+v", repo.Repository)
	}
	tags, err := client.ListTagsForResource(e.ctx, &ecr.ListTagsForResourceInput{ResourceArn: repo.Repository.RepositoryArn})
	if err != nil || len(tags.Tags) != 1 || aws.ToString(tags.Tags[0].Value) != "b" {
		t.Errorf("tags = %+v, %v", tags, err)
	}
	for i := 0; i < 5; i++ {
		createRepo(t, e.ctx, src, fmt.Sprintf("many/r%d", i), "")
	}
	// Pagination: DescribeRepositories with a page of 2.
	var names []string
	p := ecr.NewDescribeRepositoriesPaginator(client, &ecr.DescribeRepositoriesInput{MaxResults: aws.Int32(2)})
	pages := 0
	for p.HasMorePages() {
		out, err := p.NextPage(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, r := range out.Repositories {
			names = append(names, aws.ToString(r.RepositoryName))
		}
	}
	if len(names) != 6 || pages != 3 {
		t.Errorf("paged %d repositories over %d pages: %v", len(names), pages, names)
	}

	// Images pushed through the registry show in the API and back.
	host, auth := registryAuth(t, e.ctx, src)
	var digests []v1.Hash
	for i := 0; i < 3; i++ {
		img, _ := random.Image(256, 1)
		d, _ := img.Digest()
		digests = append(digests, d)
		if err := remote.Write(ref(t, host, "team-b/svc", fmt.Sprintf("t%d", i)), img, remote.WithAuth(auth)); err != nil {
			t.Fatal(err)
		}
	}
	// An untagged image.
	img, _ := random.Image(256, 1)
	ud, _ := img.Digest()
	if err := remote.Write(ref(t, host, "team-b/svc", ud.String()), img, remote.WithAuth(auth)); err != nil {
		t.Fatal(err)
	}
	li, err := client.ListImages(e.ctx, &ecr.ListImagesInput{RepositoryName: aws.String("team-b/svc"), Filter: &ecrtypes.ListImagesFilter{TagStatus: ecrtypes.TagStatusUntagged}})
	if err != nil || len(li.ImageIds) != 1 || aws.ToString(li.ImageIds[0].ImageDigest) != ud.String() {
		t.Fatalf("untagged list = %+v, %v", li, err)
	}
	var listed int
	lp := ecr.NewListImagesPaginator(client, &ecr.ListImagesInput{RepositoryName: aws.String("team-b/svc"), MaxResults: aws.Int32(3)})
	for lp.HasMorePages() {
		out, err := lp.NextPage(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		listed += len(out.ImageIds)
	}
	if listed != 4 {
		t.Errorf("listed %d image IDs, want 4", listed)
	}
	bg, err := client.BatchGetImage(e.ctx, &ecr.BatchGetImageInput{RepositoryName: aws.String("team-b/svc"), ImageIds: []ecrtypes.ImageIdentifier{{ImageTag: aws.String("t1")}, {ImageTag: aws.String("missing")}}})
	if err != nil || len(bg.Images) != 1 || len(bg.Failures) != 1 || aws.ToString(bg.Images[0].ImageId.ImageDigest) != digests[1].String() {
		t.Fatalf("BatchGetImage = %+v, %v", bg, err)
	}
	// PutImage retags by manifest; a second identical put is ImageAlreadyExistsException.
	_, err = client.PutImage(e.ctx, &ecr.PutImageInput{RepositoryName: aws.String("team-b/svc"), ImageManifest: bg.Images[0].ImageManifest, ImageTag: aws.String("prod")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = client.PutImage(e.ctx, &ecr.PutImageInput{RepositoryName: aws.String("team-b/svc"), ImageManifest: bg.Images[0].ImageManifest, ImageTag: aws.String("prod")})
	if errorCode(err) != "ImageAlreadyExistsException" {
		t.Fatalf("second PutImage: %v", err)
	}
	// Deleting the last tag deletes the image; deleting one of two keeps it.
	del, err := client.BatchDeleteImage(e.ctx, &ecr.BatchDeleteImageInput{RepositoryName: aws.String("team-b/svc"), ImageIds: []ecrtypes.ImageIdentifier{{ImageTag: aws.String("t0")}, {ImageTag: aws.String("prod")}}})
	if err != nil || len(del.ImageIds) != 2 {
		t.Fatalf("BatchDeleteImage = %+v, %v", del, err)
	}
	if _, err := remote.Head(ref(t, host, "team-b/svc", digests[0].String()), remote.WithAuth(auth)); err == nil {
		t.Error("image t0 survived the deletion of its only tag")
	}
	if _, err := remote.Head(ref(t, host, "team-b/svc", "t1"), remote.WithAuth(auth)); err != nil {
		t.Errorf("t1 lost with its other tag: %v", err)
	}
	// Lifecycle and repository policies.
	if _, err := client.GetLifecyclePolicy(e.ctx, &ecr.GetLifecyclePolicyInput{RepositoryName: aws.String("team-b/svc")}); errorCode(err) != "LifecyclePolicyNotFoundException" {
		t.Fatalf("no lifecycle policy: %v", err)
	}
	policy := `{"rules":[{"rulePriority":1,"selection":{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":14},"action":{"type":"expire"}}]}`
	if _, err := client.PutLifecyclePolicy(e.ctx, &ecr.PutLifecyclePolicyInput{RepositoryName: aws.String("team-b/svc"), LifecyclePolicyText: aws.String(policy)}); err != nil {
		t.Fatal(err)
	}
	lp2, err := client.GetLifecyclePolicy(e.ctx, &ecr.GetLifecyclePolicyInput{RepositoryName: aws.String("team-b/svc")})
	if err != nil || aws.ToString(lp2.LifecyclePolicyText) != policy {
		t.Fatalf("lifecycle policy = %v, %v", lp2, err)
	}
	if _, err := client.GetRepositoryPolicy(e.ctx, &ecr.GetRepositoryPolicyInput{RepositoryName: aws.String("team-b/svc")}); errorCode(err) != "RepositoryPolicyNotFoundException" {
		t.Fatalf("no repository policy: %v", err)
	}
	if _, err := client.SetRepositoryPolicy(e.ctx, &ecr.SetRepositoryPolicyInput{RepositoryName: aws.String("team-b/svc"), PolicyText: aws.String(`{"Version":"2012-10-17","Statement":[]}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.DeleteRepository(e.ctx, &ecr.DeleteRepositoryInput{RepositoryName: aws.String("team-b/svc")}); errorCode(err) != "RepositoryNotEmptyException" {
		t.Fatalf("deleting a non-empty repository: %v", err)
	}
	if _, err := client.DeleteRepository(e.ctx, &ecr.DeleteRepositoryInput{RepositoryName: aws.String("team-b/svc"), Force: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.DescribeImages(e.ctx, &ecr.DescribeImagesInput{RepositoryName: aws.String("team-b/svc")}); errorCode(err) != "RepositoryNotFoundException" {
		t.Fatalf("deleted repository: %v", err)
	}
}

func TestFaultHooks(t *testing.T) {
	e := start(t)
	src := e.userConfig(t, sandbox.SourceAccount, sandbox.SourceUser)
	createRepo(t, e.ctx, src, "faulty", "")
	host, auth := registryAuth(t, e.ctx, src)
	pass := auth.(*authn.Basic).Password
	get := func(path string) *http.Response {
		req, _ := http.NewRequest(http.MethodGet, "http://"+host+path, nil)
		req.SetBasicAuth("AWS", pass)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}

	t.Run("status codes", func(t *testing.T) {
		e.sb.FailRegistryRequests(sandbox.SourceAccount, 1, http.StatusServiceUnavailable, 0)
		e.sb.FailRegistryRequests(sandbox.SourceAccount, 1, http.StatusTooManyRequests, 2*time.Second)
		if r := get("/v2/faulty/tags/list"); r.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("first request: %d, want 503", r.StatusCode)
		}
		if r := get("/v2/faulty/tags/list"); r.StatusCode != http.StatusTooManyRequests || r.Header.Get("Retry-After") != "2" {
			t.Errorf("second request: %d Retry-After %q, want 429 and 2", r.StatusCode, r.Header.Get("Retry-After"))
		}
		if r := get("/v2/faulty/tags/list"); r.StatusCode != http.StatusOK {
			t.Errorf("third request: %d, want 200", r.StatusCode)
		}
	})

	t.Run("upload reset", func(t *testing.T) {
		e.sb.ResetBlobUploads(sandbox.SourceAccount, 1000, 1)
		img, _ := random.Image(64<<10, 1)
		layers, _ := img.Layers()
		// ggcr retries the whole upload after the reset; the client sees one failure.
		err := remote.WriteLayer(ref(t, host, "faulty", "x").Context(), layers[0], remote.WithAuth(auth), remote.WithRetryBackoff(remote.Backoff{Steps: 1}))
		if err == nil {
			t.Fatal("upload survived a connection reset")
		}
		reset := sandbox.Filter(e.sb.AccessLog(), func(en sandbox.Entry) bool { return en.Fault != "" && strings.HasSuffix(en.Operation, " upload") })
		if len(reset) != 1 || reset[0].ErrorCode != "CONNECTION_CLOSED" {
			t.Fatalf("access log shows %+v", reset)
		}
		if err := remote.WriteLayer(ref(t, host, "faulty", "x").Context(), layers[0], remote.WithAuth(auth)); err != nil {
			t.Fatalf("retry after the reset: %v", err)
		}
	})

	t.Run("download reset", func(t *testing.T) {
		img, _ := random.Image(64<<10, 1)
		if err := remote.Write(ref(t, host, "faulty", "dl"), img, remote.WithAuth(auth)); err != nil {
			t.Fatal(err)
		}
		layers, _ := img.Layers()
		d, _ := layers[0].Digest()
		e.sb.ResetBlobDownloads(sandbox.SourceAccount, 100, 1)
		req, _ := http.NewRequest(http.MethodGet, "http://"+host+"/v2/faulty/blobs/"+d.String(), nil)
		req.SetBasicAuth("AWS", pass)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Fatal("download survived a reset")
		}
	})

	t.Run("API throttling", func(t *testing.T) {
		e.sb.ThrottleAPI("ecr", "DescribeRepositories", 1)
		noRetry := ecr.NewFromConfig(src, func(o *ecr.Options) { o.Retryer = aws.NopRetryer{} })
		if _, err := noRetry.DescribeRepositories(e.ctx, &ecr.DescribeRepositoriesInput{}); errorCode(err) != "ThrottlingException" {
			t.Fatalf("throttled call: %v", err)
		}
		// The SDK's standard retryer rides over throttling.
		e.sb.ThrottleAPI("ecr", "DescribeRepositories", 2)
		retrying := ecr.NewFromConfig(src, func(o *ecr.Options) {
			o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) { so.MaxBackoff = 10 * time.Millisecond })
		})
		if _, err := retrying.DescribeRepositories(e.ctx, &ecr.DescribeRepositoriesInput{}); err != nil {
			t.Fatalf("retried call: %v", err)
		}
		e.sb.ThrottleAPI("sts", "AssumeRole", 1)
		_, err := sts.NewFromConfig(src, func(o *sts.Options) { o.Retryer = aws.NopRetryer{} }).AssumeRole(e.ctx, &sts.AssumeRoleInput{
			RoleArn: aws.String(sandbox.RoleARN(sandbox.DestinationAccount, sandbox.DestinationRole)), RoleSessionName: aws.String("t"), ExternalId: aws.String(extID)})
		if errorCode(err) != "Throttling" {
			t.Fatalf("throttled AssumeRole: %v", err)
		}
		if got := e.sb.FaultsFired(); got["api:ecr:ThrottlingException"] != 3 || got["api:sts:Throttling"] != 1 {
			t.Errorf("faults fired: %v", got)
		}
	})
}
