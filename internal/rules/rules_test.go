package rules

import (
	"errors"
	"fmt"
	"io/fs"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
)

const hex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

const example = `
source:
  roleArn: arn:aws:iam::111111111111:role/reader
rules:
  - name: prod
    repositories: ["team-a/*", "!team-a/scratch-*"]
    tags: ["v*", "latest"]
    untagged: true
    referrers: true
    mirrorDeletes: false
    destinations:
      - accountId: "222222222222"
        region: eu-west-1
        roleArn: arn:aws:iam::222222222222:role/ecr-replicator-destination
        externalId: "optional"
        repositoryPrefix: "mirror/"
        createRepository: true
        kmsKey: arn:aws:kms:eu-west-1:222222222222:key/1234abcd-12ab-34cd-56ef-1234567890ab
        mirrorLifecyclePolicy: false
        mirrorRepositoryTags: false
`

func mustParse(t testing.TB, s string) *Document {
	t.Helper()
	d, err := Parse([]byte(s))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return d
}

func TestParseExample(t *testing.T) {
	d := mustParse(t, example)
	if d.SourceRoleARN() != "arn:aws:iam::111111111111:role/reader" {
		t.Errorf("SourceRoleARN = %q", d.SourceRoleARN())
	}
	r := d.Rules[0]
	if r.Name != "prod" || !r.Untagged || !r.Referrers || r.MirrorDeletes || len(r.Destinations) != 1 {
		t.Errorf("rule = %+v", r)
	}
}

func TestDefaults(t *testing.T) {
	d := mustParse(t, `
rules:
  - destinations: [{accountId: "222222222222", region: eu-west-1}]
  - destinations: [{accountId: 333333333333, region: eu-west-1}]
`)
	r := d.Rules[0]
	want := Destination{AccountID: "222222222222", Region: "eu-west-1", CreateRepository: true}
	if r.Name != "rule-0" || d.Rules[1].Name != "rule-1" || !r.Untagged || !r.Referrers || r.MirrorDeletes || r.DeleteImmutableTags ||
		!reflect.DeepEqual(r.Destinations[0], want) {
		t.Errorf("defaults: %+v", r)
	}
	// Unquoted numbers keep their text: account IDs are strings.
	if got := d.Rules[1].Destinations[0].AccountID; got != "333333333333" {
		t.Errorf("unquoted accountId = %q", got)
	}
	if !d.RepositoryInScope("anything/at/all") {
		t.Error("no repositories = all")
	}
	// Explicit false/null: false stays false, null means default.
	d = mustParse(t, `{"rules":[{"untagged":false,"referrers":null,"destinations":[{"accountId":"222222222222","region":"eu-west-1","createRepository":false}]}]}`)
	if d.Rules[0].Untagged || !d.Rules[0].Referrers || d.Rules[0].Destinations[0].CreateRepository {
		t.Errorf("explicit values: %+v", d.Rules[0])
	}
}

func TestParseJSONWithTabs(t *testing.T) {
	mustParse(t, "{\n\t\"rules\": [\n\t\t{\n\t\t\t\"destinations\": [{\"accountId\": \"222222222222\", \"region\": \"eu-west-1\"}]\n\t\t}\n\t]\n}\n")
}

func TestParseErrors(t *testing.T) {
	dst := `destinations: [{accountId: "222222222222", region: eu-west-1}]`
	cases := []struct {
		name, doc string
		want      []string // substrings of the one error
	}{
		{"empty", "", []string{"empty"}},
		{"null", "~", []string{"rules: at least one rule"}},
		{"no rules", "rules: []", []string{"rules: at least one rule"}},
		{"list", "- a", []string{"cannot unmarshal"}},
		{"syntax", "rules: [", []string{"rules document"}},
		{"two docs", "rules: []\n---\nrules: []\n", []string{"more than one YAML document"}},
		{"too big", "# " + strings.Repeat("x", MaxDocumentSize), []string{"256 KiB"}},
		{"unknown top", "rulez: []", []string{"line 1", `unknown field "rulez"`}},
		{"unknown rule field", "rules:\n  - name: a\n    tag: [x]\n    " + dst, []string{"line 3", `unknown field "tag"`, "a rule"}},
		{"unknown destination field", "rules:\n  - destinations:\n      - accountId: \"222222222222\"\n        region: eu-west-1\n        acountId: x\n", []string{"line 5", `unknown field "acountId"`, "a destination"}},
		{"unknown source field", "source: {role: x}\nrules: [{" + dst + "}]", []string{`unknown field "role"`}},
		{"bad bool", "rules: [{untagged: maybe, " + dst + "}]", []string{"boolean"}},
		{"tags not a list", "rules:\n  - tags: v*\n    " + dst, []string{`line 2: tags must be a list, e.g. tags: ["v*"]`}},
		{"repositories a mapping", "rules:\n  - repositories: {a: b}\n    " + dst, []string{`line 2: repositories must be a list, e.g. repositories: ["team-a/*"]`}},
		{"list for a string", "rules:\n  - name: [a]\n    " + dst, []string{"line 2: name must be a single value, not a list"}},
		{"value on its own line", "rules:\n  - tags:\n      a: b\n    " + dst, []string{`line 3: tags must be a list, e.g. tags: ["v*"]`}},
		{"list of lists", "rules:\n  - tags: [[\"v*\"]]\n    " + dst, []string{`line 2: tags must be a list of single values, not of lists, e.g. tags: ["v*"]`}},
		{"list of mappings", "rules:\n  - repositories: [{name: a}]\n    " + dst, []string{`line 2: repositories must be a list of single values, not of mappings`}},
		{"flow destination field", "rules:\n  - destinations: [{accountId: [\"222222222222\"], region: [us-east-1]}]\n",
			[]string{"line 2: accountId must be a single value, not a list; line 2: region must be a single value, not a list"}},
		{"destination not a mapping", "rules:\n  - destinations: [222222222222]\n", []string{"line 2: destinations must be a list of destinations, each a mapping"}},
		{"duplicate key", "rules: [{name: a, name: b, " + dst + "}]", []string{"already defined"}},
		{"null rule", "rules: [~]", []string{"rules[0]: rule is empty"}},
		{"null destination", "rules: [{destinations: [~]}]", []string{"rules[0].destinations[0]: destination is empty"}},
		{"no destinations", "rules: [{name: a}]", []string{"rules[0].destinations: at least one"}},
		{"source role", "source: {roleArn: nope}\nrules: [{" + dst + "}]", []string{"source.roleArn:", `"nope"`}},
		{"dup names", "rules: [{name: a, " + dst + "}, {name: a, " + dst + "}]", []string{"rules[1].name:", "unique"}},
		{"dup default name", "rules: [{" + dst + "}, {name: rule-0, " + dst + "}]", []string{"rules[1].name:", "rules[0]"}},
		{"bad name", "rules: [{name: 'a b', " + dst + "}]", []string{"rules[0].name:", `"a b"`}},
		{"bad glob", "rules: [{repositories: [ok, 'team-[a'], " + dst + "}]", []string{"rules[0].repositories[1]:", `"team-[a"`, "glob"}},
		{"empty exclude", "rules: [{tags: ['!'], " + dst + "}]", []string{"rules[0].tags[0]:", "empty"}},
		{"never matching literal", "rules: [{repositories: [Team-A/app], " + dst + "}]", []string{"rules[0].repositories[0]:", "can never match"}},
		{"never matching tag", "rules: [{tags: ['.hidden'], " + dst + "}]", []string{"rules[0].tags[0]:", "can never match"}},
		// A glob's literal characters must be ones a name can hold.
		{"never matching glob", "rules: [{repositories: ['Team-A/*'], " + dst + "}]", []string{`rules[0].repositories[0]: "Team-A/*" can never match: 'T' cannot appear in an ECR repository name`}},
		{"glob with a space", "rules: [{repositories: ['team a/*'], " + dst + "}]", []string{`rules[0].repositories[0]: "team a/*" can never match: ' ' cannot appear`}},
		{"escaped wildcard", "rules: [{repositories: ['team-a/\\*'], " + dst + "}]", []string{"rules[0].repositories[0]:", `'*' cannot appear`}},
		{"tag glob with a space", "rules: [{tags: ['v 1*'], " + dst + "}]", []string{`rules[0].tags[0]: "v 1*" can never match: ' ' cannot appear in an image tag`}},
		{"excluded glob", "rules: [{repositories: ['**', '!Team-B/*'], " + dst + "}]", []string{"rules[0].repositories[1]:", "can never match"}},
		{"account", "rules: [{destinations: [{accountId: x}, {accountId: '2222', region: eu-west-1}]}]", []string{`rules[0].destinations[0].accountId: "x" is not a 12-digit AWS account ID`}},
		{"account 2", "rules: [{destinations: [{accountId: '222222222222', region: eu-west-1}, {accountId: '2222', region: eu-west-1}]}]", []string{`rules[0].destinations[1].accountId: "2222" is not a 12-digit AWS account ID`}},
		{"missing account", "rules: [{destinations: [{region: eu-west-1}]}]", []string{"rules[0].destinations[0].accountId: required"}},
		{"missing region", "rules: [{destinations: [{accountId: '222222222222'}]}]", []string{"rules[0].destinations[0].region: required"}},
		{"region", "rules: [{destinations: [{accountId: '222222222222', region: EU}]}]", []string{"rules[0].destinations[0].region:", `"EU"`}},
		{"role", "rules: [{destinations: [{accountId: '222222222222', region: eu-west-1, roleArn: 'arn:aws:iam::222222222222:user/x'}]}]", []string{"rules[0].destinations[0].roleArn:"}},
		{"role account", "rules: [{destinations: [{accountId: '222222222222', region: eu-west-1, roleArn: 'arn:aws:iam::333333333333:role/x'}]}]", []string{"rules[0].destinations[0].roleArn:", "333333333333", "accountId is 222222222222"}},
		{"external id without role", "rules: [{destinations: [{accountId: '222222222222', region: eu-west-1, externalId: abc}]}]", []string{"rules[0].destinations[0].externalId:", "without roleArn"}},
		{"external id", "rules: [{destinations: [{accountId: '222222222222', region: eu-west-1, roleArn: 'arn:aws:iam::222222222222:role/x', externalId: 'a b'}]}]", []string{"rules[0].destinations[0].externalId: (value not shown)", "character 2 is a space"}},
		{"prefix", "rules: [{destinations: [{accountId: '222222222222', region: eu-west-1, repositoryPrefix: '../'}]}]", []string{"rules[0].destinations[0].repositoryPrefix:", "'..'"}},
		{"kms region", "rules: [{destinations: [{accountId: '222222222222', region: eu-west-1, kmsKey: 'arn:aws:kms:us-east-1:222222222222:key/abc'}]}]", []string{"rules[0].destinations[0].kmsKey:", "us-east-1"}},
		{"kms arn", "rules: [{destinations: [{accountId: '222222222222', region: eu-west-1, kmsKey: 'arn:aws:s3:::bucket'}]}]", []string{"rules[0].destinations[0].kmsKey:", "not a KMS key ARN"}},
		{"kms chars", "rules: [{destinations: [{accountId: '222222222222', region: eu-west-1, kmsKey: 'a b'}]}]", []string{"rules[0].destinations[0].kmsKey:"}},
		// Grants are scoped to key ARNs (infra/destination-role.yaml): an alias or key ID cannot match them.
		{"kms alias", "rules: [{destinations: [{accountId: '222222222222', region: eu-west-1, kmsKey: alias/x}]}]", []string{"rules[0].destinations[0].kmsKey:", "not a KMS key ARN", "KmsKeyArns"}},
		{"kms alias arn", "rules: [{destinations: [{accountId: '222222222222', region: eu-west-1, kmsKey: 'arn:aws:kms:eu-west-1:222222222222:alias/x'}]}]", []string{"rules[0].destinations[0].kmsKey:", "not a KMS key ARN"}},
		{"kms key id", "rules: [{destinations: [{accountId: '222222222222', region: eu-west-1, kmsKey: 1234abcd-12ab-34cd-56ef-1234567890ab}]}]", []string{"rules[0].destinations[0].kmsKey:", "not a KMS key ARN"}},
		{"kms without create", "rules: [{destinations: [{accountId: '222222222222', region: eu-west-1, kmsKey: 'arn:aws:kms:eu-west-1:222222222222:key/abc', createRepository: false}]}]", []string{"rules[0].destinations[0].kmsKey:", "createRepository"}},
		{"lifecycle without create", "rules: [{destinations: [{accountId: '222222222222', region: eu-west-1, mirrorLifecyclePolicy: true, createRepository: false}]}]", []string{"rules[0].destinations[0].mirrorLifecyclePolicy:"}},
		{"tags without create", "rules: [{destinations: [{accountId: '222222222222', region: eu-west-1, mirrorRepositoryTags: true, createRepository: false}]}]", []string{"rules[0].destinations[0].mirrorRepositoryTags:"}},
		{"deleteImmutableTags without mirrorDeletes", "rules: [{deleteImmutableTags: true, " + dst + "}]", []string{"rules[0].deleteImmutableTags:", "mirrorDeletes: true"}},
		{"dup destination", "rules: [{destinations: [{accountId: '222222222222', region: eu-west-1}, {accountId: '222222222222', region: eu-west-1}]}]", []string{"rules[0].destinations[1]:", "destinations[0]"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.doc))
			if err == nil {
				t.Fatal("Parse succeeded, want error")
			}
			if strings.Contains(err.Error(), "rawRule") || strings.Contains(err.Error(), "rawDestination") {
				t.Errorf("error leaks Go type names: %v", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestGlobs(t *testing.T) {
	cases := []struct {
		patterns []string
		name     string
		want     bool
	}{
		{[]string{"team/*"}, "team/app", true},
		{[]string{"team/*"}, "team/sub/app", false},
		{[]string{"team/*"}, "team", false},
		{[]string{"team/**"}, "team/app", true},
		{[]string{"team/**"}, "team/sub/app", true},
		{[]string{"team/**"}, "teamx/app", false},
		{[]string{"team/**"}, "team", true}, // doublestar semantics; documented
		{[]string{"team/a?p"}, "team/app", true},
		{[]string{"team/a?p"}, "team/a/p", false},
		{[]string{"*"}, "app", true},
		{[]string{"*"}, "team/app", false},
		{[]string{"**"}, "team/app", true},
		{[]string{"**/app"}, "x/y/app", true},
		{[]string{"team/{app,web}"}, "team/web", true},
		{[]string{"team/app"}, "team/app", true},
		{[]string{"team/app"}, "team/app2", false},
		{[]string{"team/*", "!team/scratch-*"}, "team/scratch-1", false}, // excludes win
		{[]string{"team/*", "!team/scratch-*"}, "team/app", true},
		{[]string{"!team/scratch-*", "team/**"}, "team/scratch-1", false}, // order does not matter
		{[]string{"!team/**"}, "other/app", true},                         // only excludes = all minus excludes
		{[]string{"!team/**"}, "team/app", false},
		{nil, "anything", true},
	}
	for _, c := range cases {
		s, err := compileGlobs("p", c.patterns, repositoryPatterns)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.match(c.name); got != c.want {
			t.Errorf("%q match %q = %v, want %v", c.patterns, c.name, got, c.want)
		}
	}
}

func dest(acct, prefix string) string {
	return fmt.Sprintf(`{accountId: %q, region: eu-west-1, repositoryPrefix: %q}`, acct, prefix)
}

func TestTargets(t *testing.T) {
	d := mustParse(t, `
rules:
  - name: releases
    repositories: ["team-a/**"]
    tags: ["v*"]
    untagged: false
    mirrorDeletes: true
    deleteImmutableTags: true
    destinations: [`+dest("222222222222", "mirror/")+`, `+dest("333333333333", "")+`]
  - name: all
    referrers: false
    destinations: [`+dest("222222222222", "mirror/")+`, `+dest("444444444444", "")+`]
`)
	keys := func(ts []Target) string {
		var s []string
		for _, t := range ts {
			s = append(s, t.Rule+":"+t.Repo().String())
		}
		return strings.Join(s, " ")
	}
	cases := []struct{ repo, tag, want string }{
		// Same destination from two rules: once, first rule wins.
		{"team-a/app", "v1", "releases:222222222222/eu-west-1/mirror/team-a/app releases:333333333333/eu-west-1/team-a/app all:444444444444/eu-west-1/team-a/app"},
		{"team-a/app", "latest", "all:222222222222/eu-west-1/mirror/team-a/app all:444444444444/eu-west-1/team-a/app"},
		// Digest-only: only rules with untagged=true.
		{"team-a/app", "", "all:222222222222/eu-west-1/mirror/team-a/app all:444444444444/eu-west-1/team-a/app"},
		// Cosign tags follow referrers, not the tag globs.
		{"team-a/app", "sha256-" + hex64 + ".sig", "releases:222222222222/eu-west-1/mirror/team-a/app releases:333333333333/eu-west-1/team-a/app"},
		{"other", "v1", "all:222222222222/eu-west-1/mirror/other all:444444444444/eu-west-1/other"},
	}
	for _, c := range cases {
		got := d.Targets(c.repo, c.tag)
		if keys(got) != c.want {
			t.Errorf("Targets(%q, %q)\n got %s\nwant %s", c.repo, c.tag, keys(got), c.want)
		}
		for _, tg := range got {
			if tg.Err != nil {
				t.Errorf("unexpected Err: %v", tg.Err)
			}
		}
	}
	ts := d.Targets("team-a/app", "v1")
	if !ts[0].MirrorDeletes || !ts[0].DeleteImmutableTags || ts[len(ts)-1].DeleteImmutableTags || ts[0].Untagged || !ts[0].Referrers || ts[0].Repository != "mirror/team-a/app" || (ts[0].Repo() != ecrname.Repo{Registry: ts[0].Destination.Registry(), Name: ts[0].Destination.RepositoryFor("team-a/app")}) {
		t.Errorf("target fields: %+v", ts[0])
	}
}

func TestTargetsInvalidDestinationName(t *testing.T) {
	d := mustParse(t, `rules: [{destinations: [`+dest("222222222222", "mirror/")+`, `+dest("333333333333", "")+`]}]`)
	long := strings.Repeat("a", 250)
	ok, bad := Split(d.Targets(long, "v1"))
	if len(ok) != 1 || len(bad) != 1 || ok[0].Destination.AccountID != "333333333333" {
		t.Fatalf("ok=%+v bad=%+v", ok, bad)
	}
	if !strings.Contains(bad[0].Err.Error(), "rules[0].destinations[0]") {
		t.Errorf("Err = %v", bad[0].Err)
	}
}

func TestNarrow(t *testing.T) {
	d := mustParse(t, `rules: [{repositories: ["team-a/**", "team-b/*"], tags: ["v*", "latest"], destinations: [`+dest("222222222222", "")+`]}]`)
	n, err := d.Narrow([]string{"team-a/*"}, []string{"v*"})
	if err != nil {
		t.Fatal(err)
	}
	r := &n.Rules[0]
	checks := []struct {
		got, want bool
		what      string
	}{
		{r.MatchesRepository("team-a/app"), true, "team-a/app"},
		{r.MatchesRepository("team-a/sub/app"), false, "narrowed away"},
		{r.MatchesRepository("team-b/app"), false, "narrowed away"},
		{n.RepositoryInScope("team-c/app"), false, "never widened"},
		{r.MatchesTag("v1"), true, "v1"},
		{r.MatchesTag("latest"), false, "latest narrowed"},
		{r.MatchesTag(""), false, "untagged with include tag narrowing"},
		{r.MatchesTag("sha256-" + hex64 + ".sig"), false, "cosign tag narrowed too"},
		// The original is untouched.
		{d.Rules[0].MatchesRepository("team-b/app"), true, "original team-b"},
		{d.Rules[0].MatchesTag("latest"), true, "original latest"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v want %v", c.what, c.got, c.want)
		}
	}
	// Widening attempt: "**" narrows nothing, widens nothing.
	w, _ := d.Narrow([]string{"**"}, nil)
	if w.RepositoryInScope("team-c/app") || !w.Rules[0].MatchesTag("") {
		t.Error("Narrow widened or dropped untagged without tag patterns")
	}
	// Only excludes keep untagged images.
	x, _ := d.Narrow(nil, []string{"!latest"})
	if !x.Rules[0].MatchesTag("") || x.Rules[0].MatchesTag("latest") || !x.Rules[0].MatchesTag("v2") {
		t.Error("exclude-only tag narrowing")
	}
	// Narrowing twice intersects.
	n2, _ := n.Narrow([]string{"!team-a/app"}, nil)
	if n2.RepositoryInScope("team-a/app") || !n.RepositoryInScope("team-a/app") || !n2.RepositoryInScope("team-a/web") {
		t.Error("second narrowing")
	}
	if _, err := d.Narrow([]string{"ok", "[bad"}, nil); err == nil || !strings.Contains(err.Error(), "repositories[1]") {
		t.Errorf("bad narrow pattern: %v", err)
	}
	if _, err := d.Narrow(nil, []string{"!"}); err == nil || !strings.Contains(err.Error(), "tags[0]") {
		t.Errorf("bad narrow tag: %v", err)
	}
}

func TestHandBuiltDocument(t *testing.T) {
	d := &Document{Rules: []Rule{{Repositories: []string{"team-a/*"}, Untagged: true, Destinations: []Destination{{AccountID: "222222222222", Region: "eu-west-1"}}}}}
	// Unvalidated: still correct (compiled on the fly), never "match all".
	if d.RepositoryInScope("team-b/app") || !d.RepositoryInScope("team-a/app") {
		t.Error("unvalidated document matched wrongly")
	}
	if err := d.Validate(); err != nil || d.Rules[0].Name != "rule-0" {
		t.Fatalf("Validate: %v %+v", err, d.Rules[0])
	}
	if len(d.Targets("team-a/app", "")) != 1 {
		t.Error("Targets after Validate")
	}
}

func TestLoad(t *testing.T) {
	doc := `rules: [{destinations: [` + dest("222222222222", "") + `]}]`
	files := map[string]string{"/etc/rules.yaml": doc, "/etc/bad.yaml": "rules: []", "/etc/big.yaml": strings.Repeat("#", MaxDocumentSize+1)}
	readFile := func(p string) ([]byte, error) {
		s, ok := files[p]
		if !ok {
			return nil, &fs.PathError{Op: "open", Path: p, Err: fs.ErrNotExist}
		}
		return []byte(s), nil
	}
	cases := []struct {
		env  map[string]string
		want string // "" = success
	}{
		{map[string]string{EnvRules: doc}, ""},
		{map[string]string{EnvRulesFile: "/etc/rules.yaml"}, ""},
		{map[string]string{}, "set REPLICATION_RULES"},
		{map[string]string{EnvRules: doc, EnvRulesFile: "/etc/rules.yaml"}, "both"},
		{map[string]string{EnvRulesFile: "/nope"}, "REPLICATION_RULES_FILE: reading"},
		{map[string]string{EnvRulesFile: "/etc/bad.yaml"}, `REPLICATION_RULES_FILE "/etc/bad.yaml": rules: at least one rule`},
		{map[string]string{EnvRulesFile: "/etc/big.yaml"}, "256 KiB"},
		{map[string]string{EnvRules: "rules: [{bogus: 1}]"}, `REPLICATION_RULES: rules document: line 1: unknown field "bogus"`},
	}
	for i, c := range cases {
		d, err := Load(func(k string) string { return c.env[k] }, readFile)
		switch {
		case c.want == "" && (err != nil || d == nil):
			t.Errorf("case %d: %v", i, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("case %d: err = %v, want %q", i, err, c.want)
		}
	}
	if _, err := Load(func(k string) string { return map[string]string{EnvRulesFile: "/nope"}[k] }, readFile); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("read error not wrapped: %v", err)
	}
}

// roundTrip marshals a validated document and parses it again.
func roundTrip(t testing.TB, d *Document) {
	out, err := yaml.Marshal(d)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	d2, err := Parse(out)
	if err != nil {
		t.Fatalf("re-Parse of\n%s\nfailed: %v", out, err)
	}
	if !reflect.DeepEqual(d, d2) {
		t.Fatalf("round trip changed the document:\n%+v\n%+v", d, d2)
	}
}

func TestRoundTrip(t *testing.T) { roundTrip(t, mustParse(t, example)) }

func FuzzParse(f *testing.F) {
	f.Add([]byte(example))
	f.Add([]byte(`{"rules":[{"destinations":[{"accountId":"222222222222","region":"eu-west-1"}]}]}`))
	f.Add([]byte("rules: [{repositories: ['!a/**'], tags: ['{a,b}*'], destinations: [{accountId: '222222222222', region: eu-west-1}]}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Parse(data)
		if err != nil {
			return
		}
		if err := d.Validate(); err != nil {
			t.Fatalf("parsed document does not re-validate: %v", err)
		}
		roundTrip(t, d)
		_ = d.Targets("team-a/app", "v1")
		_ = d.Targets("team-a/app", "")
	})
}

// FuzzGlobFastPath checks the compiled fast paths against doublestar.
func FuzzGlobFastPath(f *testing.F) {
	for _, s := range [][2]string{{"team/*", "team/app"}, {"*", "a/b"}, {"v*", "v1"}, {"**", "a/b"}, {"a**", "ab/c"}, {"a/**", "a"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, name string) {
		// Invalid UTF-8 is out of scope: doublestar decodes it to
		// U+FFFD, and names are validated ASCII before matching anyway.
		if !validPattern(pattern) || !utf8.ValidString(pattern) || !utf8.ValidString(name) {
			return
		}
		g := compileGlob(pattern)
		want := (&glob{pattern: pattern, kind: globDoublestar}).match(name)
		if got := g.match(name); got != want {
			t.Fatalf("pattern %q (kind %d) on %q: fast path %v, doublestar %v", pattern, g.kind, name, got, want)
		}
	})
}

func validPattern(p string) bool {
	_, err := compileGlobs("p", []string{p}, repositoryPatterns)
	return err == nil && !strings.HasPrefix(p, "!")
}

// TestWithRepositoryPrefix: the stack's RepositoryPrefixFilter bounds every rule, literally
// (no glob), and survives a Narrow; the original document is untouched.
func TestWithRepositoryPrefix(t *testing.T) {
	d := mustParse(t, `rules: [{repositories: ["**"], destinations: [`+dest("222222222222", "")+`]}]`)
	p := d.WithRepositoryPrefix("team-a/")
	n, err := p.Narrow([]string{"**/app"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		doc  *Document
		repo string
		want bool
	}{
		{p, "team-a/app", true},
		{p, "team-a/sub/app", true},
		{p, "team-a", false}, // "team-a/**" as a glob would match it
		{p, "team-ab/x", false},
		{p, "other/app", false},
		{n, "team-a/sub/app", true},
		{n, "other/app", false},
		{n, "team-a/web", false},
		{d, "other/app", true},
		{d.WithRepositoryPrefix(""), "other/app", true},
	} {
		if got := c.doc.RepositoryInScope(c.repo); got != c.want {
			t.Errorf("%s: in scope %v, want %v", c.repo, got, c.want)
		}
		if got := len(c.doc.Targets(c.repo, "v1")) > 0; got != c.want {
			t.Errorf("%s: targets %v, want %v", c.repo, got, c.want)
		}
	}
}

// TestGlobLiteralsThatCanMatch: the literal-character check judges only characters a name
// would have to hold: classes, braces, wildcards and escapes of allowed characters pass.
func TestGlobLiteralsThatCanMatch(t *testing.T) {
	d := mustParse(t, `rules: [{repositories: ['team-{a,b}/**', 'team-[A-Z0-9]/*', 'a?c/*', '**/app', 'x\-y/*'], tags: ['v[0-9]*', '{Latest,v*}', '*-RC?'], destinations: [{accountId: '222222222222', region: eu-west-1}]}]`)
	for _, tc := range []struct {
		repo, tag string
		want      bool
	}{
		{"team-a/app", "v1", true}, {"team-b/x/y", "Latest", true}, {"team-1/app", "2-RC1", true},
		{"x-y/app", "v2", true}, {"team-c/web", "v1", false}, {"team-a/app", "latest", false},
	} {
		if got := len(d.Targets(tc.repo, tc.tag)) > 0; got != tc.want {
			t.Errorf("%s:%s matched = %t, want %t", tc.repo, tc.tag, got, tc.want)
		}
	}
}

// TestUsable: a function built from a document that failed to read, or from none, fails
// every invocation with one configuration error that keeps the document's own.
func TestUsable(t *testing.T) {
	doc, err := Parse([]byte("rules:\n- repositories: [\"team-a/*\"]\n  destinations: [{accountId: \"222222222222\", region: us-east-1}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	parseErr := errors.New("rules: at least one rule")
	for _, c := range []struct {
		name string
		doc  *Document
		err  error
		want string
	}{
		{"usable", doc, nil, ""},
		{"invalid", nil, parseErr, "configuration error: invalid rules document: rules: at least one rule"},
		{"none", nil, nil, "configuration error: no rules document"},
	} {
		got := Usable(c.doc, c.err)
		if (got == nil) != (c.want == "") || (got != nil && got.Error() != c.want) {
			t.Errorf("%s: Usable = %v, want %q", c.name, got, c.want)
		}
		if c.err != nil && !errors.Is(got, c.err) {
			t.Errorf("%s: %v does not wrap the document's error", c.name, got)
		}
	}
}
