package batch_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/features/batch"
	"github.com/adaptrec/adaptrec/features/snapshot"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/testenv"
)

// snapshotEvents reads every FeatureSnapshotEvent on the topic.
func snapshotEvents(t *testing.T, cfg config.Config) []*adaptrecv1.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var out []*adaptrecv1.Event
	for p := range cfg.Kafka.Partitions {
		conn, err := kafka.DialLeader(ctx, "tcp", cfg.Kafka.Brokers[0], events.TopicFeatureSnapshots, p)
		if err != nil {
			t.Fatal(err)
		}
		first, last, err := conn.ReadOffsets()
		conn.Close()
		if err != nil {
			t.Fatal(err)
		}
		if last <= first {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: cfg.Kafka.Brokers, Topic: events.TopicFeatureSnapshots, Partition: p, MaxWait: 100 * time.Millisecond})
		if err := r.SetOffset(first); err != nil {
			t.Fatal(err)
		}
		for {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				r.Close()
				t.Fatalf("read partition %d: %v", p, err)
			}
			var e adaptrecv1.Event
			if err := proto.Unmarshal(m.Value, &e); err != nil {
				t.Fatal(err)
			}
			if string(m.Key) != e.GetFeatureSnapshot().GetFeatureView() {
				t.Errorf("event keyed %q for feature view %q", m.Key, e.GetFeatureSnapshot().GetFeatureView())
			}
			out = append(out, &e)
			if m.Offset >= last-1 {
				break
			}
		}
		r.Close()
	}
	slices.SortFunc(out, func(a, b *adaptrecv1.Event) int {
		return a.GetEnvelope().GetEventTime().AsTime().Compare(b.GetEnvelope().GetEventTime().AsTime())
	})
	return out
}

func TestMaterialize(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Kafka, testenv.S3)
	cfg := env.Config()
	st := testenv.EventLog(t, cfg)
	ctx := t.Context()
	archive(t, st, plantedEvents()...)
	producer, err := events.NewProducer(cfg.Kafka, events.ProducerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { producer.Close() })
	var preloaded []string
	job := &batch.Job{Store: st, Features: projectFeatures(t), Events: producer, Logf: t.Logf,
		Preload: func(ctx context.Context, group, version string) error {
			if _, err := snapshot.ReadManifest(ctx, st, group, version); err != nil {
				return err
			}
			if cur, _ := snapshot.Current(ctx, st, group); cur.Version == version {
				t.Errorf("preload of %s/%s after it became current", group, version)
			}
			preloaded = append(preloaded, group+"/"+version)
			return nil
		},
	}

	// First run: every group becomes current.
	rep, err := job.Materialize(ctx, batch.Request{AsOf: asOf})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Events != 11 || len(rep.Groups) != 3 {
		t.Fatalf("report: %d events, %d groups", rep.Events, len(rep.Groups))
	}
	first := map[string]string{}
	for _, g := range rep.Groups {
		if g.Outcome != "current" || g.Pointer.Version != g.Version || g.Pointer.Previous != "" || g.ComparedWith != "" {
			t.Errorf("%s: outcome %s pointer %+v compared with %q", g.Group, g.Outcome, g.Pointer, g.ComparedWith)
		}
		first[g.Group] = g.Version
	}
	_, rows, err := snapshot.Read(ctx, st, "item_batch", first["item_batch"])
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].EntityID != "i1" {
		t.Errorf("item_batch rows %v", rows)
	}
	m, err := snapshot.ReadManifest(ctx, st, "item_batch", first["item_batch"])
	if err != nil {
		t.Fatal(err)
	}
	if m.Stats["item_embedding"].NotComputed != "" {
		t.Error("item_embedding is its own group; item_batch must not hold it")
	}
	if !strings.Contains(m.Stats["item_category_id"].NotComputed, "catalogue") {
		t.Errorf("item_category_id: %+v", m.Stats["item_category_id"])
	}

	// A rerun with the same data and cutoff is the same snapshot: nothing
	// moves, and the events are published again with the same ids.
	rep2, err := job.Materialize(ctx, batch.Request{AsOf: asOf, Groups: []string{"item_batch"}})
	if err != nil {
		t.Fatal(err)
	}
	if g := rep2.Groups[0]; g.Version != first["item_batch"] || g.Pointer.Previous != "" {
		t.Errorf("rerun: %+v", g)
	}

	// A backfill (earlier cutoff) stays history: serving keeps the newer one.
	rep3, err := job.Materialize(ctx, batch.Request{AsOf: asOf.Add(-time.Hour), Groups: []string{"item_batch"}})
	if err != nil {
		t.Fatal(err)
	}
	if g := rep3.Groups[0]; g.Outcome != "history" || g.Base != first["item_batch"] {
		t.Errorf("backfill: %+v", g)
	}
	if cur, _ := snapshot.Current(ctx, st, "item_batch"); cur.Version != first["item_batch"] {
		t.Errorf("a backfill moved the pointer to %s", cur.Version)
	}
	hist, err := snapshot.History(ctx, st, "item_batch")
	if err != nil || len(hist) != 2 || hist[0].Version != rep3.Groups[0].Version || hist[1].Version != first["item_batch"] {
		t.Errorf("history %v, %v", hist, err)
	}

	// Forty days later nothing happened: every item and pair left the
	// window. Those snapshots fail validation and their pointers stay;
	// the users (kept for a year for their tenure) move on.
	later := asOf.Add(40 * 24 * time.Hour)
	rep4, err := job.Materialize(ctx, batch.Request{AsOf: later})
	var ve *batch.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("want a validation error, got %v", err)
	}
	for _, want := range []string{
		"snapshot item_batch/" + later.Format("20060102T150405Z"),
		"rows: 0 rows, previous snapshot " + first["item_batch"] + " had 2 (more than 50% fewer)",
		"rows: 0 rows, previous snapshot " + first["user_item_batch"] + " had 4",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	for _, g := range rep4.Groups {
		cur, err := snapshot.Current(ctx, st, g.Group)
		if err != nil {
			t.Fatal(err)
		}
		switch g.Group {
		case "user_batch":
			if g.Outcome != "current" || cur.Version != g.Version || cur.Previous != first["user_batch"] {
				t.Errorf("user_batch: outcome %s, pointer %+v", g.Outcome, cur)
			}
		default:
			if g.Outcome != "rejected" || cur.Version != first[g.Group] {
				t.Errorf("%s: outcome %s, pointer %+v (want it left at %s)", g.Group, g.Outcome, cur, first[g.Group])
			}
			if why, err := snapshot.Rejection(ctx, st, g.Group, g.Version); err != nil || !strings.Contains(why, "rows: 0 rows") {
				t.Errorf("%s: rejection %q, %v", g.Group, why, err)
			}
		}
	}

	// The operator knows nothing happened for forty days: with the row
	// check off, the same (content-addressed) item snapshot passes and
	// becomes current.
	job.Validation = batch.ValidationOptions{MaxRowDrop: -1}
	rep5, err := job.Materialize(ctx, batch.Request{AsOf: later, Groups: []string{"item_batch"}})
	if err != nil {
		t.Fatalf("relaxed rerun: %v", err)
	}
	if g := rep5.Groups[0]; g.Version != rep4.Groups[1].Version || g.Outcome != "current" {
		t.Errorf("relaxed rerun: %+v (rejected version was %s)", g, rep4.Groups[1].Version)
	}
	if why, err := snapshot.Rejection(ctx, st, "item_batch", rep5.Groups[0].Version); why != "" || err != nil {
		t.Errorf("rejection kept after a passing validation: %q %v", why, err)
	}
	if p, err := job.Rollback(ctx, "item_batch"); err != nil || p.Version != first["item_batch"] {
		t.Fatalf("item_batch rollback: %+v, %v", p, err)
	}

	// Roll user_batch back to the first snapshot.
	p, err := job.Rollback(ctx, "user_batch")
	if err != nil {
		t.Fatal(err)
	}
	if p.Version != first["user_batch"] || !p.RolledBack {
		t.Errorf("rollback: %+v", p)
	}
	wantPreloads := []string{
		"user_batch/" + first["user_batch"], "item_batch/" + first["item_batch"], "user_item_batch/" + first["user_item_batch"],
		"user_batch/" + rep4.Groups[0].Version, "item_batch/" + rep5.Groups[0].Version,
		"item_batch/" + first["item_batch"], "user_batch/" + first["user_batch"],
	}
	if !slices.Equal(preloaded, wantPreloads) {
		t.Errorf("preloaded %v, want %v", preloaded, wantPreloads)
	}

	// A snapshot serving cannot be prepared for does not become current.
	job.Preload = func(ctx context.Context, group, version string) error { return errors.New("redis unreachable") }
	_, err = job.Materialize(ctx, batch.Request{AsOf: asOf.Add(time.Hour), Groups: []string{"item_batch"}})
	if err == nil || !strings.Contains(err.Error(), "(the pointer did not move): redis unreachable") {
		t.Errorf("failing preload: %v", err)
	}
	if cur, _ := snapshot.Current(ctx, st, "item_batch"); cur.Version != first["item_batch"] {
		t.Errorf("a failed preload moved the pointer to %s", cur.Version)
	}

	rowsOf := map[string]int64{}
	for _, r := range []batch.Report{rep, rep4, rep5} {
		for _, g := range r.Groups {
			rowsOf[g.Version] = g.Rows
		}
	}
	evs := snapshotEvents(t, cfg)
	type seen struct {
		id, view, version, previous string
		rolledBack                  bool
	}
	var got []seen
	for _, e := range evs {
		fs := e.GetFeatureSnapshot()
		got = append(got, seen{e.GetEnvelope().GetEventId(), fs.GetFeatureView(), fs.GetSnapshotVersion(), fs.GetPreviousVersion(), fs.GetRolledBack()})
		if err := events.Validate(e, time.Now()); err != nil {
			t.Errorf("invalid event: %v", err)
		}
		if fs.GetSchemaHash() != job.Features.SchemaHash() || !strings.HasPrefix(fs.GetUri(), "s3://") || fs.GetRowCount() != rowsOf[fs.GetSnapshotVersion()] {
			t.Errorf("event %+v", fs)
		}
	}
	want := []seen{
		{"feature-snapshot:user_batch:" + first["user_batch"], "user_batch", first["user_batch"], "", false},
		{"feature-snapshot:item_batch:" + first["item_batch"], "item_batch", first["item_batch"], "", false},
		{"feature-snapshot:user_item_batch:" + first["user_item_batch"], "user_item_batch", first["user_item_batch"], "", false},
		{"feature-snapshot:item_batch:" + first["item_batch"], "item_batch", first["item_batch"], "", false},
		{"feature-snapshot:user_batch:" + rep4.Groups[0].Version, "user_batch", rep4.Groups[0].Version, first["user_batch"], false},
		{"feature-snapshot:item_batch:" + rep5.Groups[0].Version, "item_batch", rep5.Groups[0].Version, first["item_batch"], false},
	}
	if len(got) != len(want)+2 {
		t.Fatalf("events %+v", got)
	}
	for i, w := range want {
		// The rerun's event time is that of the unchanged pointer, so it
		// sorts with the first run's: compare as sets where times tie.
		if !slices.Contains(got, w) {
			t.Errorf("event %d %+v not published; got %+v", i, w, got)
		}
	}
	if r := got[len(got)-2]; r.view != "item_batch" || r.version != first["item_batch"] || r.previous != rep5.Groups[0].Version || !r.rolledBack {
		t.Errorf("item_batch rollback event %+v", r)
	}
	last := got[len(got)-1]
	if last.view != "user_batch" || last.version != first["user_batch"] || last.previous != rep4.Groups[0].Version || !last.rolledBack {
		t.Errorf("rollback event %+v", last)
	}
}
