package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/adaptrec/adaptrec/eventlog"
	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/offline"
	"github.com/adaptrec/adaptrec/features/snapshot"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/objstore"
	"github.com/adaptrec/adaptrec/internal/testenv"
)

func TestFeaturesTrainingSetRejectsBadFlags(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	ok := featuresTrainingSetOptions{
		file: filepath.Join("..", "..", defaultFeaturesFile), from: "2026-11-20", to: "2026-11-21",
		attribution: 30 * time.Minute, lookback: 24 * time.Hour, rowsPerFile: 10, now: now,
	}
	for _, c := range []struct {
		edit func(*featuresTrainingSetOptions)
		want []string
	}{
		{func(o *featuresTrainingSetOptions) { o.from = "" }, []string{"--from is required"}},
		{func(o *featuresTrainingSetOptions) { o.to = "" }, []string{"--to is required"}},
		{func(o *featuresTrainingSetOptions) { o.from = "yesterday" }, []string{`--from "yesterday" is not an RFC 3339 time`}},
		{func(o *featuresTrainingSetOptions) { o.from, o.to = "2026-11-21", "2026-11-20" }, []string{"--from 2026-11-21T00:00:00Z is not before --to"}},
		{func(o *featuresTrainingSetOptions) { o.id = "a/b" }, []string{`--id "a/b"`}},
		{func(o *featuresTrainingSetOptions) { o.id = ".hidden" }, []string{`--id ".hidden"`}},
		{func(o *featuresTrainingSetOptions) { o.attribution = 0 }, []string{"--attribution 0s must be positive"}},
		{func(o *featuresTrainingSetOptions) { o.lag = -time.Hour }, []string{"--availability-lag -1h0m0s must not be negative"}},
		{func(o *featuresTrainingSetOptions) { o.lookback = 0 }, []string{"--state-lookback 0s must be positive"}},
		{func(o *featuresTrainingSetOptions) { o.rowsPerFile = 0 }, []string{"--rows-per-file 0 must be at least 1"}},
		{func(o *featuresTrainingSetOptions) { o.features = []string{"item_ctr_7d", "no_such_feature"} }, []string{"--features: ", "no_such_feature: not defined"}},
		{func(o *featuresTrainingSetOptions) { o.features = []string{"item_ctr_7d", ""} }, []string{"--features \"item_ctr_7d,\" names an empty feature"}},
		{func(o *featuresTrainingSetOptions) { o.file = "no/such/features.yaml" }, []string{"no/such/features.yaml"}},
		// Every bad flag is named at once.
		{func(o *featuresTrainingSetOptions) { o.to, o.id, o.rowsPerFile = "soon", "x y", -1 }, []string{`--to "soon"`, `--id "x y"`, "--rows-per-file -1"}},
	} {
		o := ok
		c.edit(&o)
		err := featuresTrainingSet(t.Context(), &bytes.Buffer{}, &bytes.Buffer{}, config.Config{}, o)
		for _, w := range c.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("featuresTrainingSet(%+v) = %v, want an error containing %q", o, err, w)
			}
		}
	}
	// Malformed durations are refused while parsing, naming the flag.
	for _, args := range [][]string{{"--attribution", "half an hour"}, {"--availability-lag", "2"}, {"--rows-per-file", "many"}} {
		root := NewRootCommand()
		root.SetOut(&bytes.Buffer{})
		root.SetErr(&bytes.Buffer{})
		root.SetArgs(append([]string{"features", "training-set", "--from", "-1d", "--to", "now"}, args...))
		if err := root.ExecuteContext(t.Context()); err == nil || !strings.Contains(err.Error(), args[0]) {
			t.Errorf("%v: %v", args, err)
		}
	}
}

func TestFeaturesPruneRejectsBadFlags(t *testing.T) {
	t.Parallel()
	err := featuresPrune(t.Context(), &bytes.Buffer{}, &bytes.Buffer{}, nil, featuresPruneOptions{keep: -1, minAge: -time.Hour})
	if err == nil || !strings.Contains(err.Error(), "--keep -1 must not be negative") || !strings.Contains(err.Error(), "--min-age -1h0m0s must not be negative") {
		t.Errorf("bad keep and min age: %v", err)
	}
}

// writeItemSnapshot stores an item_batch snapshot of the project's
// definitions in which every item holds the defaults but item_ctr_7d.
func writeItemSnapshot(t *testing.T, st *objstore.Store, fs *features.FeatureSet, asOf time.Time, ctr float64) string {
	t.Helper()
	names, _, _, _, err := snapshot.Layout(fs, "item_batch")
	if err != nil {
		t.Fatal(err)
	}
	var rows []snapshot.Row
	for i := range 7 {
		row := snapshot.Row{EntityID: fmt.Sprintf("i%d", i)}
		for _, n := range names {
			f, _ := fs.Lookup(n)
			v := snapshot.DefaultValues(f)
			if n == "item_ctr_7d" {
				v = []float64{ctr}
			}
			row.Values = append(row.Values, v...)
		}
		rows = append(rows, row)
	}
	m, err := snapshot.Write(t.Context(), st, fs, "item_batch", asOf, rows, snapshot.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return m.Version
}

// TestFeaturesTrainingSetAndPrune builds training sets from an archived
// day with the CLI, lists them, then prunes the item snapshots around them
// and rolls back, against real S3, Kafka and Redis.
func TestFeaturesTrainingSetAndPrune(t *testing.T) {
	env := testenv.New(t, testenv.S3, testenv.Kafka, testenv.Redis)
	cfg := env.Config()
	ctx := t.Context()
	store := testenv.EventLog(t, cfg)
	cfgYAML, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(t.TempDir(), "adaptrec.yaml")
	if err := os.WriteFile(cfgPath, cfgYAML, 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join("..", "..", defaultFeaturesFile)
	fs, err := features.Load(file)
	if err != nil {
		t.Fatal(err)
	}

	// One day of 100 impressions, every fourth clicked a minute later.
	day := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	w := &eventlog.Writer{Store: store, Topic: events.TopicInteractions}
	for i := range 100 {
		at := day.Add(time.Duration(i) * 10 * time.Minute)
		ev := func(id string, at time.Time, a adaptrecv1.Action) *adaptrecv1.Event {
			return events.NewInteraction(id, at, "test", &adaptrecv1.UserInteractionEvent{
				UserId: fmt.Sprintf("u%d", i%5), ItemId: fmt.Sprintf("i%d", i%7), Action: a, Position: int32(i % 3),
				SessionId: fmt.Sprintf("s%d", i/10), Surface: "home", Device: adaptrecv1.Device_DEVICE_MOBILE, TimeZone: "Europe/Paris",
			})
		}
		if err := w.Add(ctx, ev(fmt.Sprintf("imp%03d", i), at, adaptrecv1.Action_ACTION_IMPRESSION)); err != nil {
			t.Fatal(err)
		}
		if i%4 == 0 {
			if err := w.Add(ctx, ev(fmt.Sprintf("clk%03d", i), at.Add(time.Minute), adaptrecv1.Action_ACTION_CLICK)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// Item snapshots: v[1] is the one the day's examples read; v[2] and
	// v[3] came later and are previous and current; v[4] is newer still.
	v := make([]string, 5)
	for i, at := range []time.Time{day.Add(-48 * time.Hour), day.Add(-24 * time.Hour), day.Add(48 * time.Hour), day.Add(72 * time.Hour), day.Add(96 * time.Hour)} {
		v[i] = writeItemSnapshot(t, store, fs, at, 0.1*float64(i+1))
	}
	for _, ver := range v[2:4] {
		if _, err := snapshot.Flip(ctx, store, "item_batch", ver); err != nil {
			t.Fatal(err)
		}
	}

	// A build that never finished (S3 times are whole seconds: it is
	// older than the training sets built next).
	if _, err := store.Put(ctx, offline.Root+"broken/part-00000.parquet", []byte("partial"), objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}

	out, err := runCLI(t, ctx, cfgPath, "features", "training-set", "--file", file, "--from", "2026-11-20", "--to", "2026-11-21", "--id", "ts-a")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("adaptrec features training-set:\n%s", out)
	for _, re := range []string{
		`^training set ts-a: 100 rows, 25 positives \(25\.00%\), 0 watched, 0 purchased; 125 events read in \d`,
		`\nlocation:    s3://` + regexp.QuoteMeta(cfg.S3.Bucket) + `/.*training/ts-a/ \(1 Parquet part, \d+ bytes, manifest\.json\)\n`,
		`\nexamples:    impressions in \[2026-11-20T00:00:00Z, 2026-11-21T00:00:00Z\), clicked within 30m0s, snapshots available 0s after their cutoff\n`,
		`\nschema hash: ` + regexp.QuoteMeta(fs.SchemaHash()) + `\n`,
		`\nitem_batch\s+` + v[1] + `\s+2026-11-20T00:00:00Z\s+2026-11-20T16:30:00Z\s+100\n`,
		`\nuser_batch\s+\(defaults: none yet\)\s+.*100\n`,
		`\n22 features hold their defaults in every row:\n(.*\n)*  group user_embedding has no snapshot: user_embedding\n(.*\n)*  input user_category_affinity: group user_batch has no snapshot: ui_category_affinity\n`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("output lacks %s", re)
		}
	}
	if _, err := runCLI(t, ctx, cfgPath, "features", "training-set", "--file", file, "--from", "2026-11-20", "--to", "2026-11-21", "--id", "ts-a"); err == nil ||
		!strings.Contains(err.Error(), "--id ts-a: training set s3://") || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("an existing id: %v", err)
	}
	m, err := offline.ReadManifest(ctx, store, "ts-a")
	if err != nil {
		t.Fatal(err)
	}
	if rows, err := offline.ReadRows(ctx, store, m); err != nil || len(rows) != 100 {
		t.Errorf("the training set holds %d rows, %v", len(rows), err)
	}

	// --json, with a chosen feature list and label window, generated id;
	// progress goes to stderr and stdout is one JSON line.
	var stdout, stderr bytes.Buffer
	o := featuresTrainingSetOptions{file: file, from: "2026-11-20T08:00:00Z", to: "2026-11-21", attribution: 30 * time.Second,
		lookback: 24 * time.Hour, rowsPerFile: 30, features: []string{"item_ctr_7d", "req_local_hour"}, asJSON: true,
		now: time.Date(2026, 11, 21, 0, 0, 10, 0, time.UTC)} // clicks may still come
	if err := featuresTrainingSet(ctx, &stdout, &stderr, cfg, o); err != nil {
		t.Fatal(err)
	}
	var s trainingSetSummary
	if lines := strings.Split(strings.TrimSpace(stdout.String()), "\n"); len(lines) != 1 {
		t.Errorf("--json printed %d lines:\n%s", len(lines), stdout.String())
	} else if err := json.Unmarshal([]byte(lines[0]), &s); err != nil {
		t.Fatal(err)
	}
	// 08:00 is example 48; no click is within 30 s of its impression.
	if s.Rows != 52 || s.Positives != 0 || s.Features != 2 || s.Width != 2 || s.Files != 2 || s.SchemaHash != fs.SchemaHash() ||
		s.Attribution != "30s" || !strings.HasSuffix(s.URI, "training/"+s.ID+"/") || !regexp.MustCompile(`^\d{8}T\d{6}Z-[0-9a-f]{8}$`).MatchString(s.ID) || s.DurationS <= 0 {
		t.Errorf("--json summary %+v", s)
	}
	if i := slices.IndexFunc(s.Snapshots, func(u offline.SnapshotUse) bool { return u.Version == v[1] }); i < 0 || s.Snapshots[i].Examples != 52 {
		t.Errorf("snapshot uses %+v", s.Snapshots)
	}
	if len(s.Warnings) != 1 || !strings.Contains(s.Warnings[0], "attribution window is after now") {
		t.Errorf("warnings %q", s.Warnings)
	}
	if !strings.Contains(stderr.String(), "warning: --to 2026-11-21T00:00:00Z plus the 30s attribution window is after now") ||
		!strings.Contains(stderr.String(), "training set: impressions in [2026-11-20T08:00:00Z, 2026-11-21T00:00:00Z)") ||
		!strings.Contains(stderr.String(), "examples, ") || !strings.Contains(stderr.String(), "writing the manifest") {
		t.Errorf("stderr:\n%s", stderr.String())
	}

	// ls: both, newest first, and the build that never finished.
	out, err = runCLI(t, ctx, cfgPath, "features", "training-set", "ls")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("adaptrec features training-set ls:\n%s", out)
	for _, re := range []string{
		`(?s)^ID .*\n` + s.ID + ` .*\nts-a .*\nbroken .*`,
		`\nts-a\s+\S+\s+2026-11-20T00:00:00Z\s+2026-11-21T00:00:00Z\s+100\s+25\s+\d+\s+\d+\s+` + regexp.QuoteMeta(fs.SchemaHash()) + `\s+complete\n`,
		`\nbroken\s+.*\s+7\s+-\s+incomplete \(no manifest\)\n`,
		`\n3 training sets \(1 without a readable manifest\) under s3://`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("ls output lacks %s", re)
		}
	}
	out, err = runCLI(t, ctx, cfgPath, "features", "training-set", "ls", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var ls struct {
		TrainingSets []trainingSetEntry `json:"training_sets"`
	}
	if err := json.Unmarshal([]byte(out), &ls); err != nil {
		t.Fatal(err)
	}
	if len(ls.TrainingSets) != 3 || ls.TrainingSets[1].ID != "ts-a" || ls.TrainingSets[1].Manifest == nil ||
		ls.TrainingSets[1].Manifest.Rows != 100 || ls.TrainingSets[2].Status != "incomplete" {
		t.Errorf("ls --json: %s", out)
	}

	// prune: everything was written moments ago, so the default minimum
	// age keeps it all.
	out, err = runCLI(t, ctx, cfgPath, "features", "prune", "--keep", "0")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "deleted 0 versions (0 objects, 0 bytes) of 1 group; the snapshots read by 3 training sets are protected") ||
		strings.Count(out, "younger than the minimum age 168h0m0s") != 2 {
		t.Errorf("prune with the default minimum age:\n%s", out)
	}
	before := listKeys(t, store, snapshot.Root)
	out, err = runCLI(t, ctx, cfgPath, "features", "prune", "--keep", "0", "--min-age", "0", "--dry-run")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("adaptrec features prune --keep 0 --min-age 0 --dry-run:\n%s", out)
	wantLines := []string{
		`item_batch\s+` + v[0] + `\s+complete\s+\S+\s+2\s+\d+\s+would delete\s+not protected \(keep 0\)`,
		`item_batch\s+` + v[1] + `\s+complete\s+\S+\s+2\s+\d+\s+keep\s+read by training sets (ts-a, \S+|\S+, ts-a)`,
		`item_batch\s+` + v[2] + `\s+complete\s+\S+\s+2\s+\d+\s+keep\s+previous \(rollback target\)`,
		`item_batch\s+` + v[3] + `\s+complete\s+\S+\s+2\s+\d+\s+keep\s+current`,
		`item_batch\s+` + v[4] + `\s+complete\s+\S+\s+2\s+\d+\s+would delete\s+not protected \(keep 0\)`,
		`dry run: would delete 2 versions \(4 objects, \d+ bytes\) of 1 group;`,
	}
	for _, re := range wantLines {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("dry run output lacks %s", re)
		}
	}
	if after := listKeys(t, store, snapshot.Root); !slices.Equal(after, before) {
		t.Errorf("the dry run deleted %v", slices.DeleteFunc(before, func(k string) bool { return slices.Contains(after, k) }))
	}
	if _, err := runCLI(t, ctx, cfgPath, "features", "prune", "--group", "shop_batch"); err == nil ||
		!strings.Contains(err.Error(), `--group "shop_batch": no such group has snapshots under s3://`) || !strings.Contains(err.Error(), "(groups with snapshots: item_batch)") {
		t.Errorf("unknown group: %v", err)
	}

	// keep 1, for real: v[4] is the newest, v[1] is read by the training
	// sets; only v[0] goes.
	out, err = runCLI(t, ctx, cfgPath, "features", "prune", "--group", "item_batch", "--keep", "1", "--min-age", "0", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var res featuresPruneResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	if res.Deleted != 1 || res.DryRun || len(res.Groups) != 1 || res.Groups[0].Current != v[3] || res.Groups[0].Previous != v[2] || res.TrainingSets != 3 {
		t.Errorf("prune --keep 1 --json: %s", out)
	}
	if got := historyOf(t, store); !slices.Equal(got, v[1:]) {
		t.Errorf("history after --keep 1: %v, want %v", got, v[1:])
	}
	// keep 0: v[4] goes too; the pointer's two and the training sets' one
	// stay.
	if out, err = runCLI(t, ctx, cfgPath, "features", "prune", "--keep", "0", "--min-age", "0"); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`item_batch\s+`+v[4]+`\s+complete\s+\S+\s+2\s+\d+\s+delete\s+`).MatchString(out) ||
		!strings.Contains(out, "deleted 1 version (2 objects, ") {
		t.Errorf("prune --keep 0:\n%s", out)
	}
	if got := historyOf(t, store); !slices.Equal(got, v[1:4]) {
		t.Errorf("history after --keep 0: %v, want %v", got, v[1:4])
	}
	if left := listKeys(t, store, snapshot.VersionPrefix("item_batch", v[4])); len(left) != 0 {
		t.Errorf("%s left %v", v[4], left)
	}

	// The rollback target survived: roll back and read it.
	out, err = runCLI(t, ctx, cfgPath, "features", "rollback", "--file", file, "--group", "item_batch")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "item_batch: rolled back from "+v[3]+" to "+v[2]) {
		t.Errorf("rollback output %q", out)
	}
	s2, err := snapshot.OpenCurrent(ctx, store, "item_batch")
	if err != nil || s2.Manifest().Version != v[2] {
		t.Fatalf("open current after rollback: %v", err)
	}
	if rows, err := s2.ReadAll(ctx); err != nil || len(rows) != 7 {
		t.Errorf("read current after rollback: %d rows, %v", len(rows), err)
	}
	// The training sets still read.
	if _, err := runCLI(t, ctx, cfgPath, "features", "training-set", "ls"); err != nil {
		t.Error(err)
	}
}

func listKeys(t *testing.T, st *objstore.Store, prefix string) []string {
	t.Helper()
	var out []string
	for info, err := range st.List(t.Context(), prefix, objstore.ListOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, info.Key)
	}
	return out
}

func historyOf(t *testing.T, st *objstore.Store) []string {
	t.Helper()
	hist, err := snapshot.History(t.Context(), st, "item_batch")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range hist {
		out = append(out, m.Version)
	}
	return out
}
