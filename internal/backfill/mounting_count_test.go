package backfill

import (
	"testing"

	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
)

// TestMountableCountsWhatCopiesMount: a layer counts once for each destination repository
// after the first that lacks it, among repositories one role copies into with one
// encryption; a repository holding it already, one of another encryption or role, and one
// whose encryption is known only once created do not count. Images read count per
// registry.
func TestMountableCountsWhatCopiesMount(t *testing.T) {
	const base, own = 1000, 10
	target := func(region, role, repo string) rules.Target {
		return rules.Target{Destination: rules.Destination{AccountID: "222222222222", Region: region, RoleARN: role}, Repository: repo}
	}
	up := func(src string, t rules.Target) upload {
		return upload{repo: src, digest: "sha256:" + src, target: t, exists: true}
	}
	images := map[string]readImage{}
	for _, src := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		images[src+"@sha256:"+src] = readImage{layers: []layer{{"base", base}, {"own-" + src, own}}, manifests: 1}
	}
	east := []upload{
		up("a", target("us-east-1", "role-1", "m/a")),
		up("b", target("us-east-1", "role-1", "m/b")),
		up("c", target("us-east-1", "role-1", "m/c")), // holds the base
		up("d", target("us-east-1", "role-1", "m/d")), // KMS
		up("e", target("us-east-1", "role-2", "m/e")), // another role
		up("f", target("us-east-1", "role-1", "m/f")), // a KMS source, created: unknown
	}
	facts := map[ecrname.Repo]destFacts{}
	for _, u := range east {
		facts[u.dest()] = destFacts{encryption: "AES256", held: map[string]bool{}}
	}
	facts[east[2].dest()] = destFacts{encryption: "AES256", held: map[string]bool{"base": true}}
	facts[east[3].dest()] = destFacts{encryption: "KMS arn:aws:kms:us-east-1:222222222222:key/k", held: map[string]bool{}}
	facts[east[5].dest()] = destFacts{held: map[string]bool{}}
	m := newRegistryMounting()
	for _, u := range east {
		m.add(u, images, facts)
	}
	if got := m.mountable(); got != base || m.reads != len(east) || m.partial {
		t.Errorf("us-east-1: %d bytes mountable, %d images read, partial %v; want the base once (m/a and m/b lack it; the others cannot mount it), %d read", got, m.reads, m.partial, len(east))
	}
	west := newRegistryMounting()
	for _, src := range []string{"g", "h"} {
		u := up(src, target("us-west-2", "role-1", "m/"+src))
		if src == "h" {
			delete(images, u.key()) // not read
		}
		facts[u.dest()] = destFacts{encryption: "AES256", held: map[string]bool{}}
		west.add(u, images, facts)
	}
	if got := west.mountable(); got != 0 || west.reads != 1 || !west.partial {
		t.Errorf("us-west-2: %d bytes mountable, %d images read, partial %v; want 0 (one image read), 1, partial", got, west.reads, west.partial)
	}
}
