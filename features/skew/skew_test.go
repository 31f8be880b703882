package skew_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
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

// WriteFixture writes a training set "ts1" of user_ctr (float), item_pop
// (float) and emb (vector[2]), and PredictionEvents serving user_ctr and emb
// as trained but item_pop shifted by +5, in [from, from+2h).
func writeFixture(t *testing.T, st *objstore.Store, from time.Time) {
	t.Helper()
	ctx := t.Context()
	value := func(i, k int) float32 { return float32((i*7+k*3)%20) / 10 } // 0 … 1.9
	var rows []offline.Row
	for i := range 400 {
		rows = append(rows, offline.Row{
			EventID: fmt.Sprintf("e%d", i), EventTime: from.Add(-time.Hour), UserID: "u", ItemID: "i",
			Features: []float32{value(i, 0), value(i, 1), value(i, 2), 0},
		})
	}
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[offline.Row](&buf)
	if _, err := w.Write(rows); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(buf.Bytes())
	if _, err := st.Put(ctx, offline.Root+"ts1/part-00000.parquet", buf.Bytes(), objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	m := offline.Manifest{
		Format: 1, ID: "ts1", SchemaHash: "fs1:test", Width: 4, Rows: int64(len(rows)),
		Model: features.ModelSchema{SchemaHash: "fs1:test", Features: []features.RequiredFeature{
			{Name: "user_ctr", Entity: "user", Type: "float", Default: "0"},
			{Name: "item_pop", Entity: "item", Type: "float", Default: "0"},
			{Name: "emb", Entity: "user", Type: "vector[2]", Default: "[0,0]"},
		}},
		Files: []snapshot.File{{Name: "part-00000.parquet", Rows: int64(len(rows)), Bytes: int64(buf.Len()), SHA256: hex.EncodeToString(sum[:])}},
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Put(ctx, offline.ManifestKey("ts1"), b, objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}

	ew := eventlog.Writer{Store: st, Topic: events.TopicPredictions}
	for i := range 120 {
		p := &adaptrecv1.PredictionEvent{
			RequestId: fmt.Sprintf("r%d", i), UserId: "u", FeatureSchemaHash: "fs1:test",
			UserFeatureNames: []string{"user_ctr", "emb"},
			UserFeatures:     []float32{value(i, 0), value(i, 2), 0},
			ItemFeatureNames: []string{"item_pop"},
			Shadow:           i%10 == 9,
		}
		for k := range 5 {
			p.Items = append(p.Items, &adaptrecv1.ServedItem{ItemId: fmt.Sprint(k), Position: int32(k), Features: []float32{value(i*5+k, 1) + 5}})
		}
		at := from.Add(time.Duration(i) * time.Minute)
		if err := ew.Add(ctx, events.NewPrediction(fmt.Sprintf("p%03d", i), at, "test", p)); err != nil {
			t.Fatal(err)
		}
	}
	if err := ew.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestRunAgainstS3 compares a training set with archived PredictionEvents on
// real S3: the shifted item feature is flagged, the user features are not.
func TestRunAgainstS3(t *testing.T) {
	env := testenv.New(t, testenv.S3)
	st := testenv.Bucket(t, env.Config())
	from := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	writeFixture(t, st, from)

	r, err := skew.Run(t.Context(), st, skew.Options{
		TrainingSet: "ts1", From: from, To: from.Add(2 * time.Hour), MaxEvents: 50, MaxItemsPerEvent: 3,
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.Served.Events != 120 || r.Served.Shadow != 12 || r.Served.Sampled != 50 || r.Served.Items != 150 {
		t.Errorf("served summary %+v, want 120 events, 12 shadow, 50 sampled, 150 items", r.Served)
	}
	if r.TrainingRows != 400 || len(r.Features) != 4 {
		t.Fatalf("report of %d training rows and %d columns, want 400 and 4: %+v", r.TrainingRows, len(r.Features), r)
	}
	if r.Flagged != 1 || r.Features[0].Name != "item_pop" || !slices.Contains(r.Features[0].Reasons, skew.ReasonMeanShift) {
		t.Errorf("want only item_pop flagged, first: %+v", r.Features)
	}
	for _, f := range r.Features[1:] {
		if f.Flagged() || !f.Judged {
			t.Errorf("%s: %+v, want judged and unflagged", f.Name, f)
		}
	}
	if got := r.Features[0].Served.Mean - r.Features[0].Training.Mean; got < 4.5 || got > 5.5 {
		t.Errorf("item_pop served mean − training mean = %v, want about 5", got)
	}
	if _, err := json.Marshal(r); err != nil {
		t.Errorf("report does not encode as JSON: %v", err)
	}

	// The sample depends only on the events: a second run agrees.
	again, err := skew.Run(t.Context(), st, skew.Options{
		TrainingSet: "ts1", From: from, To: from.Add(2 * time.Hour), MaxEvents: 50, MaxItemsPerEvent: 3,
	})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(r)
	b, _ := json.Marshal(again)
	if !bytes.Equal(a, b) {
		t.Error("two runs over the same archive gave different reports")
	}

	if _, err := skew.Run(t.Context(), st, skew.Options{TrainingSet: "missing", From: from, To: from.Add(time.Hour)}); err == nil {
		t.Error("Run of a missing training set succeeded")
	}
}
