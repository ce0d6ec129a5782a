package cli

import "fmt"

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
