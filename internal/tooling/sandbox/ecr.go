package sandbox

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The ECR API over AWS JSON 1.1 (X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.<Op>),
// answering from the same content the registry serves.
// https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_Operations.html

// tagPattern is what PutImage accepts: 1-300 characters (API_PutImage, imageTag); the
// registry API takes at most registryTagMax of them.
var tagPattern = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,299}$`)

// accountIDPattern is a registryId's (https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_BatchGetImage.html).
var accountIDPattern = regexp.MustCompile(`^[0-9]{12}$`)

type imageID struct {
	Digest string `json:"imageDigest,omitempty"`
	Tag    string `json:"imageTag,omitempty"`
}

type imageFailure struct {
	ImageID       imageID `json:"imageId"`
	FailureCode   string  `json:"failureCode"`
	FailureReason string  `json:"failureReason"`
}

type repositoryJSON struct {
	RepositoryArn                      string            `json:"repositoryArn"`
	RegistryID                         string            `json:"registryId"`
	RepositoryName                     string            `json:"repositoryName"`
	RepositoryURI                      string            `json:"repositoryUri"`
	CreatedAt                          epoch             `json:"createdAt"`
	ImageTagMutability                 string            `json:"imageTagMutability"`
	ImageTagMutabilityExclusionFilters []exclusionFilter `json:"imageTagMutabilityExclusionFilters,omitempty"`
	ImageScanningConfiguration         struct {
		ScanOnPush bool `json:"scanOnPush"`
	} `json:"imageScanningConfiguration"`
	EncryptionConfiguration struct {
		EncryptionType string `json:"encryptionType"`
		KmsKey         string `json:"kmsKey,omitempty"`
	} `json:"encryptionConfiguration"`
}

type imageDetail struct {
	RegistryID             string   `json:"registryId"`
	RepositoryName         string   `json:"repositoryName"`
	ImageDigest            string   `json:"imageDigest"`
	ImageTags              []string `json:"imageTags,omitempty"`
	ImageSizeInBytes       int64    `json:"imageSizeInBytes"`
	ImagePushedAt          epoch    `json:"imagePushedAt"`
	ImageManifestMediaType string   `json:"imageManifestMediaType"`
	ArtifactMediaType      string   `json:"artifactMediaType,omitempty"`
	SubjectManifestDigest  string   `json:"subjectManifestDigest,omitempty"`
	ImageStatus            string   `json:"imageStatus"`
	LastRecordedPullTime   *epoch   `json:"lastRecordedPullTime,omitempty"`
	LastArchivedAt         *epoch   `json:"lastArchivedAt,omitempty"`
	LastActivatedAt        *epoch   `json:"lastActivatedAt,omitempty"`
	// Set once the image has a scan (scan.go).
	ImageScanStatus          *scanStatusJSON      `json:"imageScanStatus,omitempty"`
	ImageScanFindingsSummary *findingsSummaryJSON `json:"imageScanFindingsSummary,omitempty"`
}

func decodeInput(body []byte, v any) *apiError {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	if err := json.Unmarshal(body, v); err != nil {
		return errorf(400, "SerializationException", "cannot read the request: %v", err)
	}
	return nil
}

// imageFailureKey carries an injected per-image failure code (APIFault.ImageFailure).
type imageFailureKey struct{}

// injectedImageFailure is the per-image failure a fault asks for, with ECR's wording where
// known (the rest: a guess).
func injectedImageFailure(ctx context.Context, id imageID) (imageFailure, bool) {
	code, _ := ctx.Value(imageFailureKey{}).(string)
	if code == "" {
		return imageFailure{}, false
	}
	reason := failureReasons[code]
	if reason == "" {
		reason = "injected failure " + code
	}
	return imageFailure{ImageID: id, FailureCode: code, FailureReason: reason}, true
}

func (s *Sandbox) ecrCall(ctx context.Context, c *caller, op string, body []byte, entry *Entry) (any, *apiError) {
	var in struct {
		RegistryID      *string                                 `json:"registryId"`
		RepositoryName  string                                  `json:"repositoryName"`
		RepositoryNames []string                                `json:"repositoryNames"`
		ImageIDs        []imageID                               `json:"imageIds"`
		MaxResults      *int                                    `json:"maxResults"`
		NextToken       string                                  `json:"nextToken"`
		Filter          struct{ TagStatus, ImageStatus string } `json:"filter"`
		ImageID         *imageID                                `json:"imageId"`
		TargetClass     string                                  `json:"targetStorageClass"`
		ImageManifest   string                                  `json:"imageManifest"`
		ManifestType    string                                  `json:"imageManifestMediaType"`
		ImageTag        string                                  `json:"imageTag"`
		ImageDigest     string                                  `json:"imageDigest"`
		Mutability      string                                  `json:"imageTagMutability"`
		Exclusions      []exclusionFilter                       `json:"imageTagMutabilityExclusionFilters"`
		Scanning        *struct {
			ScanOnPush bool `json:"scanOnPush"`
		} `json:"imageScanningConfiguration"`
		Encryption *struct {
			EncryptionType string `json:"encryptionType"`
			KmsKey         string `json:"kmsKey"`
		} `json:"encryptionConfiguration"`
		Tags            []resourceTag `json:"tags"`
		Force           bool          `json:"force"`
		LifecyclePolicy string        `json:"lifecyclePolicyText"`
		PolicyText      string        `json:"policyText"`
		ResourceArn     string        `json:"resourceArn"`
		AcceptedTypes   []string      `json:"acceptedMediaTypes"`
		PrincipalArn    string        `json:"principalArn"`
		SettingName     string        `json:"name"`
		SettingValue    string        `json:"value"`
		LayerDigests    []string      `json:"layerDigests"`
	}
	if err := decodeInput(body, &in); err != nil {
		return nil, err
	}
	if err := checkRegistryID(c, op, in.RegistryID); err != nil {
		return nil, err
	}
	reg, err := s.registry(c.cred.account, c.region)
	if err != nil {
		return nil, errorf(400, "InvalidParameterException", "%v", err)
	}
	entry.Account, entry.Region = reg.account, reg.region
	if in.ResourceArn != "" {
		in.RepositoryName = repoFromARN(in.ResourceArn)
	}
	entry.Repository = in.RepositoryName
	entry.Reference = imageRefs(in.ImageTag, in.ImageDigest, in.ImageIDs)
	if in.ImageID != nil {
		entry.Reference = imageRefs(in.ImageID.Tag, in.ImageID.Digest, nil)
	}
	switch op {
	case "GetAuthorizationToken":
		tok, exp := s.issueToken(c.cred, c.region)
		return map[string]any{"authorizationData": []map[string]any{{
			"authorizationToken": tok,
			"expiresAt":          epoch(exp),
			"proxyEndpoint":      "http://" + reg.host,
		}}}, nil
	case "CreateRepository":
		return reg.createRepository(in.RepositoryName, in.Mutability, in.Exclusions, in.Scanning != nil && in.Scanning.ScanOnPush, in.Encryption, in.Tags)
	case "DescribeRepositories":
		return reg.describeRepositories(in.RepositoryNames, in.MaxResults, in.NextToken)
	case "DeleteRepository":
		return reg.deleteRepository(in.RepositoryName, in.Force)
	case "ListImages":
		return reg.listImages(in.RepositoryName, in.Filter.TagStatus, in.Filter.ImageStatus, in.MaxResults, in.NextToken)
	case "DescribeImages":
		return reg.describeImages(in.RepositoryName, in.ImageIDs, in.Filter.TagStatus, in.Filter.ImageStatus, in.MaxResults, in.NextToken)
	case "UpdateImageStorageClass":
		return reg.updateImageStorageClass(in.RepositoryName, in.ImageID, in.TargetClass)
	case "DescribeImageScanFindings":
		return reg.describeImageScanFindings(in.RepositoryName, in.ImageID, in.MaxResults, in.NextToken)
	case "BatchGetImage":
		return reg.batchGetImage(ctx, c, in.RepositoryName, in.ImageIDs, in.AcceptedTypes)
	case "BatchCheckLayerAvailability":
		return reg.batchCheckLayerAvailability(in.RepositoryName, in.LayerDigests)
	case "RegisterPullTimeUpdateExclusion", "DeregisterPullTimeUpdateExclusion", "ListPullTimeUpdateExclusions":
		return s.pullTimeExclusionCall(c, op, in.PrincipalArn, in.MaxResults, in.NextToken)
	case "PutImage":
		return reg.putImage(in.RepositoryName, in.ImageManifest, in.ManifestType, in.ImageTag, in.ImageDigest)
	case "BatchDeleteImage":
		return reg.batchDeleteImage(ctx, in.RepositoryName, in.ImageIDs)
	case "GetAccountSetting":
		return reg.getAccountSetting(in.SettingName)
	case "PutAccountSetting":
		return reg.putAccountSetting(in.SettingName, in.SettingValue)
	case "GetLifecyclePolicy", "PutLifecyclePolicy", "DeleteLifecyclePolicy",
		"GetRepositoryPolicy", "SetRepositoryPolicy", "ListTagsForResource", "TagResource":
		return reg.repositorySetting(op, in.RepositoryName, in.LifecyclePolicy, in.PolicyText, in.Tags)
	}
	return nil, errorf(400, "UnknownOperationException", "the sandbox does not emulate ecr:%s", op)
}

// imageRefs lists the tags and digests an image operation names, comma-separated, for the
// access log's Reference (and hold filters).
func imageRefs(tag, digest string, ids []imageID) string {
	var refs []string
	for _, v := range []string{tag, digest} {
		if v != "" {
			refs = append(refs, v)
		}
	}
	for _, id := range ids {
		for _, v := range []string{id.Tag, id.Digest} {
			if v != "" && !contains(refs, v) {
				refs = append(refs, v)
			}
		}
	}
	return strings.Join(refs, ",")
}

// checkRegistryID refuses a registryId that is not an account ID ("Pattern: [0-9]{12}" in
// every ECR action's request syntax, e.g. API_BatchGetImage; an empty one is no exception;
// the error code of a pattern violation is not documented: InvalidParameterException is a
// guess), or another account than the caller's: the sandbox acts on the caller's own
// registry, and touching another account needs its credentials.
func checkRegistryID(c *caller, op string, id *string) *apiError {
	switch {
	case id == nil:
		return nil
	case !accountIDPattern.MatchString(*id):
		return errorf(400, "InvalidParameterException", "Invalid parameter at 'registryId' failed to satisfy constraint: 'Member must satisfy regular expression pattern: [0-9]{12}'")
	case *id != c.cred.account:
		return errorf(400, "AccessDeniedException", "User: %s is not authorized to perform: ecr:%s on registry %s (the sandbox acts on the caller's own registry only)", c.cred.principalARN, op, *id)
	}
	return nil
}

func repoFromARN(arn string) string {
	if _, name, ok := strings.Cut(arn, ":repository/"); ok {
		return name
	}
	return ""
}

func (r *registry) repositoryARN(name string) string {
	return fmt.Sprintf("arn:aws:ecr:%s:%s:repository/%s", r.region, r.account, name)
}

func (r *registry) repoJSON(repo *repository) repositoryJSON {
	var j repositoryJSON
	j.RepositoryArn = r.repositoryARN(repo.name)
	j.RegistryID = r.account
	j.RepositoryName = repo.name
	j.RepositoryURI = r.host + "/" + repo.name
	j.CreatedAt = epoch(repo.createdAt)
	j.ImageTagMutability = repo.mutability
	j.ImageTagMutabilityExclusionFilters = repo.exclusions
	j.ImageScanningConfiguration.ScanOnPush = repo.scanOnPush
	j.EncryptionConfiguration.EncryptionType = repo.encryptionType
	j.EncryptionConfiguration.KmsKey = repo.kmsKey
	return j
}

func (r *registry) repoNotFound(name string) *apiError {
	return errorf(400, "RepositoryNotFoundException", "The repository with name '%s' does not exist in the registry with id '%s'", name, r.account)
}

// CreateRepository: https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_CreateRepository.html
func (r *registry) createRepository(name, mutability string, exclusions []exclusionFilter, scan bool, enc *struct {
	EncryptionType string `json:"encryptionType"`
	KmsKey         string `json:"kmsKey"`
}, tags []resourceTag) (any, *apiError) {
	if len(name) < 2 || len(name) > 256 || !repositoryNamePattern.MatchString(name) {
		return nil, errorf(400, "InvalidParameterException", "Invalid parameter at 'repositoryName' failed to satisfy constraint: 'must satisfy regular expression '"+ecrRepositoryPattern+"' and length between 2 and 256'")
	}
	if err := checkTags(tags, mergedTagCount(nil, tags)); err != nil {
		return nil, err
	}
	switch mutability {
	case "":
		mutability = "MUTABLE"
	case "MUTABLE", "IMMUTABLE":
		if len(exclusions) > 0 {
			return nil, errorf(400, "InvalidParameterException", "imageTagMutabilityExclusionFilters require IMMUTABLE_WITH_EXCLUSION or MUTABLE_WITH_EXCLUSION")
		}
	case "IMMUTABLE_WITH_EXCLUSION", "MUTABLE_WITH_EXCLUSION":
		if len(exclusions) == 0 {
			return nil, errorf(400, "InvalidParameterException", "%s requires imageTagMutabilityExclusionFilters", mutability)
		}
	default:
		return nil, errorf(400, "InvalidParameterException", "Invalid parameter at 'imageTagMutability': %q is not one of MUTABLE, IMMUTABLE, IMMUTABLE_WITH_EXCLUSION, MUTABLE_WITH_EXCLUSION", mutability)
	}
	for _, f := range exclusions {
		if f.FilterType != "WILDCARD" || f.Filter == "" {
			return nil, errorf(400, "InvalidParameterException", "exclusion filter %+v: filterType must be WILDCARD and filter non-empty", f)
		}
	}
	encType, kmsKey := "AES256", ""
	if enc != nil && enc.EncryptionType != "" {
		switch enc.EncryptionType {
		case "AES256":
		case "KMS", "KMS_DSSE":
			kmsKey = enc.KmsKey
			if kmsKey == "" {
				kmsKey = fmt.Sprintf("arn:aws:kms:%s:%s:alias/aws/ecr", r.region, r.account)
			}
		default:
			return nil, errorf(400, "InvalidParameterException", "Invalid parameter at 'encryptionType': %q", enc.EncryptionType)
		}
		encType = enc.EncryptionType
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, exists := r.repos[name]; exists {
		return nil, errorf(400, "RepositoryAlreadyExistsException", "The repository with name '%s' already exists in the registry with id '%s'", name, r.account)
	}
	repo := &repository{
		name: name, createdAt: r.sb.now(), mutability: mutability, exclusions: exclusions,
		scanOnPush: scan, encryptionType: encType, kmsKey: kmsKey, tags: tags,
		manifests: map[string]*manifestRecord{}, tagIndex: map[string]string{}, blobs: map[string]int64{},
	}
	r.repos[name] = repo
	return map[string]any{"repository": r.repoJSON(repo)}, nil
}

// pageBounds turns maxResults/nextToken into a slice window. The token is opaque to
// clients: here, the index of the next item.
func pageBounds(total int, maxResults *int, nextToken string, defaultMax int) (int, int, string, *apiError) {
	limit := defaultMax
	if maxResults != nil {
		if *maxResults < 1 || *maxResults > 1000 {
			return 0, 0, "", errorf(400, "InvalidParameterException", "Invalid parameter at 'maxResults' failed to satisfy constraint: 'Member must have value between 1 and 1000'")
		}
		limit = *maxResults
	}
	start := 0
	if nextToken != "" {
		raw, err := base64.RawURLEncoding.DecodeString(nextToken)
		n, err2 := strconv.Atoi(string(raw))
		if err != nil || err2 != nil || n < 0 || n > total {
			return 0, 0, "", errorf(400, "InvalidParameterException", "Invalid parameter at 'nextToken'")
		}
		start = n
	}
	end := min(start+limit, total)
	next := ""
	if end < total {
		next = base64.RawURLEncoding.EncodeToString([]byte(strconv.Itoa(end)))
	}
	return start, end, next, nil
}

// listingOrder is where a repository comes in DescribeRepositories' listing.
func listingOrder(name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return h.Sum64()
}

func withToken(m map[string]any, next string) map[string]any {
	if next != "" {
		m["nextToken"] = next
	}
	return m
}

// DescribeRepositories: default 100 per page, 1000 at most.
func (r *registry) describeRepositories(names []string, maxResults *int, token string) (any, *apiError) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var repos []*repository
	if len(names) > 0 {
		if maxResults != nil || token != "" {
			return nil, errorf(400, "InvalidParameterException", "maxResults and nextToken cannot be used with repositoryNames")
		}
		for _, n := range names {
			repo, ok := r.repos[n]
			if !ok {
				return nil, r.repoNotFound(n)
			}
			repos = append(repos, repo)
		}
	} else {
		for _, repo := range r.repos {
			repos = append(repos, repo)
		}
		// ECR documents no order for DescribeRepositories' results, only nextToken to
		// continue (https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_DescribeRepositories.html).
		// The sandbox lists in an order that is neither by name nor by creation (a hash of
		// the name, stable between calls), so code that assumes an order fails here as it
		// could on AWS.
		sort.Slice(repos, func(i, j int) bool { return listingOrder(repos[i].name) < listingOrder(repos[j].name) })
	}
	start, end, next, err := pageBounds(len(repos), maxResults, token, 100)
	if err != nil {
		return nil, err
	}
	out := []repositoryJSON{}
	for _, repo := range repos[start:end] {
		out = append(out, r.repoJSON(repo))
	}
	return withToken(map[string]any{"repositories": out}, next), nil
}

func (r *registry) deleteRepository(name string, force bool) (any, *apiError) {
	r.mu.Lock()
	defer r.mu.Unlock()
	repo, ok := r.repos[name]
	if !ok {
		return nil, r.repoNotFound(name)
	}
	if len(repo.manifests) > 0 && !force {
		return nil, errorf(400, "RepositoryNotEmptyException", "The repository with name '%s' in registry with id '%s' cannot be deleted because it still contains images", name, r.account)
	}
	delete(r.repos, name)
	return map[string]any{"repository": r.repoJSON(repo)}, nil
}

// ListImages lists one identifier per tag, and the digest alone for untagged images.
func (r *registry) listImages(name, tagStatus, imageStatus string, maxResults *int, token string) (any, *apiError) {
	if aerr := checkStatusFilter(imageStatus); aerr != nil {
		return nil, aerr
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	repo, ok := r.repos[name]
	if !ok {
		return nil, r.repoNotFound(name)
	}
	var ids []imageID
	for _, d := range repo.sortedDigests() {
		if !r.statusMatches(repo.manifests[d], imageStatus) {
			continue
		}
		tags := repo.tagsOf(d)
		if len(tags) == 0 && tagStatus != "TAGGED" {
			ids = append(ids, imageID{Digest: d})
		}
		if tagStatus != "UNTAGGED" {
			for _, t := range tags {
				ids = append(ids, imageID{Digest: d, Tag: t})
			}
		}
	}
	start, end, next, err := pageBounds(len(ids), maxResults, token, 100)
	if err != nil {
		return nil, err
	}
	out := append([]imageID{}, ids[start:end]...)
	return withToken(map[string]any{"imageIds": out}, next), nil
}

func (r *registry) detail(repo *repository, m *manifestRecord) imageDetail {
	d := imageDetail{
		RegistryID: r.account, RepositoryName: repo.name, ImageDigest: m.digest,
		ImageTags: repo.tagsOf(m.digest), ImageSizeInBytes: repo.imageSize(m),
		ImagePushedAt: epoch(m.pushedAt), ImageManifestMediaType: m.mediaType,
		ArtifactMediaType: m.artifactType, SubjectManifestDigest: m.subject, ImageStatus: r.status(m),
		LastArchivedAt: epochPtr(m.lastArchivedAt), LastActivatedAt: epochPtr(m.lastActivatedAt), LastRecordedPullTime: epochPtr(m.lastPulledAt),
	}
	scanSummary(&d, m)
	return d
}

// checkStatusFilter refuses an imageStatus filter DescribeImagesFilter does not know.
func checkStatusFilter(f string) *apiError {
	switch f {
	case "", statusActive, statusArchived, statusActivating, "ANY":
		return nil
	}
	return errorf(400, "InvalidParameterException", "Invalid parameter at 'filter.imageStatus': %q is not one of ACTIVE, ARCHIVED, ACTIVATING, ANY", f)
}

// resolve finds the manifest an image ID names; a tag and digest that disagree fail.
func (repo *repository) resolve(id imageID) (*manifestRecord, string, string) {
	d := id.Digest
	if id.Tag != "" {
		td, ok := repo.tagIndex[id.Tag]
		if !ok {
			return nil, "ImageNotFound", "Requested image not found"
		}
		if d != "" && d != td {
			return nil, "ImageTagDoesNotMatchDigest", "Invalid image digest. The image tag does not match the digest"
		}
		d = td
	}
	m, ok := repo.manifests[d]
	if !ok {
		return nil, "ImageNotFound", "Requested image not found"
	}
	return m, "", ""
}

// DescribeImages: https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_DescribeImages.html
func (r *registry) describeImages(name string, ids []imageID, tagStatus, imageStatus string, maxResults *int, token string) (any, *apiError) {
	if aerr := checkStatusFilter(imageStatus); aerr != nil {
		return nil, aerr
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	repo, ok := r.repos[name]
	if !ok {
		return nil, r.repoNotFound(name)
	}
	var details []imageDetail
	if len(ids) > 0 {
		if maxResults != nil || token != "" {
			return nil, errorf(400, "InvalidParameterException", "maxResults and nextToken cannot be used with imageIds")
		}
		for _, id := range ids {
			m, code, msg := repo.resolve(id)
			if m == nil {
				if code == "ImageNotFound" {
					return nil, errorf(400, "ImageNotFoundException", "The image with imageId {imageDigest:'%s', imageTag:'%s'} does not exist within the repository with name '%s' in the registry with id '%s'", id.Digest, id.Tag, name, r.account)
				}
				return nil, errorf(400, "InvalidParameterException", "%s", msg)
			}
			details = append(details, r.detail(repo, m))
		}
		return map[string]any{"imageDetails": details}, nil
	}
	for _, d := range repo.sortedDigests() {
		tagged := len(repo.tagsOf(d)) > 0
		if (tagStatus == "TAGGED" && !tagged) || (tagStatus == "UNTAGGED" && tagged) || !r.statusMatches(repo.manifests[d], imageStatus) {
			continue
		}
		details = append(details, r.detail(repo, repo.manifests[d]))
	}
	start, end, next, err := pageBounds(len(details), maxResults, token, 100)
	if err != nil {
		return nil, err
	}
	return withToken(map[string]any{"imageDetails": append([]imageDetail{}, details[start:end]...)}, next), nil
}

// BatchGetImage: https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_BatchGetImage.html
func (r *registry) batchGetImage(ctx context.Context, c *caller, name string, ids []imageID, accepted []string) (any, *apiError) {
	if len(ids) == 0 || len(ids) > 100 {
		return nil, errorf(400, "InvalidParameterException", "imageIds must hold between 1 and 100 items")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	repo, ok := r.repos[name]
	if !ok {
		return nil, r.repoNotFound(name)
	}
	images := []map[string]any{}
	failures := []imageFailure{}
	for _, id := range ids {
		if f, ok := injectedImageFailure(ctx, id); ok {
			failures = append(failures, f)
			continue
		}
		m, code, msg := repo.resolve(id)
		if m == nil {
			failures = append(failures, imageFailure{ImageID: id, FailureCode: code, FailureReason: msg})
			continue
		}
		if !r.pullable(m) {
			failures = append(failures, imageFailure{ImageID: id, FailureCode: "ImageInaccessible", FailureReason: "The image is " + r.status(m) + " and cannot be pulled (archive storage class)"})
			continue
		}
		if len(accepted) > 0 && !acceptable(accepted, m.mediaType) {
			failures = append(failures, imageFailure{ImageID: id, FailureCode: "UnsupportedImageType", FailureReason: "the stored manifest type " + m.mediaType + " is not among acceptedMediaTypes"})
			continue
		}
		r.recordPull(m, &registryToken{account: c.cred.account, region: c.region, principal: c.cred.principalARN, role: c.cred.roleARN})
		images = append(images, map[string]any{
			"registryId": r.account, "repositoryName": name,
			"imageId":                imageID{Digest: m.digest, Tag: id.Tag},
			"imageManifest":          string(m.body),
			"imageManifestMediaType": m.mediaType,
		})
	}
	return map[string]any{"images": images, "failures": failures}, nil
}

// PutImage: https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_PutImage.html
func (r *registry) putImage(name, manifest, mediaType, tag, digest string) (any, *apiError) {
	if manifest == "" {
		return nil, errorf(400, "InvalidParameterException", "imageManifest is required")
	}
	ref := digest
	if tag != "" {
		ref = tag
	}
	r.mu.Lock()
	repo, ok := r.repos[name]
	var before string
	archived := false // a re-push restores an archived image (archive.go): no ImageAlreadyExists
	if ok && tag != "" {
		before = repo.tagIndex[tag]
		if m := repo.manifests[before]; m != nil {
			archived = !r.pullable(m)
		}
	}
	r.mu.Unlock()
	if !ok {
		return nil, r.repoNotFound(name)
	}
	rec, perr := parseManifest([]byte(manifest), mediaType)
	if perr != nil {
		return nil, errorf(400, "InvalidParameterException", "Invalid parameter at 'imageManifest': %v", perr)
	}
	if digest != "" && digest != rec.digest {
		return nil, errorf(400, "ImageDigestDoesNotMatchException", "The specified digest %s does not match the digest %s of the manifest", digest, rec.digest)
	}
	if ref == "" {
		ref = rec.digest
	}
	if tag != "" && before == rec.digest && !archived {
		r.mu.Lock()
		immutable := repo.tagImmutable(tag)
		r.mu.Unlock()
		if !immutable {
			return nil, errorf(400, "ImageAlreadyExistsException", "Image with digest '%s' and tag '%s' already exists in the repository with name '%s' in registry with id '%s'", rec.digest, tag, name, r.account)
		}
	}
	got, rerr := r.putManifest(name, ref, []byte(manifest), mediaType)
	if rerr != nil {
		switch rerr.code {
		case "TAG_INVALID":
			if strings.Contains(rerr.message, "immutable") {
				return nil, errorf(400, "ImageTagAlreadyExistsException", "The image tag '%s' already exists in the '%s' repository and cannot be overwritten because the tag is immutable.", tag, name)
			}
			return nil, errorf(400, "InvalidParameterException", "%s", rerr.message)
		case "MANIFEST_BLOB_UNKNOWN":
			return nil, errorf(400, "LayersNotFoundException", "%s", rerr.message)
		case "DENIED":
			return nil, errorf(400, "LimitExceededException", "%s", rerr.message)
		default:
			return nil, errorf(400, "InvalidParameterException", "%s", rerr.message)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return map[string]any{"image": map[string]any{
		"registryId": r.account, "repositoryName": name,
		"imageId":                imageID{Digest: got, Tag: tag},
		"imageManifest":          manifest,
		"imageManifestMediaType": repo.manifests[got].mediaType,
	}}, nil
}

// deleteImage removes a tag (and the image when it was its last tag, as BatchDeleteImage
// documents) or, by digest, the image with all its tags. It returns a failure code, or "".
func (repo *repository) deleteImage(id imageID) string {
	m, code, _ := repo.resolve(id)
	if m == nil {
		return code
	}
	if id.Tag != "" && len(repo.tagsOf(m.digest)) > 1 {
		delete(repo.tagIndex, id.Tag)
		return ""
	}
	// The image itself goes: ECR refuses while an index in the repository references it
	// (ImageFailureCode ImageReferencedByManifestList, API_ImageFailure).
	for _, other := range repo.manifests {
		for _, c := range other.children {
			if c.Digest == m.digest {
				return "ImageReferencedByManifestList"
			}
		}
	}
	if id.Tag != "" {
		delete(repo.tagIndex, id.Tag)
	}
	for _, t := range repo.tagsOf(m.digest) {
		delete(repo.tagIndex, t)
	}
	delete(repo.manifests, m.digest)
	return ""
}

// failureReasons are ECR's wordings of BatchDeleteImage's failure codes (the last one's
// wording is a guess).
var failureReasons = map[string]string{
	"ImageNotFound":                 "Requested image not found",
	"ImageTagDoesNotMatchDigest":    "Invalid image digest. The image tag does not match the digest",
	"ImageReferencedByManifestList": "Requested image is referenced by a manifest list",
	"KmsError":                      "The KMS key used to encrypt the image could not be used (guess at ECR's wording)",
}

// BatchDeleteImage: https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_BatchDeleteImage.html
func (r *registry) batchDeleteImage(ctx context.Context, name string, ids []imageID) (any, *apiError) {
	if len(ids) == 0 || len(ids) > 100 {
		return nil, errorf(400, "InvalidParameterException", "imageIds must hold between 1 and 100 items")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	repo, ok := r.repos[name]
	if !ok {
		return nil, r.repoNotFound(name)
	}
	deleted := []imageID{}
	failures := []imageFailure{}
	for _, id := range ids {
		if f, ok := injectedImageFailure(ctx, id); ok {
			failures = append(failures, f)
			continue
		}
		m, _, _ := repo.resolve(id)
		if code := repo.deleteImage(id); code != "" {
			failures = append(failures, imageFailure{ImageID: id, FailureCode: code, FailureReason: failureReasons[code]})
			continue
		}
		deleted = append(deleted, imageID{Digest: m.digest, Tag: id.Tag})
		r.emitDelete(name, m.digest, id.Tag)
	}
	return map[string]any{"imageIds": deleted, "failures": failures}, nil
}

func (r *registry) repositorySetting(op, name, lifecycle, policy string, tags []resourceTag) (any, *apiError) {
	r.mu.Lock()
	defer r.mu.Unlock()
	repo, ok := r.repos[name]
	if !ok {
		return nil, r.repoNotFound(name)
	}
	base := map[string]any{"registryId": r.account, "repositoryName": name}
	switch op {
	case "GetLifecyclePolicy":
		if repo.lifecyclePolicy == "" {
			return nil, errorf(400, "LifecyclePolicyNotFoundException", "Lifecycle policy does not exist for the repository with name '%s' in the registry with id '%s'", name, r.account)
		}
		base["lifecyclePolicyText"] = repo.lifecyclePolicy
		base["lastEvaluatedAt"] = epoch(time.Unix(0, 0))
	case "PutLifecyclePolicy":
		if !json.Valid([]byte(lifecycle)) {
			return nil, errorf(400, "InvalidParameterException", "Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: 'Lifecycle policy validation failure'")
		}
		repo.lifecyclePolicy = lifecycle
		base["lifecyclePolicyText"] = lifecycle
	case "DeleteLifecyclePolicy":
		if repo.lifecyclePolicy == "" {
			return nil, errorf(400, "LifecyclePolicyNotFoundException", "Lifecycle policy does not exist for the repository with name '%s'", name)
		}
		base["lifecyclePolicyText"] = repo.lifecyclePolicy
		repo.lifecyclePolicy = ""
	case "GetRepositoryPolicy":
		if repo.policy == "" {
			return nil, errorf(400, "RepositoryPolicyNotFoundException", "Repository policy does not exist for the repository with name '%s' in the registry with id '%s'", name, r.account)
		}
		base["policyText"] = repo.policy
	case "SetRepositoryPolicy":
		if !json.Valid([]byte(policy)) {
			return nil, errorf(400, "InvalidParameterException", "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Invalid repository policy provided'")
		}
		repo.policy = policy
		base["policyText"] = policy
	case "ListTagsForResource":
		out := append([]resourceTag{}, repo.tags...)
		return map[string]any{"tags": out}, nil
	case "TagResource":
		if err := checkTags(tags, mergedTagCount(repo.tags, tags)); err != nil {
			return nil, err
		}
		for _, t := range tags {
			replaced := false
			for i := range repo.tags {
				if repo.tags[i].Key == t.Key {
					repo.tags[i].Value, replaced = t.Value, true
				}
			}
			if !replaced {
				repo.tags = append(repo.tags, t)
			}
		}
		return map[string]any{}, nil
	}
	return base, nil
}
