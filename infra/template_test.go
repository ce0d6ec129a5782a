package infra

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox/eventpattern"
)

// Single-destination parameters most tests deploy with.
func destination(extra map[string]any) map[string]any {
	p := map[string]any{"DestinationAccountId": "222222222222"}
	for k, v := range extra {
		p[k] = v
	}
	return p
}

func TestTemplateStructure(t *testing.T) {
	r := render(t, sourceTemplate, destination(nil))
	if r.raw["Transform"] != "AWS::Serverless-2016-10-31" {
		t.Errorf("Transform = %v", r.raw["Transform"])
	}
	checkReferences(t, r)
	checkCreatedReferences(t, r)
	checkCreatedReferences(t, render(t, sourceTemplate, destination(map[string]any{
		"ReconcileSchedule": "cron(0 3 * * ? *)", "ResultEventBus": "arn:aws:events:us-east-1:111111111111:event-bus/x",
		"AlarmTopicArn": "arn:aws:sns:us-east-1:111111111111:ops", "MirrorDeletes": "true", "RepositoryPrefixFilter": "team-a/",
	})))

	tmpl := r.typed()
	if tmpl.Transform == nil || tmpl.Transform.String == nil || *tmpl.Transform.String != "AWS::Serverless-2016-10-31" {
		t.Errorf("goformation Transform = %+v", tmpl.Transform)
	}
	wantTypes := map[string]string{
		"ReplicateFunction":            "AWS::Serverless::Function",
		"BackfillFunction":             "AWS::Serverless::Function",
		"ReconcileFunction":            "AWS::Serverless::Function",
		"ReplicateLogGroup":            "AWS::Logs::LogGroup",
		"BackfillLogGroup":             "AWS::Logs::LogGroup",
		"ReconcileLogGroup":            "AWS::Logs::LogGroup",
		"ReconcileScheduleRule":        "AWS::Events::Rule",
		"ReconcileSchedulePermission":  "AWS::Lambda::Permission",
		"ReplicatorRole":               "AWS::IAM::Role",
		"ReconcilerRole":               "AWS::IAM::Role",
		"ImageActionRule":              "AWS::Events::Rule",
		"GateEventRule":                "AWS::Events::Rule",
		"ReplicationQueue":             "AWS::SQS::Queue",
		"ReconcileQueue":               "AWS::SQS::Queue",
		"CopyQueue":                    "AWS::SQS::Queue",
		"DeadLetterQueue":              "AWS::SQS::Queue",
		"ReplicationQueuePolicy":       "AWS::SQS::QueuePolicy",
		"ReconcileQueuePolicy":         "AWS::SQS::QueuePolicy",
		"CopyQueuePolicy":              "AWS::SQS::QueuePolicy",
		"DeadLetterQueueAlarm":         "AWS::CloudWatch::Alarm",
		"ReplicateFunctionErrorsAlarm": "AWS::CloudWatch::Alarm",
		"BackfillFunctionErrorsAlarm":  "AWS::CloudWatch::Alarm",
		"ReconcileOverrunAlarm":        "AWS::CloudWatch::Alarm",
		"ReconcileFailuresAlarm":       "AWS::CloudWatch::Alarm",
		"ReconcileFunctionErrorsAlarm": "AWS::CloudWatch::Alarm",
		"ReplicatorPullTimeExclusion":  "AWS::ECR::PullTimeUpdateExclusion",
		"ConfigurationErrorsAlarm":     "AWS::CloudWatch::Alarm",
		"Dashboard":                    "AWS::CloudWatch::Dashboard",
	}
	got := map[string]string{}
	for name, res := range r.section(r.raw, "Resources") {
		got[name], _ = res.(map[string]any)["Type"].(string)
	}
	if !reflect.DeepEqual(got, wantTypes) {
		t.Errorf("resources = %v\nwant %v", got, wantTypes)
	}

	// Parameter constraints the event source mapping and Lambda impose.
	p := tmpl.Parameters
	if mc := p["MaximumConcurrency"]; mc.MinValue == nil || *mc.MinValue < 2 || mc.MaxValue == nil || *mc.MaxValue > 1000 {
		t.Errorf("MaximumConcurrency bounds = %v..%v, want within 2..1000", mc.MinValue, mc.MaxValue)
	}
	if bs := p["BatchSize"]; bs.MinValue == nil || *bs.MinValue < 1 || bs.MaxValue == nil || *bs.MaxValue > 10 {
		t.Errorf("BatchSize bounds = %v..%v, want within 1..10 (more needs a batching window)", bs.MinValue, bs.MaxValue)
	}
	if bt := p["BackfillTimeout"]; bt.MaxValue == nil || *bt.MaxValue > 900 || number(t, "BackfillTimeout default", bt.Default) != 900 {
		t.Errorf("BackfillTimeout = %+v, want default 900 and at most 900", bt)
	}
	if a := p["Architecture"]; a.Default != "arm64" || !reflect.DeepEqual(a.AllowedValues, []any{"arm64", "x86_64"}) {
		t.Errorf("Architecture = %+v", a)
	}
	for _, name := range []string{"MirrorDeletes", "CreateRepositories"} {
		if !reflect.DeepEqual(p[name].AllowedValues, []any{"true", "false"}) {
			t.Errorf("%s AllowedValues = %v", name, p[name].AllowedValues)
		}
	}
	if lv := p["LogLevel"]; lv.Default != "info" || !reflect.DeepEqual(lv.AllowedValues, []any{"debug", "info", "warn", "error"}) {
		t.Errorf("LogLevel = %+v", lv)
	}
}

// function is the part of an AWS::Serverless::Function the tests look at, after merging
// Globals.Function as SAM does (maps merge, other values: the function's own wins).
type function struct {
	Runtime       string
	Handler       string
	CodeUri       string
	Architectures []string
	Role          string
	MemorySize    any
	Timeout       any
	LoggingConfig map[string]any
	Environment   struct{ Variables map[string]any }
	Events        map[string]struct {
		Type       string
		Properties map[string]any
	}
	Metadata map[string]any `json:"-"`
}

func (r *rendered) function(name string) function {
	r.t.Helper()
	props := r.resource(name, "AWS::Serverless::Function")
	globals, _ := r.section(r.doc, "Globals")["Function"].(map[string]any)
	merged := mergeGlobals(globals, props).(map[string]any)
	data, _ := json.Marshal(merged)
	var f function
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&f); err != nil {
		r.t.Fatalf("%s: %v", name, err)
	}
	f.Metadata, _ = r.resources()[name]["Metadata"].(map[string]any)
	return f
}

func mergeGlobals(global, local any) any {
	g, ok1 := global.(map[string]any)
	l, ok2 := local.(map[string]any)
	if !ok1 || !ok2 {
		if local != nil {
			return local
		}
		return global
	}
	out := map[string]any{}
	for k, v := range g {
		out[k] = v
	}
	for k, v := range l {
		out[k] = mergeGlobals(g[k], v)
	}
	return out
}

func TestFunctions(t *testing.T) {
	for _, arch := range []string{"", "arm64", "x86_64"} {
		params := destination(nil)
		want := "arm64"
		if arch != "" {
			params["Architecture"] = arch
			want = arch
		}
		r := render(t, sourceTemplate, params)
		for _, name := range []string{"ReplicateFunction", "BackfillFunction", "ReconcileFunction"} {
			f := r.function(name)
			if f.Runtime != "provided.al2023" || f.Handler != "bootstrap" || f.CodeUri != "." {
				t.Errorf("%s: Runtime %q Handler %q CodeUri %q", name, f.Runtime, f.Handler, f.CodeUri)
			}
			if !reflect.DeepEqual(f.Architectures, []string{want}) {
				t.Errorf("%s (Architecture=%q): Architectures = %v, want [%s]", name, arch, f.Architectures, want)
			}
			if f.Metadata["BuildMethod"] != "makefile" {
				t.Errorf("%s: Metadata = %v, want BuildMethod makefile", name, f.Metadata)
			}
			if f.LoggingConfig["LogFormat"] != "JSON" {
				t.Errorf("%s: LoggingConfig = %v, want LogFormat JSON", name, f.LoggingConfig)
			}
			logGroup := strings.TrimSuffix(name, "Function") + "LogGroup"
			if f.LoggingConfig["LogGroup"] != "ref:"+logGroup {
				t.Errorf("%s: LoggingConfig.LogGroup = %v, want ref:%s", name, f.LoggingConfig["LogGroup"], logGroup)
			}
			// The copying functions share the role destination roles trust to write; the
			// reconcile has its own, which lists and sends only.
			role := "getatt:ReplicatorRole.Arn"
			if name == "ReconcileFunction" {
				role = "getatt:ReconcilerRole.Arn"
			}
			if f.Role != role {
				t.Errorf("%s: Role = %q, want %s", name, f.Role, role)
			}
		}
	}

	r := render(t, sourceTemplate, destination(nil))
	sizes := map[string][2]float64{"ReplicateFunction": {1024, 300}, "BackfillFunction": {512, 900}, "ReconcileFunction": {256, 300}}
	for name, want := range sizes {
		f := r.function(name)
		if m, to := number(t, name+" MemorySize", f.MemorySize), number(t, name+" Timeout", f.Timeout); m != want[0] || to != want[1] {
			t.Errorf("%s: MemorySize %v Timeout %v, want %v", name, m, to, want)
		}
	}
	r = render(t, sourceTemplate, destination(map[string]any{
		"ReplicateMemorySize": 2048, "ReplicateTimeout": 600, "BackfillMemorySize": 256, "BackfillTimeout": 120,
		"ReconcileMemorySize": 512, "ReconcileTimeout": 900,
	}))
	sizes = map[string][2]float64{"ReplicateFunction": {2048, 600}, "BackfillFunction": {256, 120}, "ReconcileFunction": {512, 900}}
	for name, want := range sizes {
		f := r.function(name)
		if m, to := number(t, name+" MemorySize", f.MemorySize), number(t, name+" Timeout", f.Timeout); m != want[0] || to != want[1] {
			t.Errorf("%s: MemorySize %v Timeout %v, want %v", name, m, to, want)
		}
	}

	lg := r.typed().Resources
	for _, name := range []string{"ReplicateLogGroup", "BackfillLogGroup", "ReconcileLogGroup"} {
		// Named by CloudFormation: a group kept from a deleted stack must not collide
		// with the one a new stack of the same name creates (the outputs give the name).
		g, err := r.typed().GetLogsLogGroupWithName(name)
		if err != nil || g.RetentionInDays == nil || *g.RetentionInDays != 30 || g.LogGroupName != nil {
			t.Errorf("%s = %+v (%v), want a group named by CloudFormation with 30 days retention", name, lg[name], err)
		}
	}
}

func TestFunctionEnvironment(t *testing.T) {
	r := render(t, sourceTemplate, destination(nil))
	for _, name := range []string{"ReplicateFunction", "BackfillFunction", "ReconcileFunction"} {
		env := r.function(name).Environment.Variables
		// PROMOTION_GATES: every function refuses a gated rule in a stack without gates.
		want := []string{"COPY_QUEUE_URL", "DESTINATION_ROLE_ARNS", "LOG_LEVEL", "METRICS_NAMESPACE", "MIRROR_DELETES", "PROMOTION_GATES", "PUT_IMAGE_RATE", "REPLICATION_QUEUE_URL", "REPLICATION_RULES", "REPLICATION_RULES_CHECK_SECONDS", "REPLICATION_RULES_PARAMETER", "REPOSITORY_PREFIX_FILTER", "RESULT_EVENT_BUS", "SOURCE_ACCOUNT_IDS"}
		switch name {
		case "ReplicateFunction":
			// Its invocations start at their share of the quota: the copy queue's
			// concurrency is how many write at once. The backfill function is one
			// invocation.
			want = []string{"COPY_QUEUE_URL", "DESTINATION_ROLE_ARNS", "LOG_LEVEL", "METRICS_NAMESPACE", "MIRROR_DELETES", "PROMOTION_GATES", "PUT_IMAGE_RATE", "PUT_IMAGE_WRITERS", "REPLICATION_QUEUE_URL", "REPLICATION_RULES", "REPLICATION_RULES_CHECK_SECONDS", "REPLICATION_RULES_PARAMETER", "REPOSITORY_PREFIX_FILTER", "RESULT_EVENT_BUS", "SOURCE_ACCOUNT_IDS"}
			if fmt.Sprint(env["PUT_IMAGE_WRITERS"]) != "2" {
				t.Errorf("PUT_IMAGE_WRITERS = %v, want CopyConcurrency's default 2", env["PUT_IMAGE_WRITERS"])
			}
		case "ReconcileFunction":
			want = []string{"COPY_QUEUE_URL", "DESTINATION_ROLE_ARNS", "LOG_LEVEL", "METRICS_NAMESPACE", "MIRROR_DELETES", "PROMOTION_GATES", "PUT_IMAGE_RATE", "RECONCILE_QUEUE_URL", "REPLICATION_QUEUE_URL", "REPLICATION_RULES", "REPLICATION_RULES_CHECK_SECONDS", "REPLICATION_RULES_PARAMETER", "REPOSITORY_PREFIX_FILTER", "RESULT_EVENT_BUS", "SOURCE_ACCOUNT_IDS"}
			if env["RECONCILE_QUEUE_URL"] != "ref:ReconcileQueue" {
				t.Errorf("RECONCILE_QUEUE_URL = %v, want ref:ReconcileQueue", env["RECONCILE_QUEUE_URL"])
			}
		}
		if got := keys(env); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: environment %v, want exactly %v", name, got, want)
		}
		for k, v := range map[string]string{
			"LOG_LEVEL": "info", "METRICS_NAMESPACE": "ECRReplicator",
			"REPLICATION_QUEUE_URL": "ref:ReplicationQueue", "RESULT_EVENT_BUS": "",
			"COPY_QUEUE_URL": "ref:CopyQueue",
			"PUT_IMAGE_RATE": "10", "REPLICATION_RULES_PARAMETER": "", "REPLICATION_RULES_CHECK_SECONDS": "60",
			"MIRROR_DELETES": "false", "REPOSITORY_PREFIX_FILTER": "", "PROMOTION_GATES": "false",
		} {
			if fmt.Sprint(env[k]) != v {
				t.Errorf("%s: %s = %v, want %q", name, k, env[k], v)
			}
		}
	}
	bus := "arn:aws:events:us-east-1:111111111111:event-bus/replication-results"
	r = render(t, sourceTemplate, destination(map[string]any{
		"ResultEventBus": bus, "LogLevel": "debug", "MetricsNamespace": "Mirror",
	}))
	env := r.function("ReplicateFunction").Environment.Variables
	if env["RESULT_EVENT_BUS"] != bus || env["LOG_LEVEL"] != "debug" || env["METRICS_NAMESPACE"] != "Mirror" {
		t.Errorf("environment = %v", env)
	}
}

// rulesDocument mirrors the rules document contract; decoding is strict so the template
// cannot emit a key the functions do not know.
type rulesDocument struct {
	Rules []struct {
		Name          string   `json:"name"`
		Repositories  []string `json:"repositories"`
		Tags          []string `json:"tags"`
		MirrorDeletes *bool    `json:"mirrorDeletes"`
		Destinations  []struct {
			AccountID        string  `json:"accountId"`
			Region           string  `json:"region"`
			RoleARN          string  `json:"roleArn"`
			ExternalID       *string `json:"externalId"`
			RepositoryPrefix *string `json:"repositoryPrefix"`
			CreateRepository *bool   `json:"createRepository"`
		} `json:"destinations"`
	} `json:"rules"`
}

func TestRulesDocument(t *testing.T) {
	type want struct {
		repos, tags           string
		mirrorDeletes, create bool
		region, role, prefix  string
		externalID            *string
	}
	ext := "s3cr3t-id"
	cases := []struct {
		name   string
		params map[string]any
		want   want
	}{
		{"defaults", nil, want{"**", "*", false, true, testRegion,
			"arn:aws:iam::222222222222:role/ecr-replicator-destination", "mirror/", nil}},
		{"no prefix", map[string]any{"DestinationRepositoryPrefix": ""}, want{"**", "*", false, true, testRegion,
			"arn:aws:iam::222222222222:role/ecr-replicator-destination", "", nil}},
		{"everything set", map[string]any{
			"RepositoryFilter": "team-a/*", "TagFilter": "v*", "MirrorDeletes": "true",
			"CreateRepositories": "false", "DestinationRegion": "eu-west-1",
			"DestinationRoleArn": "arn:aws:iam::222222222222:role/custom", "ExternalId": ext,
			"DestinationRepositoryPrefix": "mirror/",
		}, want{"team-a/*", "v*", true, false, "eu-west-1", "arn:aws:iam::222222222222:role/custom", "mirror/", &ext}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := render(t, sourceTemplate, destination(tc.params))
			raw, ok := r.function("ReplicateFunction").Environment.Variables["REPLICATION_RULES"].(string)
			if !ok {
				t.Fatalf("REPLICATION_RULES is not a string")
			}
			if backfill := r.function("BackfillFunction").Environment.Variables["REPLICATION_RULES"]; backfill != raw {
				t.Errorf("BackfillFunction sees different rules:\n%v\n%v", backfill, raw)
			}
			var doc rulesDocument
			dec := json.NewDecoder(strings.NewReader(raw))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&doc); err != nil {
				t.Fatalf("REPLICATION_RULES is not a valid rules document: %v\n%s", err, raw)
			}
			if len(doc.Rules) != 1 || len(doc.Rules[0].Destinations) != 1 {
				t.Fatalf("want one rule with one destination: %s", raw)
			}
			rule, d, w := doc.Rules[0], doc.Rules[0].Destinations[0], tc.want
			if rule.Name != "default" || !reflect.DeepEqual(rule.Repositories, []string{w.repos}) ||
				!reflect.DeepEqual(rule.Tags, []string{w.tags}) || rule.MirrorDeletes == nil || *rule.MirrorDeletes != w.mirrorDeletes {
				t.Errorf("rule = %+v, want %+v", rule, w)
			}
			if d.AccountID != "222222222222" || d.Region != w.region || d.RoleARN != w.role ||
				d.RepositoryPrefix == nil || *d.RepositoryPrefix != w.prefix ||
				d.CreateRepository == nil || *d.CreateRepository != w.create {
				t.Errorf("destination = %+v, want %+v", d, w)
			}
			if !reflect.DeepEqual(d.ExternalID, w.externalID) {
				t.Errorf("externalId = %v, want %v (omitted when empty)", deref(d.ExternalID), deref(w.externalID))
			}
			if w.externalID == nil && strings.Contains(raw, "externalId") {
				t.Errorf("externalId present though empty: %s", raw)
			}
		})
	}

	t.Run("parameter", func(t *testing.T) {
		r := render(t, sourceTemplate, map[string]any{"RulesParameterName": "/ecr-replicator/rules", "RulesCheckSeconds": 30, "DestinationRoleArns": stackSetGrant})
		for _, name := range []string{"ReplicateFunction", "BackfillFunction", "ReconcileFunction"} {
			env := r.function(name).Environment.Variables
			if env["REPLICATION_RULES"] != "" || env["REPLICATION_RULES_PARAMETER"] != "/ecr-replicator/rules" || fmt.Sprint(env["REPLICATION_RULES_CHECK_SECONDS"]) != "30" {
				t.Errorf("%s: environment %v, want the parameter's name and no document", name, env)
			}
		}
	})
}

func TestReplicateQueueEvent(t *testing.T) {
	r := render(t, sourceTemplate, destination(nil))
	events := r.function("ReplicateFunction").Events
	if len(events) != 2 {
		t.Fatalf("ReplicateFunction events = %v, want the replication and copy queues", events)
	}
	// The reconcile queue is the reconcile function's alone.
	rec := r.function("ReconcileFunction").Events
	if len(rec) != 1 {
		t.Fatalf("ReconcileFunction events = %v, want the reconcile queue", rec)
	}
	events["ReconcileQueue"] = rec["ReconcileQueue"]
	if f := r.resource("ReconcileFunction", "AWS::Serverless::Function"); f["RecursiveLoop"] != "Allow" {
		t.Errorf("ReconcileFunction RecursiveLoop = %v, want Allow (its chains are bounded by hops)", f["RecursiveLoop"])
	}
	if f := r.resource("ReplicateFunction", "AWS::Serverless::Function"); f["RecursiveLoop"] != "Terminate" {
		t.Errorf("ReplicateFunction RecursiveLoop = %v, want Terminate (the default): without promotion gates it sends to no queue it consumes", f["RecursiveLoop"])
	}
	gated := render(t, sourceTemplate, destination(map[string]any{"PromotionGates": "true"}))
	if f := gated.resource("ReplicateFunction", "AWS::Serverless::Function"); f["RecursiveLoop"] != "Allow" {
		t.Errorf("ReplicateFunction RecursiveLoop with PromotionGates = %v, want Allow (held copies re-check themselves through the copy queue)", f["RecursiveLoop"])
	}
	wantQueue := map[string]string{"ReplicationQueue": "getatt:ReplicationQueue.Arn", "ReconcileQueue": "getatt:ReconcileQueue.Arn", "CopyQueue": "getatt:CopyQueue.Arn"}
	wantBatch := map[string]float64{"ReplicationQueue": 5, "ReconcileQueue": 10, "CopyQueue": 10}
	// Copies are few at once: their writers share the destinations' PutImage quota.
	wantConcurrency := map[string]float64{"ReplicationQueue": 10, "ReconcileQueue": 10, "CopyQueue": 2}
	for name, ev := range events {
		p := ev.Properties
		if ev.Type != "SQS" || p["Queue"] != wantQueue[name] {
			t.Errorf("event %s = %+v, want SQS from %s", name, ev, wantQueue[name])
		}
		if !reflect.DeepEqual(p["FunctionResponseTypes"], []any{"ReportBatchItemFailures"}) {
			t.Errorf("FunctionResponseTypes = %v", p["FunctionResponseTypes"])
		}
		sc, _ := p["ScalingConfig"].(map[string]any)
		if mc := number(t, "MaximumConcurrency", sc["MaximumConcurrency"]); mc != wantConcurrency[name] {
			t.Errorf("%s ScalingConfig.MaximumConcurrency = %v, want the parameter's default %v", name, mc, wantConcurrency[name])
		}
		if bs := number(t, "BatchSize", p["BatchSize"]); bs != wantBatch[name] {
			t.Errorf("%s BatchSize = %v, want %v", name, bs, wantBatch[name])
		}
	}
	r = render(t, sourceTemplate, destination(map[string]any{"MaximumConcurrency": 2, "BatchSize": 1, "ReconcileMaximumConcurrency": 2, "ReconcileBatchSize": 1, "CopyConcurrency": 2, "CopyBatchSize": 1}))
	overridden := r.function("ReplicateFunction").Events
	overridden["ReconcileQueue"] = r.function("ReconcileFunction").Events["ReconcileQueue"]
	for _, ev := range overridden {
		sc, _ := ev.Properties["ScalingConfig"].(map[string]any)
		if number(t, "MaximumConcurrency", sc["MaximumConcurrency"]) != 2 || number(t, "BatchSize", ev.Properties["BatchSize"]) != 1 {
			t.Errorf("overrides not applied: %v", ev.Properties)
		}
	}
	if ev := r.function("BackfillFunction").Events; len(ev) != 0 {
		t.Errorf("BackfillFunction events = %v, want none (the schedule is a separate conditional rule)", ev)
	}
}

func TestQueueVisibilityTimeout(t *testing.T) {
	base := render(t, sourceTemplate, destination(nil))
	// Each queue's visibility timeout is six times the timeout of the function that
	// consumes it.
	for _, c := range []struct{ param, function, queue string }{
		{"ReplicateTimeout", "ReplicateFunction", "ReplicationQueue"},
		{"ReplicateTimeout", "ReplicateFunction", "CopyQueue"},
		{"ReconcileTimeout", "ReconcileFunction", "ReconcileQueue"},
	} {
		allowed := base.typed().Parameters[c.param].AllowedValues
		if len(allowed) == 0 {
			t.Fatalf("%s has no AllowedValues; the visibility timeout mapping needs them", c.param)
		}
		for _, v := range append([]any{nil}, allowed...) { // nil: the default
			params := destination(nil)
			if v != nil {
				params[c.param] = v
			}
			r := render(t, sourceTemplate, params)
			timeout := number(t, "Timeout", r.function(c.function).Timeout)
			q, err := r.typed().GetSQSQueueWithName(c.queue)
			if err != nil {
				t.Fatal(err)
			}
			if q.VisibilityTimeout == nil {
				t.Fatalf("%s=%v: %s has no VisibilityTimeout", c.param, v, c.queue)
			}
			vt := float64(*q.VisibilityTimeout)
			if vt < 6*timeout || vt > 43200 {
				t.Errorf("%s=%v: %s VisibilityTimeout %v, want >= 6 x %v and <= 43200", c.param, v, c.queue, vt, timeout)
			}
			if timeout > 900 {
				t.Errorf("%s %v exceeds Lambda's 900 s", c.param, timeout)
			}
		}
		if q, _ := base.typed().GetSQSQueueWithName(c.queue); *q.VisibilityTimeout != 1800 {
			t.Errorf("%s default VisibilityTimeout = %d, want 1800", c.queue, *q.VisibilityTimeout)
		}
	}
}

func TestDeadLetterQueue(t *testing.T) {
	for _, mrc := range []any{nil, 3} {
		params := destination(nil)
		want := 5.0
		if mrc != nil {
			params["MaxReceiveCount"] = mrc
			want = 3
		}
		tmpl := render(t, sourceTemplate, params).typed()
		q, err := tmpl.GetSQSQueueWithName("ReplicationQueue")
		if err != nil {
			t.Fatal(err)
		}
		rp, _ := q.RedrivePolicy.(map[string]any)
		if rp["deadLetterTargetArn"] != "getatt:DeadLetterQueue.Arn" || number(t, "maxReceiveCount", rp["maxReceiveCount"]) != want {
			t.Errorf("RedrivePolicy = %v, want DeadLetterQueue after %v receives", rp, want)
		}
		dlq, err := tmpl.GetSQSQueueWithName("DeadLetterQueue")
		if err != nil {
			t.Fatal(err)
		}
		if dlq.RedrivePolicy != nil {
			t.Error("the dead-letter queue must not redrive")
		}
		if q.MessageRetentionPeriod == nil || dlq.MessageRetentionPeriod == nil || *dlq.MessageRetentionPeriod <= *q.MessageRetentionPeriod {
			t.Errorf("DLQ retention must exceed the queue's (messages keep their age when moved)")
		}
	}
}

// TestQueuePolicy: every queue refuses SendMessage to all but its senders —
// ImageActionRule (by aws:SourceArn) for the ReplicationQueue and the DeadLetterQueue,
// the functions' roles for the reconcile and copy queues — and the QueueOperatorArns
// (by aws:PrincipalArn), when given. infra/messages_test.go sends to them.
func TestQueuePolicy(t *testing.T) {
	const ops = "arn:aws:iam::111111111111:role/ops-*"
	for _, operators := range []string{"", ops} {
		tmpl := render(t, sourceTemplate, destination(map[string]any{"QueueOperatorArns": operators})).typed()
		exempt := func(principals ...string) any {
			if operators != "" {
				principals = append(principals, ops)
			}
			return map[string]any{"aws:PrincipalArn": principals}
		}
		replication := []string{"getatt:DeadLetterQueue.Arn", "getatt:ReplicationQueue.Arn"}
		rule := map[string]any{"aws:SourceArn": "getatt:ImageActionRule.Arn"}
		deny := map[string]any{"ArnNotEquals": rule}
		if operators != "" {
			deny["ArnNotLike"] = map[string]any{"aws:PrincipalArn": []string{ops}}
		}
		want := map[string]struct {
			queues     []string
			statements []statement
		}{
			"ReplicationQueuePolicy": {[]string{"ref:DeadLetterQueue", "ref:ReplicationQueue"}, []statement{
				{Sid: "ImageActionRuleOnly", Effect: "Allow", Principal: map[string]any{"Service": "events.amazonaws.com"},
					Action: []string{"sqs:SendMessage"}, Resource: replication, Condition: map[string]any{"ArnEquals": rule}},
				{Sid: "NoOtherSender", Effect: "Deny", Principal: "*", Action: []string{"sqs:SendMessage"}, Resource: replication, Condition: deny},
			}},
			"ReconcileQueuePolicy": {[]string{"ref:ReconcileQueue"}, []statement{
				{Sid: "ReconcilerOnly", Effect: "Deny", Principal: "*", Action: []string{"sqs:SendMessage"}, Resource: []string{"getatt:ReconcileQueue.Arn"},
					Condition: map[string]any{"ArnNotLike": exempt("getatt:ReconcilerRole.Arn")}},
			}},
			"CopyQueuePolicy": {[]string{"ref:CopyQueue"}, []statement{
				{Sid: "ReconcilerAndBackfillOnly", Effect: "Deny", Principal: "*", Action: []string{"sqs:SendMessage"}, Resource: []string{"getatt:CopyQueue.Arn"},
					Condition: map[string]any{"ArnNotLike": exempt("getatt:ReplicatorRole.Arn", "getatt:ReconcilerRole.Arn")}},
			}},
		}
		for name, w := range want {
			qp, err := tmpl.GetSQSQueuePolicyWithName(name)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(sorted(qp.Queues), w.queues) {
				t.Errorf("%s: Queues = %v, want %v", name, qp.Queues, w.queues)
			}
			got := statements(t, qp.PolicyDocument)
			for i := range got {
				got[i].Resource = sorted(got[i].Resource)
			}
			if fmt.Sprint(jsonOf(t, got)) != fmt.Sprint(jsonOf(t, w.statements)) {
				t.Errorf("QueueOperatorArns=%q: %s:\n got %v\nwant %v", operators, name, jsonOf(t, got), jsonOf(t, w.statements))
			}
		}
	}
}

// jsonOf is v as plain JSON values, so that documents compare by content.
func jsonOf(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestImageActionRule(t *testing.T) {
	events := map[string][]byte{}
	for _, f := range []string{"push.json", "push-index.json", "push-untagged.json", "delete.json"} {
		data, err := os.ReadFile(filepath.Join("..", "events", f))
		if err != nil {
			t.Fatal(err)
		}
		events[f] = data
	}
	pushes := []string{"push.json", "push-index.json", "push-untagged.json"}
	cases := []struct {
		mirrorDeletes, prefix string
		match                 []string
	}{
		{"false", "", pushes},
		{"true", "", append([]string{"delete.json"}, pushes...)},
		{"false", "team-a/", pushes},
		{"true", "team-a/", append([]string{"delete.json"}, pushes...)},
		{"false", "team-b/", nil},
		{"true", "team-b/", nil},
	}
	for _, tc := range cases {
		r := render(t, sourceTemplate, destination(map[string]any{
			"MirrorDeletes": tc.mirrorDeletes, "RepositoryPrefixFilter": tc.prefix,
		}))
		rule, err := r.typed().GetEventsRuleWithName("ImageActionRule")
		if err != nil {
			t.Fatal(err)
		}
		if rule.State == nil || *rule.State != "ENABLED" || rule.ScheduleExpression != nil || rule.EventBusName != nil {
			t.Errorf("rule = %+v, want an enabled pattern rule on the default bus", rule)
		}
		if len(rule.Targets) != 1 || rule.Targets[0].Arn != "getatt:ReplicationQueue.Arn" ||
			rule.Targets[0].DeadLetterConfig == nil || rule.Targets[0].DeadLetterConfig.Arn == nil ||
			*rule.Targets[0].DeadLetterConfig.Arn != "getatt:DeadLetterQueue.Arn" {
			t.Errorf("targets = %+v, want ReplicationQueue with the DLQ for undeliverable events", rule.Targets)
		}
		pattern, err := eventpattern.New(rule.EventPattern)
		if err != nil {
			t.Fatalf("EventPattern %v: %v", rule.EventPattern, err)
		}
		for file, data := range events {
			want := false
			for _, m := range tc.match {
				want = want || m == file
			}
			got, err := pattern.Match(data)
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("MirrorDeletes=%s RepositoryPrefixFilter=%q: %s matched = %v, want %v (pattern %v)",
					tc.mirrorDeletes, tc.prefix, file, got, want, rule.EventPattern)
			}
		}
		// Failed pushes, other ECR events and another account's pushes stay out.
		failed := bytes.Replace(events["push.json"], []byte(`"SUCCESS"`), []byte(`"FAILURE"`), 1)
		scan := bytes.Replace(events["push.json"], []byte(`"ECR Image Action"`), []byte(`"ECR Image Scan"`), 1)
		foreign := bytes.Replace(events["push.json"], []byte(`"`+testAccountID+`"`), []byte(`"333333333333"`), 1)
		for what, ev := range map[string][]byte{"failed push": failed, "scan event": scan, "another account's push": foreign} {
			if ok, _ := pattern.Match(ev); ok {
				t.Errorf("%s matched", what)
			}
		}
	}
}

func TestReplicatorRole(t *testing.T) {
	ecrRead := "arn:aws:ecr:us-east-1:111111111111:repository/*"
	queue := []string{"getatt:ReplicationQueue.Arn", "getatt:CopyQueue.Arn"}
	base := map[string][]string{
		"ecr:GetAuthorizationToken":   {"*"},
		"ecr:BatchGetImage":           {ecrRead},
		"ecr:GetDownloadUrlForLayer":  {ecrRead},
		"ecr:DescribeImages":          {ecrRead},
		"ecr:ListImages":              {ecrRead},
		"ecr:DescribeRepositories":    {ecrRead},
		"ecr:GetLifecyclePolicy":      {ecrRead},
		"ecr:ListTagsForResource":     {ecrRead},
		"sqs:SendMessage":             {"getatt:CopyQueue.Arn"}, // a backfill in mode enqueue
		"sqs:ReceiveMessage":          queue,
		"sqs:DeleteMessage":           queue,
		"sqs:GetQueueAttributes":      queue,
		"sqs:ChangeMessageVisibility": queue,
	}
	reconciler := map[string][]string{
		"ecr:DescribeRepositories":    {ecrRead},
		"ecr:DescribeImages":          {ecrRead},
		"sqs:SendMessage":             {"getatt:ReconcileQueue.Arn", "getatt:CopyQueue.Arn"},
		"sqs:ReceiveMessage":          {"getatt:ReconcileQueue.Arn"},
		"sqs:DeleteMessage":           {"getatt:ReconcileQueue.Arn"},
		"sqs:ChangeMessageVisibility": {"getatt:ReconcileQueue.Arn"},
		"sqs:GetQueueAttributes":      {"getatt:ReconcileQueue.Arn", "getatt:CopyQueue.Arn"},
	}
	with := func(extra map[string][]string) map[string][]string {
		out := map[string][]string{}
		for k, v := range base {
			out[k] = v
		}
		for k, v := range extra {
			out[k] = v
		}
		return out
	}
	bus := "arn:aws:events:us-east-1:111111111111:event-bus/results"
	// The images under RepositoryPrefixFilter; the listing of the repositories (names and
	// settings) stays on every repository, as ECR authorizes a listing.
	teamA := "arn:aws:ecr:us-east-1:111111111111:repository/team-a/*"
	cases := []struct {
		name   string
		params map[string]any
		want   map[string][]string
	}{
		{"derived destination role", destination(nil), with(map[string][]string{
			"sts:AssumeRole": {"arn:aws:iam::222222222222:role/ecr-replicator-destination"}})},
		{"explicit destination role and result bus", destination(map[string]any{
			"DestinationRoleArn": "arn:aws:iam::222222222222:role/custom", "ResultEventBus": bus,
		}), with(map[string][]string{
			"sts:AssumeRole":   {"arn:aws:iam::222222222222:role/custom"},
			"events:PutEvents": {bus}})},
		{"rules parameter", map[string]any{
			"RulesParameterName":  "/ecr-replicator/rules",
			"DestinationRoleArns": "arn:aws:iam::222222222222:role/a,arn:aws:iam::333333333333:role/b",
		}, with(map[string][]string{
			"sts:AssumeRole":   {"arn:aws:iam::222222222222:role/a", "arn:aws:iam::333333333333:role/b"},
			"ssm:GetParameter": {"arn:aws:ssm:us-east-1:111111111111:parameter/ecr-replicator/rules"}})},
		{"repository prefix filter", destination(map[string]any{"RepositoryPrefixFilter": "team-a/"}), with(map[string][]string{
			"sts:AssumeRole":             {"arn:aws:iam::222222222222:role/ecr-replicator-destination"},
			"ecr:BatchGetImage":          {teamA},
			"ecr:GetDownloadUrlForLayer": {teamA},
			"ecr:DescribeImages":         {teamA},
			"ecr:ListImages":             {teamA},
			"ecr:GetLifecyclePolicy":     {teamA},
			"ecr:ListTagsForResource":    {teamA}})},
		{"rules parameter, the StackSet's role name within the organization", map[string]any{"RulesParameterName": "/platform/ecr/rules",
			"DestinationRoleArns": "arn:aws:iam::*:role/ecr-replicator-destination", "OrganizationId": "o-abcdef1234"}, with(map[string][]string{
			"sts:AssumeRole":   {"arn:aws:iam::*:role/ecr-replicator-destination"},
			"ssm:GetParameter": {"arn:aws:ssm:us-east-1:111111111111:parameter/platform/ecr/rules"}})},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := render(t, sourceTemplate, tc.params)
			org, _ := tc.params["OrganizationId"].(string)
			// Its destination sessions are write sessions, tagged (sts:TagSession); the
			// reconcile's are not.
			replicator := with(tc.want)
			replicator["sts:TagSession"] = tc.want["sts:AssumeRole"]
			checkRole(t, r, "ReplicatorRole", org, replicator)
			// The reconcile's role lists and sends; it assumes the same destination roles
			// (for list-only sessions), reads the same rules, and writes to no registry.
			want := map[string][]string{"sts:AssumeRole": tc.want["sts:AssumeRole"]}
			if g, ok := tc.want["ssm:GetParameter"]; ok {
				want["ssm:GetParameter"] = g
			}
			for k, v := range reconciler {
				want[k] = v
			}
			want["ecr:DescribeImages"] = tc.want["ecr:DescribeImages"]
			checkRole(t, r, "ReconcilerRole", org, want)
			// The functions check a rules document against the same list.
			for _, name := range []string{"ReplicateFunction", "BackfillFunction", "ReconcileFunction"} {
				env, _ := r.function(name).Environment.Variables["DESTINATION_ROLE_ARNS"].(string)
				if !reflect.DeepEqual(sorted(strings.Split(env, ",")), sorted(tc.want["sts:AssumeRole"])) {
					t.Errorf("%s: DESTINATION_ROLE_ARNS = %q, want the sts:AssumeRole grant %v", name, env, tc.want["sts:AssumeRole"])
				}
			}
		})
	}
}

// checkRole checks a function role: trusted by Lambda only, no managed policy, its
// function's log groups only, and exactly the actions of want on exactly their resources.
// With org, sts:AssumeRole holds only for roles of that organization (aws:ResourceOrgID);
// no other statement has a condition.
func checkRole(t *testing.T, r *rendered, name, org string, want map[string][]string) {
	t.Helper()
	role, err := r.typed().GetIAMRoleWithName(name)
	if err != nil {
		t.Fatal(err)
	}
	trust := statements(t, role.AssumeRolePolicyDocument)
	if len(trust) != 1 || !reflect.DeepEqual(trust[0].Principal, map[string]any{"Service": "lambda.amazonaws.com"}) ||
		!reflect.DeepEqual(trust[0].Action, []string{"sts:AssumeRole"}) || trust[0].Condition != nil {
		t.Errorf("%s: trust policy = %+v, want Lambda only", name, trust)
	}
	if len(role.ManagedPolicyArns) != 0 {
		t.Errorf("%s: ManagedPolicyArns = %v, want none (AWSLambdaBasicExecutionRole writes to any log group)", name, role.ManagedPolicyArns)
	}
	logs := map[string][]string{"ReplicatorRole": {"getatt:BackfillLogGroup.Arn", "getatt:ReplicateLogGroup.Arn"}, "ReconcilerRole": {"getatt:ReconcileLogGroup.Arn"}}[name]
	want = maps.Clone(want)
	want["logs:CreateLogStream"], want["logs:PutLogEvents"] = logs, logs
	var all []statement
	for _, p := range role.Policies {
		all = append(all, statements(t, p.PolicyDocument)...)
	}
	got := actions(t, all)
	if !reflect.DeepEqual(keys(got), keys(want)) {
		t.Errorf("%s: actions = %v\nwant      %v", name, keys(got), keys(want))
	}
	for a, res := range want {
		if g, ok := got[a]; ok && !reflect.DeepEqual(sorted(g), sorted(res)) {
			t.Errorf("%s: %s on %v, want %v", name, a, g, res)
		}
	}
	for _, s := range all {
		var cond any
		if org != "" && slices.Contains(s.Action, "sts:AssumeRole") {
			cond = map[string]any{"StringEquals": map[string]any{"aws:ResourceOrgID": org}}
		}
		if !reflect.DeepEqual(s.Condition, cond) || s.Principal != nil {
			t.Errorf("%s: statement %s has Condition %v (want %v) or a Principal", name, s.Sid, s.Condition, cond)
		}
	}
}

func TestReconcileSchedule(t *testing.T) {
	r := render(t, sourceTemplate, destination(nil))
	for _, name := range []string{"ReconcileScheduleRule", "ReconcileSchedulePermission"} {
		if _, ok := r.resources()[name]; ok {
			t.Errorf("%s exists without ReconcileSchedule", name)
		}
	}
	r = render(t, sourceTemplate, destination(map[string]any{"ReconcileSchedule": "rate(1 day)"}))
	tmpl := r.typed()
	rule, err := tmpl.GetEventsRuleWithName("ReconcileScheduleRule")
	if err != nil {
		t.Fatal(err)
	}
	if rule.AWSCloudFormationCondition != "HasReconcileSchedule" || rule.ScheduleExpression == nil || *rule.ScheduleExpression != "rate(1 day)" ||
		len(rule.Targets) != 1 || rule.Targets[0].Arn != "getatt:ReconcileFunction.Arn" || rule.EventPattern != nil ||
		rule.Targets[0].Input != nil {
		t.Errorf("schedule rule = %+v", rule)
	}
	perm, err := tmpl.GetLambdaPermissionWithName("ReconcileSchedulePermission")
	if err != nil {
		t.Fatal(err)
	}
	if perm.AWSCloudFormationCondition != "HasReconcileSchedule" || perm.Action != "lambda:InvokeFunction" ||
		perm.FunctionName != "ref:ReconcileFunction" || perm.Principal != "events.amazonaws.com" ||
		perm.SourceArn == nil || *perm.SourceArn != "getatt:ReconcileScheduleRule.Arn" {
		t.Errorf("permission = %+v", perm)
	}
}

func TestAlarms(t *testing.T) {
	want := map[string][4]string{ // namespace, metric, dimension, dimension value
		"DeadLetterQueueAlarm":         {"AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", "getatt:DeadLetterQueue.QueueName"},
		"ReplicateFunctionErrorsAlarm": {"AWS/Lambda", "Errors", "FunctionName", "ref:ReplicateFunction"},
		"BackfillFunctionErrorsAlarm":  {"AWS/Lambda", "Errors", "FunctionName", "ref:BackfillFunction"},
		"ReconcileOverrunAlarm":        {"ECRReplicator", "ReconcileOverrun", "", ""},
		"ReconcileFailuresAlarm":       {"ECRReplicator", "ReconcileFailures", "", ""},
		"ReconcileFunctionErrorsAlarm": {"AWS/Lambda", "Errors", "FunctionName", "ref:ReconcileFunction"},
		"ConfigurationErrorsAlarm":     {"ECRReplicator", "ConfigurationErrors", "", ""},
	}
	topic := "arn:aws:sns:us-east-1:111111111111:ops"
	for _, withTopic := range []bool{false, true} {
		params := destination(nil)
		if withTopic {
			params["AlarmTopicArn"] = topic
		}
		tmpl := render(t, sourceTemplate, params).typed()
		if got := tmpl.GetAllCloudWatchAlarmResources(); len(got) != len(want) {
			t.Errorf("%d alarms, want %d", len(got), len(want))
		}
		for name, w := range want {
			a, err := tmpl.GetCloudWatchAlarmWithName(name)
			if err != nil {
				t.Fatal(err)
			}
			dimsOK := (w[2] == "" && len(a.Dimensions) == 0) || (len(a.Dimensions) == 1 && a.Dimensions[0].Name == w[2] && a.Dimensions[0].Value == w[3])
			if a.Namespace == nil || *a.Namespace != w[0] || a.MetricName == nil || *a.MetricName != w[1] || !dimsOK {
				t.Errorf("%s watches %v %v %+v, want %v", name, a.Namespace, a.MetricName, a.Dimensions, w)
			}
			if a.ComparisonOperator != "GreaterThanThreshold" || a.Threshold == nil || *a.Threshold != 0 || a.EvaluationPeriods < 1 {
				t.Errorf("%s: want > 0", name)
			}
			var wantActions []string
			if withTopic {
				wantActions = []string{topic}
			}
			if !reflect.DeepEqual(a.AlarmActions, wantActions) {
				t.Errorf("%s: AlarmActions = %v, want %v", name, a.AlarmActions, wantActions)
			}
		}
	}
}

func TestOutputs(t *testing.T) {
	tmpl := render(t, sourceTemplate, destination(nil)).typed()
	want := map[string]string{
		"ReplicatorRoleArn":     "getatt:ReplicatorRole.Arn",
		"ReplicateFunctionArn":  "getatt:ReplicateFunction.Arn",
		"BackfillFunctionArn":   "getatt:BackfillFunction.Arn",
		"ReplicationQueueUrl":   "ref:ReplicationQueue",
		"ReconcileQueueUrl":     "ref:ReconcileQueue",
		"CopyQueueUrl":          "ref:CopyQueue",
		"DeadLetterQueueUrl":    "ref:DeadLetterQueue",
		"ReplicationQueueArn":   "getatt:ReplicationQueue.Arn",
		"ReconcileQueueArn":     "getatt:ReconcileQueue.Arn",
		"CopyQueueArn":          "getatt:CopyQueue.Arn",
		"DeadLetterQueueArn":    "getatt:DeadLetterQueue.Arn",
		"ReplicateLogGroupName": "ref:ReplicateLogGroup",
		"BackfillLogGroupName":  "ref:BackfillLogGroup",
		"DashboardName":         "ref:Dashboard",
		"DashboardUrl":          "https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1#dashboards:name=ref:Dashboard",
		"ReconcilerRoleArn":     "getatt:ReconcilerRole.Arn",
		"ReconcileFunctionArn":  "getatt:ReconcileFunction.Arn",
		"ReconcileLogGroupName": "ref:ReconcileLogGroup",
	}
	got := map[string]string{}
	for name, o := range tmpl.Outputs {
		got[name] = scalarString(o.Value)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("outputs = %v\nwant %v", got, want)
	}
}

func deref(s *string) string {
	if s == nil {
		return "<omitted>"
	}
	return *s
}
