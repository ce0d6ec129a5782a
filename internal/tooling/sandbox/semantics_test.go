package sandbox_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
)

// TestLongTags: the ECR API's PutImage takes tags of up to 300 characters (API_PutImage,
// imageTag); the registry API, whose tag grammar is the OCI distribution spec's, at most
// 128. A longer tag is written and read through the ECR API only.
func TestLongTags(t *testing.T) {
	e := start(t)
	src := e.userConfig(t, sandbox.SourceAccount, sandbox.SourceUser)
	client := ecr.NewFromConfig(src)
	createRepo(t, e.ctx, src, "team-a/long", "")
	host, auth := registryAuth(t, e.ctx, src)
	img, _ := random.Image(256, 1)
	d, _ := img.Digest()
	if err := remote.Write(ref(t, host, "team-a/long", d.String()), img, remote.WithAuth(auth)); err != nil {
		t.Fatal(err)
	}
	raw, _ := img.RawManifest()
	mt, _ := img.MediaType()
	put := func(tag string) error {
		_, err := client.PutImage(e.ctx, &ecr.PutImageInput{RepositoryName: aws.String("team-a/long"), ImageManifest: aws.String(string(raw)),
			ImageManifestMediaType: aws.String(string(mt)), ImageTag: aws.String(tag)})
		return err
	}
	t300 := "t" + strings.Repeat("x", 299)
	if err := put(t300); err != nil {
		t.Fatalf("PutImage with a 300-character tag: %v", err)
	}
	if err := put(t300 + "x"); errorCode(err) != "InvalidParameterException" {
		t.Fatalf("PutImage with a 301-character tag: %v", err)
	}
	bg, err := client.BatchGetImage(e.ctx, &ecr.BatchGetImageInput{RepositoryName: aws.String("team-a/long"), ImageIds: []ecrtypes.ImageIdentifier{{ImageTag: aws.String(t300)}}})
	if err != nil || len(bg.Images) != 1 || aws.ToString(bg.Images[0].ImageId.ImageDigest) != d.String() {
		t.Fatalf("BatchGetImage by the long tag: %+v %v", bg, err)
	}
	// The registry API: 128 is fine, 129 is not (GET, HEAD or PUT).
	t128 := "t" + strings.Repeat("y", 127)
	if err := remote.Write(ref(t, host, "team-a/long", t128), img, remote.WithAuth(auth)); err != nil {
		t.Fatalf("a 128-character tag through the registry: %v", err)
	}
	t129 := t128 + "y"
	basic := auth.(*authn.Basic)
	for _, method := range []string{http.MethodGet, http.MethodHead, http.MethodPut} {
		req, _ := http.NewRequest(method, "http://"+host+"/v2/team-a/long/manifests/"+t129, strings.NewReader(string(raw)))
		req.Header.Set("Content-Type", string(mt))
		req.SetBasicAuth(basic.Username, basic.Password)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s of a 129-character tag through the registry: HTTP %d, want 400", method, resp.StatusCode)
		}
	}
}

// TestArchiveStorageClass: archive-image.html and the API reference, as archive.go lists.
func TestArchiveStorageClass(t *testing.T) {
	e := start(t)
	src := e.userConfig(t, sandbox.SourceAccount, sandbox.SourceUser)
	client := ecr.NewFromConfig(src)
	const repo = "team-a/cold"
	createRepo(t, e.ctx, src, repo, "")
	host, auth := registryAuth(t, e.ctx, src)
	a, _ := random.Image(256, 1)
	b, _ := random.Image(256, 1)
	for tag, img := range map[string]v1.Image{"v1": a, "v2": b} {
		if err := remote.Write(ref(t, host, repo, tag), img, remote.WithAuth(auth)); err != nil {
			t.Fatal(err)
		}
	}
	da, _ := a.Digest()
	setClass := func(target ecrtypes.TargetStorageClass) ecrtypes.ImageStatus {
		t.Helper()
		out, err := client.UpdateImageStorageClass(e.ctx, &ecr.UpdateImageStorageClassInput{RepositoryName: aws.String(repo),
			ImageId: &ecrtypes.ImageIdentifier{ImageTag: aws.String("v1")}, TargetStorageClass: target})
		if err != nil {
			t.Fatal(err)
		}
		return out.ImageStatus
	}
	statuses := func(filter ecrtypes.ImageStatusFilter) map[string]ecrtypes.ImageStatus {
		t.Helper()
		in := &ecr.DescribeImagesInput{RepositoryName: aws.String(repo)}
		if filter != "" {
			in.Filter = &ecrtypes.DescribeImagesFilter{ImageStatus: filter}
		}
		out, err := client.DescribeImages(e.ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]ecrtypes.ImageStatus{}
		for _, d := range out.ImageDetails {
			m[d.ImageTags[0]] = d.ImageStatus
		}
		return m
	}
	pullable := func(tagOrDigest string) bool {
		_, err := remote.Head(ref(t, host, repo, tagOrDigest), remote.WithAuth(auth))
		return err == nil
	}

	if st := setClass(ecrtypes.TargetStorageClassArchive); st != ecrtypes.ImageStatusArchived {
		t.Fatalf("archived: status %s", st)
	}
	if got := statuses(""); len(got) != 1 || got["v2"] != ecrtypes.ImageStatusActive {
		t.Errorf("DescribeImages without a filter lists only ACTIVE images: %v", got)
	}
	if got := statuses(ecrtypes.ImageStatusFilterArchived); len(got) != 1 || got["v1"] != ecrtypes.ImageStatusArchived {
		t.Errorf("filter ARCHIVED: %v", got)
	}
	if got := statuses(ecrtypes.ImageStatusFilterAny); len(got) != 2 {
		t.Errorf("filter ANY: %v", got)
	}
	li, err := client.ListImages(e.ctx, &ecr.ListImagesInput{RepositoryName: aws.String(repo)})
	if err != nil || len(li.ImageIds) != 1 {
		t.Errorf("ListImages without a filter: %+v %v", li, err)
	}
	byID, err := client.DescribeImages(e.ctx, &ecr.DescribeImagesInput{RepositoryName: aws.String(repo), ImageIds: []ecrtypes.ImageIdentifier{{ImageDigest: aws.String(da.String())}}})
	if err != nil || len(byID.ImageDetails) != 1 || byID.ImageDetails[0].ImageStatus != ecrtypes.ImageStatusArchived || byID.ImageDetails[0].LastArchivedAt == nil {
		t.Errorf("DescribeImages by ID describes an archived image: %+v %v", byID, err)
	}
	if pullable("v1") || pullable(da.String()) {
		t.Error("an archived image can be pulled")
	}
	bg, err := client.BatchGetImage(e.ctx, &ecr.BatchGetImageInput{RepositoryName: aws.String(repo), ImageIds: []ecrtypes.ImageIdentifier{{ImageTag: aws.String("v1")}}})
	if err != nil || len(bg.Images) != 0 || len(bg.Failures) != 1 || bg.Failures[0].FailureCode != ecrtypes.ImageFailureCodeImageInaccessible {
		t.Errorf("BatchGetImage of an archived image: %+v %v", bg, err)
	}

	if st := setClass(ecrtypes.TargetStorageClassStandard); st != ecrtypes.ImageStatusActivating {
		t.Fatalf("restoring: status %s", st)
	}
	if pullable("v1") || statuses(ecrtypes.ImageStatusFilterActivating)["v1"] != ecrtypes.ImageStatusActivating {
		t.Error("an activating image can be pulled, or is not listed as ACTIVATING")
	}
	e.sb.CompleteRestores()
	if !pullable("v1") || statuses("")["v1"] != ecrtypes.ImageStatusActive {
		t.Error("a restored image is not ACTIVE")
	}

	// Pushing it again restores it too.
	setClass(ecrtypes.TargetStorageClassArchive)
	if err := remote.Write(ref(t, host, repo, "v1"), a, remote.WithAuth(auth)); err != nil {
		t.Fatal(err)
	}
	if !pullable("v1") {
		t.Error("a re-pushed image is still archived")
	}
	var classes []string
	for _, ev := range e.sb.ECREvents() {
		var d struct {
			Action string `json:"action-type"`
			Target string `json:"target-storage-class"`
		}
		json.Unmarshal(ev.Detail, &d)
		if d.Action == "UPDATE_STORAGE_CLASS" {
			classes = append(classes, d.Target)
		}
	}
	if strings.Join(classes, ",") != "ARCHIVE,STANDARD,ARCHIVE" {
		t.Errorf("UPDATE_STORAGE_CLASS events: %v", classes)
	}
}

// TestPullTimeUpdateExclusions: pulls record lastRecordedPullTime, except by an excluded
// principal (a role's sessions included): pulltime.go.
func TestPullTimeUpdateExclusions(t *testing.T) {
	e := start(t)
	admin := e.userConfig(t, sandbox.SourceAccount, sandbox.SourceUser)
	client := ecr.NewFromConfig(admin)
	const repo = "team-a/pulled"
	createRepo(t, e.ctx, admin, repo, "")
	host, auth := registryAuth(t, e.ctx, admin)
	img, _ := random.Image(256, 1)
	if err := remote.Write(ref(t, host, repo, "v1"), img, remote.WithAuth(auth)); err != nil {
		t.Fatal(err)
	}
	pulled := func() bool {
		t.Helper()
		out, err := client.DescribeImages(e.ctx, &ecr.DescribeImagesInput{RepositoryName: aws.String(repo)})
		if err != nil {
			t.Fatal(err)
		}
		return out.ImageDetails[0].LastRecordedPullTime != nil
	}
	if pulled() {
		t.Fatal("pushed, never pulled, yet a pull time")
	}
	if _, err := remote.Head(ref(t, host, repo, "v1"), remote.WithAuth(auth)); err != nil || pulled() {
		t.Fatalf("a HEAD recorded a pull (%v)", err)
	}

	// The source account's replicator user is excluded; its pulls leave the time alone.
	userARN := fmt.Sprintf("arn:aws:iam::%s:user/%s", sandbox.SourceAccount, sandbox.SourceUser)
	if _, err := client.RegisterPullTimeUpdateExclusion(e.ctx, &ecr.RegisterPullTimeUpdateExclusionInput{PrincipalArn: aws.String(userARN)}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.RegisterPullTimeUpdateExclusion(e.ctx, &ecr.RegisterPullTimeUpdateExclusionInput{PrincipalArn: aws.String(userARN)}); errorCode(err) != "ExclusionAlreadyExistsException" {
		t.Fatalf("registered twice: %v", err)
	}
	list, err := client.ListPullTimeUpdateExclusions(e.ctx, &ecr.ListPullTimeUpdateExclusionsInput{})
	if err != nil || len(list.PullTimeUpdateExclusions) != 1 || list.PullTimeUpdateExclusions[0] != userARN {
		t.Fatalf("exclusions: %+v %v", list, err)
	}
	if _, err := remote.Get(ref(t, host, repo, "v1"), remote.WithAuth(auth)); err != nil || pulled() {
		t.Fatalf("an excluded principal's pull recorded a pull time (%v)", err)
	}
	if _, err := client.DeregisterPullTimeUpdateExclusion(e.ctx, &ecr.DeregisterPullTimeUpdateExclusionInput{PrincipalArn: aws.String(userARN)}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.BatchGetImage(e.ctx, &ecr.BatchGetImageInput{RepositoryName: aws.String(repo), ImageIds: []ecrtypes.ImageIdentifier{{ImageTag: aws.String("v1")}}}); err != nil || !pulled() {
		t.Fatalf("a pull after the exclusion was removed recorded nothing (%v)", err)
	}
	if _, err := client.DeregisterPullTimeUpdateExclusion(e.ctx, &ecr.DeregisterPullTimeUpdateExclusionInput{PrincipalArn: aws.String(userARN)}); errorCode(err) != "ExclusionNotFoundException" {
		t.Fatalf("deregistered twice: %v", err)
	}
}

// TestTagLimits: ECR refuses a repository tag whose key is over 128 characters or whose
// value is over 256 (InvalidTagParameterException, API_Tag), on CreateRepository and on
// TagResource, and more than 50 tags on a repository (TooManyTagsException,
// API_TagResource).
func TestTagLimits(t *testing.T) {
	e := start(t)
	cfg := e.userConfig(t, sandbox.SourceAccount, sandbox.SourceUser)
	client := ecr.NewFromConfig(cfg)
	tag := func(k, v string) []ecrtypes.Tag { return []ecrtypes.Tag{{Key: aws.String(k), Value: aws.String(v)}} }
	create := func(name string, tags []ecrtypes.Tag) error {
		_, err := client.CreateRepository(e.ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String(name), Tags: tags})
		return err
	}
	if err := create("team-a/fits", tag(strings.Repeat("k", 128), strings.Repeat("v", 256))); err != nil {
		t.Fatalf("a 128-character key, a 256-character value: %v", err)
	}
	for name, tags := range map[string][]ecrtypes.Tag{
		"team-a/long-value": tag("k", strings.Repeat("v", 257)),
		"team-a/long-key":   tag(strings.Repeat("k", 129), "v"),
		"team-a/empty-key":  tag("", "v"),
	} {
		if err := create(name, tags); errorCode(err) != "InvalidTagParameterException" {
			t.Errorf("CreateRepository %s: %v, want InvalidTagParameterException", name, err)
		}
	}
	arn := aws.String(fmt.Sprintf("arn:aws:ecr:%s:%s:repository/team-a/fits", sandbox.DefaultRegion, sandbox.SourceAccount))
	if _, err := client.TagResource(e.ctx, &ecr.TagResourceInput{ResourceArn: arn, Tags: tag("k", strings.Repeat("v", 257))}); errorCode(err) != "InvalidTagParameterException" {
		t.Errorf("TagResource with a 257-character value: %v, want InvalidTagParameterException", err)
	}
	var many []ecrtypes.Tag
	for i := range 50 {
		many = append(many, ecrtypes.Tag{Key: aws.String(fmt.Sprintf("k%d", i)), Value: aws.String("v")})
	}
	if _, err := client.TagResource(e.ctx, &ecr.TagResourceInput{ResourceArn: arn, Tags: many}); errorCode(err) != "TooManyTagsException" {
		t.Errorf("TagResource to 51 tags: %v, want TooManyTagsException", err)
	}
}

// TestRegistryIdPattern: a registryId given must be 12 digits ([0-9]{12}, every ECR
// action's request syntax): an empty one is refused, not read as "the caller's".
func TestRegistryIdPattern(t *testing.T) {
	e := start(t)
	cfg := e.userConfig(t, sandbox.SourceAccount, sandbox.SourceUser)
	client := ecr.NewFromConfig(cfg)
	createRepo(t, e.ctx, cfg, "team-a/app", "")
	for _, id := range []string{"", "1111", "abcdefghijkl"} {
		_, err := client.DescribeImages(e.ctx, &ecr.DescribeImagesInput{RegistryId: aws.String(id), RepositoryName: aws.String("team-a/app")})
		if errorCode(err) != "InvalidParameterException" {
			t.Errorf("registryId %q: %v, want InvalidParameterException", id, err)
		}
	}
	if _, err := client.DescribeImages(e.ctx, &ecr.DescribeImagesInput{RegistryId: aws.String(sandbox.SourceAccount), RepositoryName: aws.String("team-a/app")}); err != nil {
		t.Errorf("the caller's own registryId: %v", err)
	}
}
