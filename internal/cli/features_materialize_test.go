package cli

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"gopkg.in/yaml.v3"

	"github.com/adaptrec/adaptrec/eventlog"
	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/features/online"
	"github.com/adaptrec/adaptrec/features/snapshot"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/objstore"
	"github.com/adaptrec/adaptrec/internal/testenv"
)

// TestFeaturesMaterializeAndRollback runs materialize twice on a small
// archive and rolls one group back, against real Kafka and S3.
func TestFeaturesMaterializeAndRollback(t *testing.T) {
	env := testenv.New(t, testenv.Kafka, testenv.S3, testenv.Redis)
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
	// Two days of a few users seeing and clicking a few items.
	day := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	var rows []eventlog.Row
	for i := range 400 {
		at := day.Add(time.Duration(i) * 7 * time.Minute)
		a := adaptrecv1.Action_ACTION_IMPRESSION
		if i%5 == 0 {
			a = adaptrecv1.Action_ACTION_CLICK
		}
		e := events.NewInteraction(events.NewID(), at, "test", &adaptrecv1.UserInteractionEvent{
			UserId: "u" + string(rune('a'+i%7)), ItemId: "i" + string(rune('a'+i%11)), Action: a,
			SessionId: "s" + string(rune('a'+i/40)), Surface: "home", Device: adaptrecv1.Device_DEVICE_MOBILE,
		})
		b, err := proto.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, eventlog.NewRow(e, b, eventlog.Provenance{Topic: events.TopicInteractions, Offset: int64(i)}))
	}
	for i := 0; i < len(rows); {
		h := eventlog.HourOf(rows[i].EventTime)
		j := i
		for j < len(rows) && eventlog.HourOf(rows[j].EventTime).Equal(h) {
			j++
		}
		var enc eventlog.Encoder
		b, err := enc.Encode(rows[i:j])
		if err != nil {
			t.Fatal(err)
		}
		ref := eventlog.Ref{Topic: events.TopicInteractions, FirstOffset: int64(i), Hour: h}
		if _, err := store.Put(ctx, ref.Key(), b, objstore.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		i = j
	}
	file := filepath.Join("..", "..", defaultFeaturesFile)

	_, err = runCLI(t, ctx, cfgPath, "features", "materialize", "--file", file, "--groups", "item_embedding")
	if err == nil || !strings.Contains(err.Error(), "cannot materialize item_embedding: the batch job computes the groups user_batch, item_batch, user_item_batch") {
		t.Errorf("an embedding group: %v", err)
	}
	if _, err := runCLI(t, ctx, cfgPath, "features", "rollback", "--file", file, "--group", "item_batch"); !errors.Is(err, snapshot.ErrNotFound) {
		t.Errorf("rollback before any snapshot: %v", err)
	}

	out, err := runCLI(t, ctx, cfgPath, "features", "materialize", "--file", file, "--as-of", "2026-11-21")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("adaptrec features materialize:\n%s", out)
	for _, re := range []string{
		`as of 2026-11-21T00:00:00Z: 206 events read \(206 in the 30-day window\)`,
		`\nuser_batch\s+20261121T000000Z-[0-9a-f]{8}\s+7\s+current\s+-\s+3\n`,
		`\nitem_batch\s+20261121T000000Z-[0-9a-f]{8}\s+11\s+current\s+-\s+11\n`,
		`\nuser_item_batch\s+20261121T000000Z-[0-9a-f]{8}\s+\d+\s+current\s+-\s+2\n`,
		`item_batch: defaults kept for item_age_hours, item_category_ctr_7d, item_category_id, .*: needs the item catalogue`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("output lacks %s:\n%s", re, out)
		}
	}
	// The user group was loaded into the online store before its pointer
	// moved, so serving can switch to it at once.
	users, err := snapshot.Current(ctx, store, "user_batch")
	if err != nil {
		t.Fatal(err)
	}
	rdb := online.NewClient(env.Config().Redis)
	defer rdb.Close()
	if n, err := rdb.Exists(ctx, online.DefaultKeyPrefix+"meta:user_batch:"+users.Version).Result(); err != nil || n != 1 {
		t.Errorf("user_batch %s not loaded into Redis before the flip (exists=%d, %v)", users.Version, n, err)
	}
	first, err := snapshot.Current(ctx, store, "item_batch")
	if err != nil {
		t.Fatal(err)
	}
	out, err = runCLI(t, ctx, cfgPath, "features", "materialize", "--file", file, "--as-of", "2026-11-21T12:00:00Z", "--groups", "item_batch")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`\nitem_batch\s+20261121T120000Z-[0-9a-f]{8}\s+11\s+current\s+` + first.Version).MatchString(out) {
		t.Errorf("second run:\n%s", out)
	}
	out, err = runCLI(t, ctx, cfgPath, "features", "rollback", "--file", file, "--group", "item_batch")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "item_batch: rolled back from 20261121T120000Z-") || !strings.Contains(out, " to "+first.Version) {
		t.Errorf("rollback output %q", out)
	}
	if cur, err := snapshot.Current(ctx, store, "item_batch"); err != nil || cur.Version != first.Version || !cur.RolledBack {
		t.Errorf("after rollback: %+v, %v", cur, err)
	}
	if n := testenv.TopicMessages(t, cfg.Kafka.Brokers[0], events.TopicFeatureSnapshots); n != 5 {
		t.Errorf("%d snapshot events, want 5 (3 groups, 1 group, 1 rollback)", n)
	}
}
