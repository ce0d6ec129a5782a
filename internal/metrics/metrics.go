// Package metrics writes CloudWatch Embedded Metric Format (EMF) lines: JSON log lines
// that CloudWatch Logs turns into metrics, with no API call from the function.
// https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
package metrics

import (
	"encoding/json"
	"io"
	"sort"
	"strings"
	"sync"
	"time"
)

// EnvNamespace names the environment variable holding the namespace.
const EnvNamespace = "METRICS_NAMESPACE"

// DefaultNamespace is used when EnvNamespace is unset.
const DefaultNamespace = "ECRReplicator"

// Units used by the replicator (CloudWatch StandardUnit names).
const (
	Count        = "Count"
	Bytes        = "Bytes"
	Milliseconds = "Milliseconds"
)

// MaxValues is the most values one metric may carry in one EMF document.
const MaxValues = 100

// Namespace returns the namespace from the environment, or DefaultNamespace.
func Namespace(getenv func(string) string) string {
	if ns := strings.TrimSpace(getenv(EnvNamespace)); ns != "" {
		return ns
	}
	return DefaultNamespace
}

type metricKey struct {
	name string
	dims string // canonical "k=v\x00k=v"
}

type series struct {
	unit   string
	dims   map[string]string
	values []float64
}

// Recorder collects metric values and writes them as EMF lines on Flush. It is safe for
// concurrent use. Values of one metric with the same dimensions are sent as one array.
type Recorder struct {
	mu        sync.Mutex
	w         io.Writer
	namespace string
	now       func() time.Time
	order     []metricKey
	series    map[metricKey]*series
}

// New returns a Recorder writing to w in namespace.
func New(w io.Writer, namespace string) *Recorder {
	return &Recorder{w: w, namespace: namespace, now: time.Now, series: map[metricKey]*series{}}
}

// WithClock sets the clock used for Timestamp (tests).
func (r *Recorder) WithClock(now func() time.Time) *Recorder { r.now = now; return r }

// Add records one value of a metric with optional dimensions (name/value pairs).
func (r *Recorder) Add(name, unit string, value float64, dims ...string) {
	d := map[string]string{}
	for i := 0; i+1 < len(dims); i += 2 {
		d[dims[i]] = dims[i+1]
	}
	k := metricKey{name: name, dims: canonical(d)}
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.series[k]
	if !ok {
		s = &series{unit: unit, dims: d}
		r.series[k] = s
		r.order = append(r.order, k)
	}
	s.values = append(s.values, value)
}

func canonical(d map[string]string) string {
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k + "=" + d[k] + "\x00")
	}
	return b.String()
}

type metricDef struct {
	Name string `json:"Name"`
	Unit string `json:"Unit"`
}

type directive struct {
	Namespace  string      `json:"Namespace"`
	Dimensions [][]string  `json:"Dimensions"`
	Metrics    []metricDef `json:"Metrics"`
}

// Flush writes what was recorded and resets the recorder. Metrics sharing the same
// dimension values go in one line; with no dimensioned metric (or all of them sharing
// their values) that is exactly one line per flush. Nothing recorded: nothing written.
func (r *Recorder) Flush() error {
	r.mu.Lock()
	order, all := r.order, r.series
	r.order, r.series = nil, map[metricKey]*series{}
	r.mu.Unlock()
	ts := r.now().UnixMilli()
	for _, g := range groupByDimensions(order, all) {
		line, err := json.Marshal(r.document(g, all, ts))
		if err != nil {
			return err
		}
		r.mu.Lock()
		_, err = r.w.Write(append(line, '\n'))
		r.mu.Unlock()
		if err != nil {
			return err
		}
	}
	return nil
}

// group is the metrics of one EMF line: those with the same dimension values.
type group struct {
	dims map[string]string
	keys []metricKey
}

// groupByDimensions groups keys by dimension values, in the order first recorded.
// Undimensioned metrics ride in the first line, beside the first dimensioned group, under
// their own directive with an empty dimension set — unless a metric is recorded both in
// all and by a dimension (an alarmed total beside its breakdown): one name holds one
// value per line.
func groupByDimensions(order []metricKey, all map[metricKey]*series) []*group {
	var groups []*group
	byDims := map[string]*group{}
	for _, k := range order {
		g, ok := byDims[k.dims]
		if !ok {
			g = &group{dims: all[k].dims}
			byDims[k.dims] = g
			groups = append(groups, g)
		}
		g.keys = append(g.keys, k)
	}
	if len(groups) > 1 && len(groups[0].dims) == 0 && !sharesName(groups[0].keys, groups[1].keys) {
		groups[1].keys = append(groups[0].keys, groups[1].keys...)
		groups = groups[1:]
	}
	return groups
}

// document is one group's EMF document: the values, the dimensions, the directives.
func (r *Recorder) document(g *group, all map[metricKey]*series, ts int64) map[string]any {
	doc := map[string]any{}
	var plain, dimmed []metricDef
	for _, k := range g.keys {
		s := all[k]
		v := s.values
		if len(v) > MaxValues {
			v = v[:MaxValues]
		}
		if len(v) == 1 {
			doc[k.name] = v[0]
		} else {
			doc[k.name] = v
		}
		def := metricDef{Name: k.name, Unit: s.unit}
		if len(s.dims) == 0 {
			plain = append(plain, def)
		} else {
			dimmed = append(dimmed, def)
		}
	}
	var dirs []directive
	if len(plain) > 0 {
		dirs = append(dirs, directive{Namespace: r.namespace, Dimensions: [][]string{{}}, Metrics: plain})
	}
	if len(dimmed) > 0 {
		names := make([]string, 0, len(g.dims))
		for k, v := range g.dims {
			names = append(names, k)
			doc[k] = v
		}
		sort.Strings(names)
		dirs = append(dirs, directive{Namespace: r.namespace, Dimensions: [][]string{names}, Metrics: dimmed})
	}
	doc["_aws"] = map[string]any{"Timestamp": ts, "CloudWatchMetrics": dirs}
	return doc
}

func sharesName(a, b []metricKey) bool {
	for _, x := range a {
		for _, y := range b {
			if x.name == y.name {
				return true
			}
		}
	}
	return false
}
