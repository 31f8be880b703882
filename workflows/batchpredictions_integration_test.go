package workflows

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"google.golang.org/protobuf/proto"

	"github.com/adaptrec/adaptrec/activities"
	"github.com/adaptrec/adaptrec/eventlog"
	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/features/online"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/objstore"
	"github.com/adaptrec/adaptrec/internal/servingworld"
	"github.com/adaptrec/adaptrec/internal/testenv"
	"github.com/adaptrec/adaptrec/predictions"
)

// TestBatchPredictionsOnDevServer runs the workflow on a real Temporal dev
// server over a serving world (features in Redis and S3, a production
// model in the registry) and an archived event log: a first run ranks
// every active user and flips its version current; a second run over a
// window holding far fewer users is rejected by the user-count check and
// leaves the pointer where it was.
func TestBatchPredictionsOnDevServer(t *testing.T) {
	env := testenv.New(t, testenv.Temporal, testenv.Kafka, testenv.Redis, testenv.S3)
	cfg := env.Config()
	cfg.Features.File = "../features/features.yaml"
	cfg.Predictions.K = 30
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	w, err := servingworld.Build(ctx, cfg, servingworld.Options{Items: 1000, Users: 200, TrainRows: 10000, PairsPerUser: 5, Hidden: []int{8}, CacheDir: "-"}, func(s string) { t.Log(s) })
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	obj, err := objstore.New(ctx, cfg.S3)
	if err != nil {
		t.Fatal(err)
	}

	// 150 users active 30 hours before the cutoff, 20 one hour before.
	asOf := time.Now().UTC().Truncate(time.Second)
	users, items := w.UserIDs(), w.ItemIDs()
	archive := func(hour time.Time, us []string) {
		var rows []eventlog.Row
		for i, u := range us {
			e := events.NewInteraction(fmt.Sprintf("ev-%d-%s", hour.Unix(), u), hour.Add(time.Duration(i)*time.Second), "test", &adaptrecv1.UserInteractionEvent{
				UserId: u, ItemId: items[i%len(items)], Action: adaptrecv1.Action_ACTION_CLICK, Surface: "home", Device: adaptrecv1.Device_DEVICE_MOBILE,
			})
			b, err := proto.Marshal(e)
			if err != nil {
				t.Fatal(err)
			}
			rows = append(rows, eventlog.NewRow(e, b, eventlog.Provenance{Topic: events.TopicInteractions, Offset: int64(i)}))
		}
		var enc eventlog.Encoder
		b, err := enc.Encode(rows)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := obj.Put(ctx, eventlog.Ref{Topic: events.TopicInteractions, Hour: hour}.Key(), b, objstore.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	archive(eventlog.HourOf(asOf.Add(-30*time.Hour)), users[:150])
	archive(eventlog.HourOf(asOf.Add(-time.Hour)), users[150:170])

	tc, err := client.Dial(client.Options{HostPort: cfg.Temporal.HostPort, Namespace: cfg.Temporal.Namespace})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	rdb := online.NewClient(cfg.Redis)
	defer rdb.Close()
	wk := worker.New(tc, activities.TaskQueueDefault, worker.Options{})
	wk.RegisterWorkflow(BatchPredictions)
	wk.RegisterActivity(&activities.BatchPredictions{Config: cfg, Store: obj, Redis: rdb})
	if err := wk.Start(); err != nil {
		t.Fatal(err)
	}
	defer wk.Stop()
	execute := func(id string, p BatchPredictionsParams) (BatchPredictionsResult, error) {
		run, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: activities.TaskQueueDefault, WorkflowExecutionTimeout: 3 * time.Minute},
			BatchPredictions, p)
		if err != nil {
			t.Fatal(err)
		}
		var res BatchPredictionsResult
		err = run.Get(ctx, &res)
		return res, err
	}

	res, err := execute("it-batch-predictions-1", BatchPredictionsParams{AsOf: asOf, ActiveWindow: 48 * time.Hour})
	if err != nil {
		t.Fatalf("first run: %v", err)
	}
	m := res.Computed.Meta
	if m.Users != 170 || m.ActiveUsers != 170 || m.K != 30 || m.ModelVersion != w.Version || m.Rejected() || res.Computed.Events != 170 {
		t.Fatalf("first run computed %+v", res.Computed)
	}
	st, err := predictions.NewStore(rdb, predictions.Options{KeyPrefix: cfg.Features.KeyPrefix})
	if err != nil {
		t.Fatal(err)
	}
	ptr, err := st.Current(ctx)
	if err != nil || ptr.Current.Version != m.Version || ptr.Previous != nil {
		t.Fatalf("pointer after the first run: %+v %v", ptr, err)
	}
	for _, u := range []string{users[0], users[160]} {
		l, ok, err := st.Get(ctx, m.Version, u)
		if err != nil || !ok || len(l) != 30 {
			t.Fatalf("list of %s: %d items, %v %v", u, len(l), ok, err)
		}
	}
	if _, ok, _ := st.Get(ctx, m.Version, users[190]); ok {
		t.Fatalf("inactive user %s got a list", users[190])
	}

	// Only the 20 recent users in a 2-hour window: a fall of 88% against
	// the current version's 170, beyond predictions.max_user_drop.
	res, err = execute("it-batch-predictions-2", BatchPredictionsParams{AsOf: asOf, ActiveWindow: 2 * time.Hour})
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != ErrTypePredictionsRejected {
		t.Fatalf("second run: %v, want a %s error", err, ErrTypePredictionsRejected)
	}
	if !containsAll(err.Error(), "rejected, the pointer did not move", "20 users with a list against 170 in the current version") {
		t.Errorf("second run's error %q does not name the check and values", err)
	}
	if after, err := st.Current(ctx); err != nil || after.Current.Version != m.Version {
		t.Fatalf("pointer after the rejected run: %+v %v", after, err)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
