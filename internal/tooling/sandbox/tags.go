package sandbox

import (
	"unicode/utf8"
)

// ECR's limits on a repository's resource tags, checked on CreateRepository and
// TagResource as ECR checks them: a key of 1 to 128 characters, a value of 0 to 256
// (https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_Tag.html), refused with
// InvalidTagParameterException; at most 50 tags on a repository, refused with
// TooManyTagsException
// (https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_TagResource.html).
const (
	maxTagKey          = 128
	maxTagValue        = 256
	maxRepositoryTags  = 50
	invalidTagsMessage = "An invalid parameter has been specified. Tag keys can have a maximum character length of 128 characters, and tag values can have a maximum length of 256 characters."
)

// checkTags refuses tags ECR would refuse; total is how many the repository would carry.
func checkTags(tags []resourceTag, total int) *apiError {
	for _, t := range tags {
		if k := utf8.RuneCountInString(t.Key); k < 1 || k > maxTagKey || utf8.RuneCountInString(t.Value) > maxTagValue {
			return errorf(400, "InvalidTagParameterException", "%s", invalidTagsMessage)
		}
	}
	if total > maxRepositoryTags {
		return errorf(400, "TooManyTagsException", "The list of tags on the repository is over the limit. The maximum number of tags that can be applied to a repository is %d.", maxRepositoryTags)
	}
	return nil
}

// mergedTagCount is how many tags a repository carrying have holds after TagResource
// adds tags (a key it has is overwritten, not added).
func mergedTagCount(have, tags []resourceTag) int {
	keys := map[string]bool{}
	for _, t := range have {
		keys[t.Key] = true
	}
	for _, t := range tags {
		keys[t.Key] = true
	}
	return len(keys)
}
