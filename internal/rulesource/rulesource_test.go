package rulesource_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/ecr-replicator/ecr-replicator/internal/rules"
	"github.com/ecr-replicator/ecr-replicator/internal/rulesource"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
)

const param = "/ecr-replicator/rules"

func doc(name, role string) string {
	return fmt.Sprintf(`{"rules":[{"name":%q,"destinations":[{"accountId":"222222222222","region":"us-east-1","roleArn":%q}]}]}`, name, role)
}

const destRole = "arn:aws:iam::222222222222:role/ecr-replicator-destination"

// central is a document of a central account's replicator: its source read through a role
// of account 444444444444.
const central = `{"source":{"roleArn":"arn:aws:iam::444444444444:role/reader"},"rules":[{"destinations":[{"accountId":"222222222222","region":"us-east-1"}]}]}`

// scoped is a one-rule document (named r) with extra members of the rule.
func scoped(members string) string {
	return `{"rules":[{"name":"r",` + members + `,"destinations":[{"accountId":"222222222222","region":"us-east-1"}]}]}`
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestEnvironmentDocument(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name string
		env  map[string]string
		want string // error substring; "" = a document
	}{
		{"inline", map[string]string{rules.EnvRules: doc("a", destRole)}, ""},
		{"nothing", map[string]string{}, "set REPLICATION_RULES_PARAMETER (a Systems Manager parameter holding the document), REPLICATION_RULES"},
		{"invalid", map[string]string{rules.EnvRules: `{"rules":[]}`}, "at least one rule"},
		{"covered by a pattern", map[string]string{rules.EnvRules: doc("a", destRole), rulesource.EnvAssumableRoles: "arn:aws:iam::*:role/ecr-replicator-destination"}, ""},
		{"not covered", map[string]string{rules.EnvRules: doc("a", "arn:aws:iam::222222222222:role/admin"), rulesource.EnvAssumableRoles: "arn:aws:iam::*:role/ecr-replicator-destination,arn:aws:iam::333333333333:role/x"},
			`rules[0].destinations[0].roleArn: "arn:aws:iam::222222222222:role/admin" is not a role this function may assume (DESTINATION_ROLE_ARNS: arn:aws:iam::*:role/ecr-replicator-destination,arn:aws:iam::333333333333:role/x`},
		{"source role not covered", map[string]string{rules.EnvRules: `{"source":{"roleArn":"arn:aws:iam::111111111111:role/reader"},"rules":[{"destinations":[{"accountId":"222222222222","region":"us-east-1"}]}]}`, rulesource.EnvAssumableRoles: destRole}, "source.roleArn"},
		{"? is one character", map[string]string{rules.EnvRules: doc("a", destRole), rulesource.EnvAssumableRoles: "arn:aws:iam::22222222222?:role/ecr-replicator-destinatio?"}, ""},
		// IAM role names may hold commas (API_CreateRole); only ",arn:" starts another ARN.
		{"a role name with a comma", map[string]string{rules.EnvRules: doc("a", "arn:aws:iam::222222222222:role/ecr,replicator"), rulesource.EnvAssumableRoles: "arn:aws:iam::222222222222:role/ecr,replicator"}, ""},
		{"a comma-named role in a list", map[string]string{rules.EnvRules: doc("a", "arn:aws:iam::222222222222:role/ecr,replicator"), rulesource.EnvAssumableRoles: "arn:aws:iam::*:role/x,arn:aws:iam::222222222222:role/ecr,replicator"}, ""},
		{"a comma does not widen the grant", map[string]string{rules.EnvRules: doc("a", "arn:aws:iam::222222222222:role/ecr"), rulesource.EnvAssumableRoles: "arn:aws:iam::222222222222:role/ecr,replicator"}, "is not a role this function may assume"},
		// The stack's event rule: no DELETE events, only repositories under a prefix.
		{"mirrorDeletes without DELETE events", map[string]string{rules.EnvRules: scoped(`"mirrorDeletes":true`), rulesource.EnvMirrorDeletes: "false"},
			"rules[0] (r).mirrorDeletes: the stack's event rule forwards no DELETE events (MIRROR_DELETES=false"},
		{"mirrorDeletes with DELETE events", map[string]string{rules.EnvRules: scoped(`"mirrorDeletes":true`), rulesource.EnvMirrorDeletes: "true"}, ""},
		// Promotion gates: a rule with `require` needs the stack's scan events and re-checks.
		{"a gate without PromotionGates", map[string]string{rules.EnvRules: scoped(`"require":{"scan":{"severity":"HIGH"}}`), rulesource.EnvPromotionGates: "false"},
			"a rule has `require` (a promotion gate), but the stack was deployed without promotion gates (PROMOTION_GATES=false"},
		{"a gate with PromotionGates", map[string]string{rules.EnvRules: scoped(`"require":{"scan":{"severity":"HIGH"}}`), rulesource.EnvPromotionGates: "true"}, ""},
		{"no gate without PromotionGates", map[string]string{rules.EnvRules: scoped(`"mirrorDeletes":false`), rulesource.EnvPromotionGates: "false"}, ""},
		{"outside the prefix", map[string]string{rules.EnvRules: scoped(`"repositories":["team-b/**","other"]`), rulesource.EnvRepositoryPrefixFilter: "team-a/"},
			"rules[0] (r).repositories: team-b/**, other lie outside REPOSITORY_PREFIX_FILTER=team-a/"},
		{"the prefix's own name", map[string]string{rules.EnvRules: scoped(`"repositories":["team-a"]`), rulesource.EnvRepositoryPrefixFilter: "team-a/"}, "lie outside"},
		{"one pattern under the prefix", map[string]string{rules.EnvRules: scoped(`"repositories":["team-b/**","team-a/app"]`), rulesource.EnvRepositoryPrefixFilter: "team-a/"}, ""},
		{"a glob reaching under the prefix", map[string]string{rules.EnvRules: scoped(`"repositories":["team-*/**"]`), rulesource.EnvRepositoryPrefixFilter: "team-a/"}, ""},
		{"only excludes", map[string]string{rules.EnvRules: scoped(`"repositories":["!team-b/**"]`), rulesource.EnvRepositoryPrefixFilter: "team-a/"}, ""},
		{"every repository", map[string]string{rules.EnvRules: scoped(`"repositories":["**"]`), rulesource.EnvRepositoryPrefixFilter: "team-a/"}, ""},
		// The accounts the stack's event rule forwards: source.roleArn's must be among them.
		{"source forwarded", map[string]string{rules.EnvRules: central, rulesource.EnvSourceAccounts: "111111111111,444444444444"}, ""},
		{"source not forwarded", map[string]string{rules.EnvRules: central, rulesource.EnvSourceAccounts: "111111111111"},
			`source.roleArn: "arn:aws:iam::444444444444:role/reader" is in account 444444444444, whose ECR events the stack's event rule does not forward (SOURCE_ACCOUNT_IDS=111111111111`},
		{"no source role", map[string]string{rules.EnvRules: doc("a", destRole), rulesource.EnvSourceAccounts: "111111111111"}, ""},
		{"parameter and document", map[string]string{rules.EnvRules: doc("a", destRole), rulesource.EnvParameter: param}, "set exactly one"},
		{"bad interval", map[string]string{rulesource.EnvParameter: param, rulesource.EnvCheckSeconds: "soon"}, "REPLICATION_RULES_CHECK_SECONDS"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := rulesource.New(env(tc.env), os.ReadFile, rulesource.WithParameterReader(ssm.New(ssm.Options{})))
			for range 2 { // decided once: the same answer again
				d, err := src.Current(ctx)
				switch {
				case tc.want == "" && (err != nil || d == nil):
					t.Fatalf("want a document, got %v", err)
				case tc.want != "" && (err == nil || d != nil || !strings.Contains(err.Error(), tc.want)):
					t.Fatalf("got %v, %v; want an error containing %q", d, err, tc.want)
				}
			}
		})
	}
}

type world struct {
	sb    *sandbox.Sandbox
	ssm   *ssm.Client
	clock *clock
	logs  *sandboxtest.LogBuffer
}

func start(t *testing.T) *world {
	t.Helper()
	sb, err := sandbox.New(sandbox.TwoAccounts(""))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	key, secret, err := sb.Credentials(sandbox.SourceAccount, sandbox.SourceUser)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.LoadDefaultConfig(t.Context(), config.WithRegion(sandbox.DefaultRegion), config.WithBaseEndpoint(sb.APIURL()),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(key, secret, "")),
		config.WithRetryMaxAttempts(1)) // an injected fault is the answer, not retried away
	if err != nil {
		t.Fatal(err)
	}
	return &world{sb: sb, ssm: ssm.NewFromConfig(cfg), clock: &clock{t: time.Unix(1_800_000_000, 0)}, logs: &sandboxtest.LogBuffer{}}
}

func (w *world) put(t *testing.T, value string) {
	t.Helper()
	if _, err := w.sb.PutParameter(sandbox.SourceAccount, sandbox.DefaultRegion, param, value, "Intelligent-Tiering", true); err != nil {
		t.Fatal(err)
	}
}

func (w *world) source(extra map[string]string) *rulesource.Loader {
	e := map[string]string{rulesource.EnvParameter: param}
	for k, v := range extra {
		e[k] = v
	}
	return rulesource.New(env(e), os.ReadFile, rulesource.WithParameterReader(w.ssm), rulesource.WithClock(w.clock.now),
		rulesource.WithLogger(slog.New(slog.NewJSONHandler(w.logs, nil))))
}

// reads counts the GetParameter calls the sandbox answered.
func (w *world) reads() int {
	n := 0
	for _, e := range w.sb.AccessLog() {
		if e.Action == "ssm:GetParameter" {
			n++
		}
	}
	return n
}

// TestParameterVersions: read at the first call, not again within the check interval,
// a new version picked up after it, an invalid version refused (not the previous one
// kept), and a fixed one used again.
func TestParameterVersions(t *testing.T) {
	w := start(t)
	ctx := t.Context()
	w.put(t, doc("v1", destRole))
	src := w.source(map[string]string{rulesource.EnvCheckSeconds: "30"})
	name := func() string {
		t.Helper()
		d, err := src.Current(ctx)
		if err != nil {
			return "error: " + err.Error()
		}
		return d.Rules[0].Name
	}
	if got := name(); got != "v1" {
		t.Fatalf("cold start: %s", got)
	}
	w.put(t, doc("v2", destRole))
	w.clock.add(29 * time.Second)
	if got := name(); got != "v1" || w.reads() != 1 {
		t.Fatalf("within the interval: %s after %d reads, want v1 after 1", got, w.reads())
	}
	w.clock.add(time.Second)
	if got := name(); got != "v2" || w.reads() != 2 {
		t.Fatalf("after the interval: %s after %d reads, want v2 after 2", got, w.reads())
	}
	w.clock.add(30 * time.Second)
	if got := name(); got != "v2" || w.reads() != 3 {
		t.Fatalf("unchanged parameter: %s after %d reads", got, w.reads())
	}
	w.put(t, `{"rules":[{"name":"v3","destinations":[{"accountId":"2222"}]}]}`)
	w.clock.add(30 * time.Second)
	if got := name(); !strings.Contains(got, "error: rules parameter /ecr-replicator/rules version 3: rules[0].destinations[0].accountId") {
		t.Fatalf("invalid version: %s", got)
	}
	w.clock.add(10 * time.Second)
	if got := name(); !strings.HasPrefix(got, "error: ") || w.reads() != 4 {
		t.Fatalf("the invalid version stands until the next check: %s after %d reads", got, w.reads())
	}
	w.put(t, doc("v4", destRole))
	w.clock.add(30 * time.Second)
	if got := name(); got != "v4" {
		t.Fatalf("fixed: %s", got)
	}
	if !strings.Contains(w.logs.String(), `"msg":"invalid rules document","source":"parameter /ecr-replicator/rules","version":3`) {
		t.Errorf("the invalid version was not logged:\n%s", w.logs)
	}
}

// TestParameterOutage: Parameter Store failing at cold start is an error on every call
// (never a function without rules), Unavailable (retried, not a configuration error),
// read again after a wait that doubles from a second; failing once a version was read
// keeps that version, with a warning, until a read succeeds.
func TestParameterOutage(t *testing.T) {
	w := start(t)
	ctx := t.Context()
	w.put(t, doc("v1", destRole))
	src := w.source(nil)
	for i, code := range []string{"InternalServerError", "ThrottlingException"} {
		if err := w.sb.InjectAPIFault(sandbox.APIFault{Service: "ssm", Operation: "GetParameter", Code: code}); err != nil {
			t.Fatal(err)
		}
		d, err := src.Current(ctx)
		if d != nil || err == nil || !strings.Contains(err.Error(), "reading the rules parameter /ecr-replicator/rules") || !strings.Contains(err.Error(), code) || !rulesource.Unavailable(err) {
			t.Fatalf("cold start during an outage (%s): %v, %v (Unavailable: %t)", code, d, err, rulesource.Unavailable(err))
		}
		// Within the wait (1 s, then 2 s) the failure stands without another read.
		reads, wait := w.reads(), time.Second<<i
		w.clock.add(wait - time.Millisecond)
		if _, again := src.Current(ctx); again == nil || w.reads() != reads {
			t.Fatalf("within the %s wait after %s: %v after %d reads, want the same failure after %d", wait, code, again, w.reads(), reads)
		}
		w.clock.add(time.Millisecond)
	}
	if d, err := src.Current(ctx); err != nil || d.Rules[0].Name != "v1" {
		t.Fatalf("after the outage and the wait, without waiting for the interval: %v, %v", d, err)
	}
	w.put(t, doc("v2", destRole))
	if err := w.sb.InjectAPIFault(sandbox.APIFault{Service: "ssm", Operation: "GetParameter", Code: "InternalServerError"}); err != nil {
		t.Fatal(err)
	}
	w.clock.add(rulesource.DefaultCheckInterval)
	if d, err := src.Current(ctx); err != nil || d.Rules[0].Name != "v1" {
		t.Fatalf("a failed check keeps the version read: %v, %v", d, err)
	}
	if !strings.Contains(w.logs.String(), `"msg":"rules parameter not read; keeping what was read before"`) {
		t.Errorf("no warning:\n%s", w.logs)
	}
	w.clock.add(rulesource.DefaultCheckInterval)
	if d, err := src.Current(ctx); err != nil || d.Rules[0].Name != "v2" {
		t.Fatalf("next check: %v, %v", d, err)
	}
	// Deleted and created again with another document: version 1 again, a new document.
	w.clock.add(rulesource.DefaultCheckInterval)
	if err := w.sb.DeleteParameter(sandbox.SourceAccount, sandbox.DefaultRegion, param); err != nil {
		t.Fatal(err)
	}
	w.put(t, doc("recreated", destRole))
	fresh := w.source(nil)
	if d, err := fresh.Current(ctx); err != nil || d.Rules[0].Name != "recreated" {
		t.Fatalf("a new environment: %v, %v", d, err)
	}
	if err := w.sb.DeleteParameter(sandbox.SourceAccount, sandbox.DefaultRegion, param); err != nil {
		t.Fatal(err)
	}
	w.put(t, doc("recreated-again", destRole))
	w.clock.add(rulesource.DefaultCheckInterval)
	if d, err := fresh.Current(ctx); err != nil || d.Rules[0].Name != "recreated-again" {
		t.Fatalf("the parameter deleted and created again (version 1 both times): %v, %v; want the new document", d, err)
	}

	// A parameter that does not exist (or that the function may not read) is as loud.
	gone := rulesource.New(env(map[string]string{rulesource.EnvParameter: "/nosuch"}), os.ReadFile, rulesource.WithParameterReader(w.ssm))
	if _, err := gone.Current(ctx); err == nil || !strings.Contains(err.Error(), "ParameterNotFound") || rulesource.Unavailable(err) {
		t.Errorf("missing parameter: %v (Unavailable: %t), want a configuration error", err, rulesource.Unavailable(err))
	}
}

// TestLargeDocument: 40 teams × 3 destinations, over Lambda's 4 KB of environment,
// served from an advanced parameter.
func TestLargeDocument(t *testing.T) {
	w := start(t)
	text := sandboxtest.TeamRules(40, sandbox.DestinationAccount, []string{"us-east-1", "us-west-2", "eu-west-1"}, destRole, "")
	if len(text) <= 4096 || len(text) > 8192 {
		t.Fatalf("document of %d bytes, want 4 KB < size <= 8 KB", len(text))
	}
	w.put(t, text)
	d, err := w.source(map[string]string{rulesource.EnvAssumableRoles: "arn:aws:iam::*:role/ecr-replicator-destination"}).Current(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range d.Rules {
		n += len(r.Destinations)
	}
	if len(d.Rules) != 40 || n != 120 {
		t.Fatalf("%d rules, %d destinations", len(d.Rules), n)
	}
	if got := d.Targets("team-17/app", "v1"); len(got) != 3 || got[2].Destination.Region != "eu-west-1" {
		t.Errorf("targets of team-17/app: %+v", got)
	}
}

// TestRepositoryPrefix: REPOSITORY_PREFIX_FILTER bounds the document, from the
// environment and from the parameter alike.
func TestRepositoryPrefix(t *testing.T) {
	w := start(t)
	w.put(t, doc("p", destRole))
	prefix := map[string]string{rulesource.EnvRepositoryPrefixFilter: "team-a/"}
	inline := map[string]string{rules.EnvRules: doc("e", destRole), rulesource.EnvRepositoryPrefixFilter: "team-a/"}
	for name, src := range map[string]*rulesource.Loader{
		"parameter":   w.source(prefix),
		"environment": rulesource.New(env(inline), os.ReadFile),
	} {
		d, err := src.Current(t.Context())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !d.RepositoryInScope("team-a/app") || d.RepositoryInScope("other/app") {
			t.Errorf("%s: team-a/app in scope %v, other/app %v: want only what starts with team-a/", name, d.RepositoryInScope("team-a/app"), d.RepositoryInScope("other/app"))
		}
	}
}
