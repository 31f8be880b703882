package cli

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/adaptrec/adaptrec/eventlog"
	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/offline"
	"github.com/adaptrec/adaptrec/features/skew"
	"github.com/adaptrec/adaptrec/features/snapshot"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/objstore"
	"github.com/adaptrec/adaptrec/internal/testenv"
)

func TestFeaturesSkewRejectsBadArguments(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	ok := featuresSkewOptions{trainingSet: "ts", from: "-1d", to: "now", now: now,
		opt: skew.Options{MaxEvents: 10, MaxItemsPerEvent: 2, Thresholds: skew.Thresholds{MinServed: 1}}}
	for _, c := range []struct {
		edit func(*featuresSkewOptions)
		want string
	}{
		{func(o *featuresSkewOptions) { o.trainingSet = "" }, "--training-set is required"},
		{func(o *featuresSkewOptions) { o.from = "yesterday" }, `"yesterday"`},
		{func(o *featuresSkewOptions) { o.from, o.to = "now", "-1h" }, "is not before --to"},
		{func(o *featuresSkewOptions) { o.opt.MaxEvents = 0 }, "--max-events 0"},
		{func(o *featuresSkewOptions) { o.opt.Thresholds.MinServed = -2 }, "--min-served -2"},
	} {
		o := ok
		c.edit(&o)
		err := featuresSkew(t.Context(), &bytes.Buffer{}, nil, o)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("featuresSkew(%+v) = %v, want an error containing %q", o, err, c.want)
		}
	}
}

// TestFeaturesSkew runs the command's logic against real S3: a training set
// of two features, predictions serving one of them shifted.
func TestFeaturesSkew(t *testing.T) {
	env := testenv.New(t, testenv.S3)
	st := testenv.Bucket(t, env.Config())
	ctx := t.Context()
	from := time.Date(2026, 11, 21, 8, 0, 0, 0, time.UTC)

	var rows []offline.Row
	for i := range 200 {
		rows = append(rows, offline.Row{EventID: fmt.Sprint(i), EventTime: from, Features: []float32{float32(i % 10), float32(i % 7)}})
	}
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[offline.Row](&buf)
	if _, err := w.Write(rows); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Put(ctx, offline.Root+"skew-cli/part-00000.parquet", buf.Bytes(), objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(buf.Bytes())
	m := offline.Manifest{Format: 1, ID: "skew-cli", Width: 2, Rows: 200,
		Model: features.ModelSchema{Features: []features.RequiredFeature{
			{Name: "user_a", Entity: "user", Type: "float", Default: "0"},
			{Name: "item_b", Entity: "item", Type: "float", Default: "0"},
		}},
		Files: []snapshot.File{{Name: "part-00000.parquet", Rows: 200, Bytes: int64(buf.Len()), SHA256: hex.EncodeToString(sum[:])}}}
	mb, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Put(ctx, offline.ManifestKey("skew-cli"), mb, objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	ew := eventlog.Writer{Store: st, Topic: events.TopicPredictions}
	for i := range 60 {
		p := &adaptrecv1.PredictionEvent{UserFeatureNames: []string{"user_a"}, UserFeatures: []float32{float32(i % 10)},
			ItemFeatureNames: []string{"item_b"}}
		for k := range 3 {
			p.Items = append(p.Items, &adaptrecv1.ServedItem{Features: []float32{float32((i+k)%7) + 20}})
		}
		if err := ew.Add(ctx, events.NewPrediction(fmt.Sprintf("p%d", i), from.Add(time.Duration(i)*time.Minute), "test", p)); err != nil {
			t.Fatal(err)
		}
	}
	if err := ew.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	o := featuresSkewOptions{trainingSet: "skew-cli", from: from.Format(time.RFC3339), to: from.Add(2 * time.Hour).Format(time.RFC3339),
		opt: skew.Options{MaxEvents: 1000, MaxItemsPerEvent: 10, Thresholds: skew.Thresholds{MinServed: skew.DefaultMinServed}}, now: from.Add(3 * time.Hour)}
	var out bytes.Buffer
	if err := featuresSkew(ctx, &out, st, o); err != nil {
		t.Fatalf("skew without --fail-on-skew: %v", err)
	}
	table := out.String()
	lines := strings.Split(table, "\n")
	if !strings.Contains(table, "1 of 2 columns flagged") || !strings.Contains(table, "60 predictions") {
		t.Errorf("table header:\n%s", table)
	}
	var itemLine, userLine string
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "item_b "):
			itemLine = l
		case strings.HasPrefix(l, "user_a "):
			userLine = l
		}
	}
	if !strings.Contains(itemLine, "mean_shift,psi") || strings.Contains(userLine, "mean_shift") || userLine == "" {
		t.Errorf("want item_b flagged and user_a not:\n%s", table)
	}

	out.Reset()
	o.json = true
	if err := featuresSkew(ctx, &out, st, o); err != nil {
		t.Fatal(err)
	}
	var r skew.Report
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("--json output does not decode: %v\n%s", err, out.String())
	}
	if r.Flagged != 1 || r.Features[0].Name != "item_b" || r.Served.Items != 180 {
		t.Errorf("--json report: %+v", r)
	}

	o.failOnSkew = true
	if err := featuresSkew(ctx, &out, st, o); !errors.Is(err, errSkewFound) {
		t.Errorf("--fail-on-skew with a flagged feature: %v, want errSkewFound", err)
	}
}
