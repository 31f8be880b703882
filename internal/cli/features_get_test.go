package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/online"
	"github.com/adaptrec/adaptrec/features/snapshot"
	"github.com/adaptrec/adaptrec/internal/objstore"
	"github.com/adaptrec/adaptrec/internal/testenv"
)

// TestFeaturesGet publishes snapshots of the project's definitions, loads
// the users into Redis and writes nearline values, then reads them back
// with `features get`, as JSON and as a table, and again with Redis down.
func TestFeaturesGet(t *testing.T) {
	env := testenv.NewWithOptions(t, testenv.Options{Components: []testenv.Component{testenv.Redis, testenv.S3}})
	cfg := env.Config()
	ctx := t.Context()
	file := filepath.Join("..", "..", defaultFeaturesFile)
	fs, err := features.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	st, err := objstore.New(ctx, cfg.S3)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.EnsureBucket(ctx); err != nil {
		t.Fatal(err)
	}
	rdb := online.NewClient(cfg.Redis)
	t.Cleanup(func() { rdb.Close() })
	snaps := online.ObjectSnapshots{Store: st}
	now := time.Now().UTC()
	asOf := now.Add(-3 * time.Hour).Truncate(time.Second)

	// One row per entity: defaults, except the feature set to 0.5 or 7.
	row := func(group, id, feature string, v float64) snapshot.Row {
		names, _, _, maps, err := snapshot.Layout(fs, group)
		if err != nil {
			t.Fatal(err)
		}
		r := snapshot.Row{EntityID: id, Maps: make([]map[string]float64, len(maps))}
		for _, name := range names {
			f, _ := fs.Lookup(name)
			if name == feature {
				r.Values = append(r.Values, v)
				continue
			}
			r.Values = append(r.Values, snapshot.DefaultValues(f)...)
		}
		return r
	}
	publish := func(group string, rows ...snapshot.Row) string {
		m, err := snapshot.Write(ctx, st, fs, group, asOf, rows, snapshot.WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := online.Preloader(rdb, fs, snaps, online.LoadOptions{})(ctx, group, m.Version); err != nil {
			t.Fatal(err)
		}
		if _, err := snapshot.Flip(ctx, st, group, m.Version); err != nil {
			t.Fatal(err)
		}
		return m.Version
	}
	userVersion := publish("user_batch", row("user_batch", "u1", "user_ctr_30d", 0.5))
	itemVersion := publish("item_batch", row("item_batch", "i1", "item_clicks_7d", 7), row("item_batch", "i2", "item_clicks_7d", 1))
	pairVersion := publish("user_item_batch", row("user_item_batch", snapshot.PairID("u1", "i1"), "ui_clicked_30d", 1),
		row("user_item_batch", snapshot.PairID("u2", "i2"), "ui_clicked_30d", 1))
	w, err := online.NewWriter(rdb, fs, online.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteUserNearline(ctx, "u1", online.NearlineValue{Feature: "user_clicks_1h", Value: features.Value{Int: 4}, At: now.Add(-10 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteItemNearline(ctx, "i1", online.NearlineValue{Feature: "item_clicks_1h", Value: features.Value{Int: 9}, At: now.Add(-10 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if err := w.WritePairsNearline(ctx, []online.PairUpdate{{User: "u1", Values: []online.PairValues{{
		Feature: "ui_impressions_1h", Items: []string{"i2"}, Values: []features.Value{{Int: 3}}, At: now.Add(-5 * time.Second)}}}}); err != nil {
		t.Fatal(err)
	}

	cfgYAML, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(t.TempDir(), "adaptrec.yaml")
	if err := os.WriteFile(cfgPath, cfgYAML, 0o600); err != nil {
		t.Fatal(err)
	}
	get := func(args ...string) featuresGetReport {
		t.Helper()
		out, err := runCLI(t, ctx, cfgPath, append([]string{"features", "get", "--file", file, "--json"}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		var rep featuresGetReport
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("output is not JSON: %v\n%s", err, out)
		}
		return rep
	}
	find := func(rep featuresGetReport, id, feature string) featureGetValue {
		t.Helper()
		for _, v := range rep.Values {
			if v.ID == id && v.Feature == feature {
				return v
			}
		}
		t.Fatalf("no value of %s for %q", feature, id)
		return featureGetValue{}
	}

	rep := get("--user", "u1", "--items", "i1,i2,nope")
	if rep.Degraded || rep.Versions["user_batch"] != userVersion || rep.Versions["item_batch"] != itemVersion ||
		rep.Versions["user_item_batch"] != pairVersion || rep.UnknownItems != 1 {
		t.Fatalf("report: degraded %v, versions %v, unknown items %d", rep.Degraded, rep.Versions, rep.UnknownItems)
	}
	checks := []struct {
		id, feature string
		value       any
		lane        string
		fallback    bool
	}{
		{"u1", "user_ctr_30d", 0.5, "batch", false},
		{"u1", "user_clicks_1h", 4.0, "nearline", false},
		{"u1", "user_purchases_1h", 0.0, "default", true},
		{"i1", "item_clicks_7d", 7.0, "batch", false},
		// Ten minutes old: past the 1m SLA, within the 2h ttl, no twin.
		{"i1", "item_clicks_1h", 9.0, "nearline", true},
		{"i2", "item_clicks_1h", 0.0, "default", true},
		{"nope", "item_clicks_7d", 0.0, "default", true},
		// User×item values are listed under their item, for the user asked.
		{"i1", "ui_clicked_30d", 1.0, "batch", false},
		{"i2", "ui_clicked_30d", 0.0, "default", true}, // u2's pair, not u1's
		{"i2", "ui_impressions_1h", 3.0, "nearline", false},
		{"i1", "ui_impressions_1h", 0.0, "default", true},
	}
	for _, c := range checks {
		v := find(rep, c.id, c.feature)
		if v.Value != c.value || v.Lane != c.lane || (v.Fallback != "") != c.fallback {
			t.Errorf("%s/%s = %v via %s (fallback %q), want %v via %s (fallback %v)", c.id, c.feature, v.Value, v.Lane, v.Fallback, c.value, c.lane, c.fallback)
		}
	}
	if v := find(rep, "i1", "item_clicks_1h"); v.Source != online.SourceNearlineLate.String() || v.UpdatedAt == nil {
		t.Errorf("i1/item_clicks_1h: %+v", v)
	}
	if v := find(rep, "u1", "user_ctr_30d"); v.Version != userVersion || v.UpdatedAt == nil || !v.UpdatedAt.Equal(asOf) {
		t.Errorf("u1/user_ctr_30d: version %s updated %v, want %s at %s", v.Version, v.UpdatedAt, userVersion, asOf)
	}
	if v := find(rep, "i1", "ui_clicked_30d"); v.Entity != "user_item" || v.Version != pairVersion {
		t.Errorf("i1/ui_clicked_30d: %+v", v)
	}

	// The table says the same.
	out, err := runCLI(t, ctx, cfgPath, "features", "get", "--file", file, "--user", "u1", "--items", "i1")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ENTITY", "FALLBACK", "user_ctr_30d", "0.5", "batch", itemVersion, "GROUP", "item_nearline"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}

	// Redis down: the user's features show defaults and the report says why.
	env.StopComponent(testenv.Redis)
	rep = get("--user", "u1", "--timeout", "200ms")
	if !rep.Degraded {
		t.Error("not degraded with Redis down")
	}
	if v := find(rep, "u1", "user_ctr_30d"); v.Value != 0.03 || v.Source != online.SourceDefaultUnavailable.String() {
		t.Errorf("u1/user_ctr_30d with Redis down: %+v", v)
	}
}

func TestFeaturesGetNeedsUser(t *testing.T) {
	t.Parallel()
	_, err := runFeatures(t, "get")
	if err == nil || !strings.Contains(err.Error(), "--user is required") {
		t.Fatalf("features get without --user: %v", err)
	}
}
