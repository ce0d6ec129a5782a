package cli

import (
	"fmt"
	"path"

	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
)

// tagMutability is an ECR repository's tag mutability setting, with its exclusion
// filters: which tags a push may not move.
// https://docs.aws.amazon.com/AmazonECR/latest/userguide/image-tag-mutability.html
type tagMutability struct {
	setting ecrtypes.ImageTagMutability
	filters []string
}

func tagMutabilityOf(r ecrtypes.Repository) tagMutability {
	m := tagMutability{setting: r.ImageTagMutability}
	for _, f := range r.ImageTagMutabilityExclusionFilters {
		if f.Filter != nil {
			m.filters = append(m.filters, *f.Filter)
		}
	}
	return m
}

// immutable reports whether a push may not move tag to another image: IMMUTABLE, or one
// of the WITH_EXCLUSION settings that makes tag an exception (a filter is a tag with *
// wildcards, as path.Match reads it: tags hold no '/').
func (m tagMutability) immutable(tag string) bool {
	excluded := false
	for _, f := range m.filters {
		if ok, _ := path.Match(f, tag); ok {
			excluded = true
			break
		}
	}
	switch m.setting {
	case ecrtypes.ImageTagMutabilityImmutable:
		return true
	case ecrtypes.ImageTagMutabilityImmutableWithExclusion:
		return !excluded
	case ecrtypes.ImageTagMutabilityMutableWithExclusion:
		return excluded
	}
	return false
}

// immutableCode is the code a copy over an immutable tag ends with (the registry's answer
// to the manifest PUT): a dry run says it of the copy it finds in that state.
const immutableCode = "TAG_INVALID"

// immutableMessage says why a dry run's copy would end in conflict.
func immutableMessage(tag, at string) string {
	there := "there"
	if at != "" {
		there += " (" + shortDigest(at) + ")"
	}
	return fmt.Sprintf("the destination's tags are immutable and %s points to another image %s: the copy would end in conflict (%s), whatever is rerun; delete that tag there first if it is to move",
		tag, there, immutableCode)
}
