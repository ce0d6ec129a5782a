package infra

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/cfn"
	"github.com/ecr-replicator/ecr-replicator/internal/wiring"
)

// TestDefaultDeployIsRefused: `sam deploy --guided` with Enter pressed at every prompt —
// every parameter at its default — is refused before anything is created, instead of a
// stack whose every invocation fails; so is a deployment that would ignore what it was
// told. What can work renders.
func TestDefaultDeployIsRefused(t *testing.T) {
	refused := []struct {
		name   string
		params map[string]any
		rule   string
	}{
		{"every parameter at its default", nil, "DestinationOrRulesParameter"},
		{"only a region", map[string]any{"DestinationRegion": "eu-west-1"}, "DestinationOrRulesParameter"},
		{"a rules parameter and a destination", map[string]any{"RulesParameterName": "/ecr-replicator/rules", "DestinationAccountId": "222222222222"}, "RulesParameterAlone"},
		{"a rules parameter and an external ID", map[string]any{"RulesParameterName": "/ecr-replicator/rules", "ExternalId": "x"}, "RulesParameterAlone"},
		// Without the list, sts:AssumeRole would cover the role name in any account.
		{"a rules parameter without its role grant", map[string]any{"RulesParameterName": "/ecr-replicator/rules"}, "RulesParameterRoleGrant"},
		{"a role grant without a rules parameter", map[string]any{"DestinationAccountId": "222222222222", "DestinationRoleArns": "arn:aws:iam::*:role/x"}, "RoleGrantOfTheRulesParameter"},
		{"this account and region, no prefix", map[string]any{"DestinationAccountId": testAccountID, "DestinationRepositoryPrefix": ""}, "NotOntoItself"},
		{"this account, this region named, no prefix", map[string]any{"DestinationAccountId": testAccountID, "DestinationRegion": testRegion, "DestinationRepositoryPrefix": ""}, "NotOntoItself"},
		{"a rules parameter and a prefix", map[string]any{"RulesParameterName": "/ecr-replicator/rules", "DestinationRepositoryPrefix": "other/"}, "RulesParameterAlone"},
	}
	for _, tc := range refused {
		_, err := cfn.RenderFile(sourceTemplate, cfn.Options{Parameters: tc.params, Region: testRegion, AccountID: testAccountID, StackName: testStackName})
		var re *cfn.RuleError
		if !errors.As(err, &re) || re.Rule != tc.rule || re.Description == "" {
			t.Errorf("%s: %v, want rule %s to refuse the stack", tc.name, err, tc.rule)
			continue
		}
		if tc.params == nil {
			t.Logf("defaults refused: %v", err)
			if !strings.Contains(re.Description, "DestinationAccountId") || !strings.Contains(re.Description, "RulesParameterName") {
				t.Errorf("the refusal does not say what to set: %s", re.Description)
			}
		}
	}
	for _, ok := range []map[string]any{
		{"DestinationAccountId": "222222222222"},
		{"RulesParameterName": "/ecr-replicator/rules", "DestinationRoleArns": "arn:aws:iam::*:role/mirror-writer", "MirrorDeletes": "true"},
		{"DestinationAccountId": testAccountID}, // the default prefix, mirror/
		{"RulesParameterName": "/ecr-replicator/rules", "DestinationRoleArns": "arn:aws:iam::*:role/mirror-writer", "DestinationRepositoryPrefix": ""}, // what stacks from before the default keep
		{"DestinationAccountId": testAccountID, "DestinationRegion": "eu-west-1"},
	} {
		render(t, sourceTemplate, ok)
	}
}

// TestWhatOutlivesTheStack: the dead-letter queue (failed work) and the log groups are
// kept when the stack is deleted or they are replaced; the work queues, holding this
// stack's pending work only, are deleted with it — explicitly.
func TestWhatOutlivesTheStack(t *testing.T) {
	r := render(t, sourceTemplate, destination(nil))
	for name, want := range map[string]string{
		"DeadLetterQueue": "Retain", "ReplicateLogGroup": "Retain", "BackfillLogGroup": "Retain", "ReconcileLogGroup": "Retain",
		"ReplicationQueue": "Delete", "ReconcileQueue": "Delete", "CopyQueue": "Delete",
	} {
		res := r.resources()[name]
		if res["DeletionPolicy"] != want || res["UpdateReplacePolicy"] != want {
			t.Errorf("%s: DeletionPolicy %v, UpdateReplacePolicy %v, want %s", name, res["DeletionPolicy"], res["UpdateReplacePolicy"], want)
		}
	}
}

// TestSecretsAreNotEchoed: the external ID is NoEcho wherever a template takes it.
func TestSecretsAreNotEchoed(t *testing.T) {
	for _, file := range []string{sourceTemplate, destinationTemplate} {
		params := destination(nil)
		if file == destinationTemplate {
			params = map[string]any{"ReplicatorRoleArn": replicatorRoleArn}
		}
		p := render(t, file, params).typed().Parameters["ExternalId"]
		if p.NoEcho == nil || !*p.NoEcho {
			t.Errorf("%s: ExternalId is echoed (NoEcho %v)", file, p.NoEcho)
		}
	}
}

// emittedMetrics scans the product's Go sources for the metrics they record — name and
// dimension ("" for none) — plus the configuration errors wiring counts.
func emittedMetrics(t *testing.T) map[[2]string]bool {
	t.Helper()
	add := regexp.MustCompile(`\.Add\("(\w+)", metrics\.\w+, [^,\n]+(?:, "(\w+)")?`)
	out := map[[2]string]bool{{wiring.MetricConfigurationErrors, ""}: true}
	for _, dir := range []string{"../internal", "../functions"} {
		err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") ||
				strings.Contains(p, "/sandbox/") || strings.Contains(p, "/testing/") || strings.HasPrefix(p, "../internal/metrics/") {
				return err
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			for _, m := range add.FindAllStringSubmatch(string(data), -1) {
				out[[2]string{m[1], m[2]}] = true
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(out) < 10 {
		t.Fatalf("found only %v: the scan no longer sees the metrics", out)
	}
	return out
}

// TestDashboard: the dashboard has the widgets an operator needs, and each is on a metric
// the functions emit — with the dimension the widget searches by — or one AWS publishes
// for the stack's queues and functions.
func TestDashboard(t *testing.T) {
	r := render(t, sourceTemplate, destination(map[string]any{"MetricsNamespace": "Mirror Ops"}))
	props := r.resource("Dashboard", "AWS::CloudWatch::Dashboard")
	body, ok := props["DashboardBody"].(string)
	if !ok {
		t.Fatalf("DashboardBody is %T", props["DashboardBody"])
	}
	var dash struct {
		Widgets []struct {
			Type       string
			Properties struct {
				Title   string
				Region  string
				Alarms  []string
				Metrics [][]any
			}
		}
	}
	if err := json.Unmarshal([]byte(body), &dash); err != nil {
		t.Fatalf("DashboardBody is not JSON: %v\n%s", err, body)
	}
	emitted := emittedMetrics(t)
	search := regexp.MustCompile(`^SEARCH\('\{"Mirror Ops",(\w+)\} MetricName="(\w+)"', 'Sum', 300\)$`)
	queues := map[string]bool{"getatt:DeadLetterQueue.QueueName": true, "getatt:ReplicationQueue.QueueName": true,
		"getatt:ReconcileQueue.QueueName": true, "getatt:CopyQueue.QueueName": true}
	functions := map[string]bool{"ref:ReplicateFunction": true, "ref:BackfillFunction": true, "ref:ReconcileFunction": true}
	var titles []string
	uses := map[string]bool{} // what each widget shows, by metric
	for _, w := range dash.Widgets {
		p := w.Properties
		titles = append(titles, p.Title)
		if w.Type == "alarm" {
			if len(p.Alarms) != len(r.typed().GetAllCloudWatchAlarmResources()) {
				t.Errorf("the alarm widget shows %v, want every alarm", p.Alarms)
			}
			continue
		}
		if p.Region != testRegion || len(p.Metrics) == 0 {
			t.Errorf("%q: region %q, %d metrics", p.Title, p.Region, len(p.Metrics))
		}
		for _, m := range p.Metrics {
			if opts, ok := m[0].(map[string]any); ok { // an expression
				g := search.FindStringSubmatch(scalarString(opts["expression"]))
				if g == nil || !emitted[[2]string{g[2], g[1]}] {
					t.Errorf("%q: %v is not a search of a metric the code emits by that dimension", p.Title, opts["expression"])
					continue
				}
				uses[g[2]+"/"+g[1]] = true
				continue
			}
			ns, name := scalarString(m[0]), scalarString(m[1])
			switch ns {
			case "Mirror Ops":
				if _, opts := m[2].(map[string]any); len(m) != 3 || !opts || !emitted[[2]string{name, ""}] {
					t.Errorf("%q: %v is not a metric the code emits without dimensions", p.Title, m)
				}
			case "AWS/SQS":
				if len(m) < 4 || m[2] != "QueueName" || !queues[scalarString(m[3])] {
					t.Errorf("%q: %v is not on a queue of the stack", p.Title, m)
				}
			case "AWS/Lambda":
				if len(m) < 4 || m[2] != "FunctionName" || !functions[scalarString(m[3])] {
					t.Errorf("%q: %v is not on a function of the stack", p.Title, m)
				}
			default:
				t.Errorf("%q: namespace %s", p.Title, ns)
			}
			uses[name] = true
		}
	}
	for _, need := range []string{
		"ImagesReplicated/Destination", "ReplicationFailures/Destination", "ReplicationLatency",
		"ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage", "RepositoriesInScope",
		"RepositoriesReconciled", "PutImageThrottled/Destination", "ConfigurationErrors",
	} {
		if !uses[need] {
			t.Errorf("no widget shows %s", need)
		}
	}
	sort.Strings(titles)
	t.Logf("widgets: %s", strings.Join(titles, " | "))
}
