package serving_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/adaptrec/adaptrec/features/online"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/objstore"
	"github.com/adaptrec/adaptrec/internal/servingworld"
	"github.com/adaptrec/adaptrec/internal/testenv"
	"github.com/adaptrec/adaptrec/predictions"
	"github.com/adaptrec/adaptrec/registry"
	"github.com/adaptrec/adaptrec/serving"
)

// TestBatchPredictionsAnswerWhenRankingCannot precomputes lists for half
// the users of a world with the batch ranker (the serving pipeline run
// offline), flips them current, then starts a serving instance whose
// production model cannot load: users with a list get it at
// BATCH_PREDICTIONS (recent items and flagged items filtered out), the
// others popularity, and with Redis down every user gets popularity, never
// an error.
func TestBatchPredictionsAnswerWhenRankingCannot(t *testing.T) {
	env := testenv.New(t, testenv.Kafka, testenv.Redis, testenv.S3)
	cfg := env.Config()
	cfg.Features.File = "../features/features.yaml"
	cfg.Server.ModelPoll = time.Second
	cfg.Predictions.PointerRefresh = 200 * time.Millisecond
	// A loaded test machine must not miss the fallback's one GET.
	cfg.Predictions.ServingReadTimeout = 500 * time.Millisecond
	ctx := t.Context()
	w, err := servingworld.Build(ctx, cfg, servingworld.Options{Items: 2000, Users: 200, TrainRows: 20000, PairsPerUser: 10, Hidden: []int{16}, CacheDir: "-"}, func(s string) { t.Log(s) })
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	obj, err := objstore.New(ctx, cfg.S3)
	if err != nil {
		t.Fatal(err)
	}
	rdb := online.NewClient(cfg.Redis)
	defer rdb.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	// 1. Batch predictions of the even users, by the production model.
	br, err := serving.OpenBatchRanker(ctx, cfg, obj, rdb, serving.BatchRankerOptions{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	if br.ModelVersion() != w.Version {
		t.Fatalf("batch ranker opened %s, production is %s", br.ModelVersion(), w.Version)
	}
	st, err := predictions.NewStore(rdb, predictions.Options{KeyPrefix: cfg.Features.KeyPrefix})
	if err != nil {
		t.Fatal(err)
	}
	const k = 50
	wr, err := st.Begin(ctx, predictions.VersionInfo{Model: br.Model(), ModelVersion: br.ModelVersion(), K: k})
	if err != nil {
		t.Fatal(err)
	}
	lists := map[string][]predictions.Entry{}
	users := w.UserIDs()
	for u := 0; u < len(users); u += 2 {
		l, level, err := br.Rank(ctx, users[u], k, time.Now())
		if err != nil {
			t.Fatalf("rank %s: %v", users[u], err)
		}
		if len(l) != k || level == adaptrecv1.DegradationLevel_DEGRADATION_LEVEL_UNSPECIFIED {
			t.Fatalf("rank %s: %d items at %s", users[u], len(l), level)
		}
		if check, detail := predictions.CheckList(l, k); check != "" {
			t.Fatalf("the pipeline's list of %s fails %s: %s", users[u], check, detail)
		}
		for _, e := range l {
			if i, ok := w.ItemIndex(e.ItemID); !ok || w.Flagged(i) {
				t.Fatalf("rank %s: item %s unknown or flagged", users[u], e.ItemID)
			}
		}
		lists[users[u]] = l
		if err := wr.Add(ctx, users[u], l); err != nil {
			t.Fatal(err)
		}
	}
	br.Close()
	m, err := wr.Close(ctx, len(lists), predictions.Validation{MinCoverage: 1})
	if err != nil || m.Rejected() {
		t.Fatalf("close: %+v %v", m, err)
	}
	if _, err := st.Flip(ctx, m.Version); err != nil {
		t.Fatal(err)
	}

	// 2. Ranking made to fail: production names a version that does not
	// exist, as a storage fault would leave it, before the instance starts.
	setProduction(t, obj, w.Model, "no-such-version")
	inst, err := serving.NewInstance(ctx, cfg, log, serving.InstanceOptions{Name: "batchpred-test"})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() { defer close(done); _ = inst.Run(runCtx) }()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = inst.GRPC.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		conn.Close()
		inst.GRPC.Stop()
		stop()
		<-done
		inst.Close()
	}()
	client := adaptrecv1.NewRecommendServiceClient(conn)
	recommend := func(req *adaptrecv1.RecommendRequest) (*adaptrecv1.RecommendResponse, error) {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return client.Recommend(ctx, req)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	// Ready once the catalogue is built and the pointer read: a user with
	// a list gets it.
	testenv.Eventually(t, time.Minute, func() error {
		resp, err := recommend(w.Request(0, rng))
		if err != nil {
			return err
		}
		if resp.GetDegradationLevel() != adaptrecv1.DegradationLevel_DEGRADATION_LEVEL_BATCH_PREDICTIONS {
			return fmt.Errorf("user 0 answered at %s", resp.GetDegradationLevel())
		}
		return nil
	})
	if err := inst.Ready(ctx); err == nil {
		t.Fatal("the instance loaded a production model; the test needs ranking to fail")
	}
	for u := range 40 {
		req := w.Request(u, rng)
		resp, err := recommend(req)
		if err != nil {
			t.Fatalf("user %d: %v", u, err)
		}
		l, has := lists[users[u]]
		if !has {
			if resp.GetDegradationLevel() != adaptrecv1.DegradationLevel_DEGRADATION_LEVEL_POPULARITY || resp.GetModelVersion() != serving.PopularityModel {
				t.Fatalf("user %d without a list: %s by %s, want POPULARITY", u, resp.GetDegradationLevel(), resp.GetModelVersion())
			}
			continue
		}
		recent := map[string]bool{}
		for _, id := range req.GetContext().GetRecentItemIds() {
			recent[id] = true
		}
		var want []string
		for _, e := range l {
			if len(want) < int(req.GetNumItems()) && !recent[e.ItemID] {
				want = append(want, e.ItemID)
			}
		}
		var got []string
		for _, it := range resp.GetItems() {
			got = append(got, it.GetItemId())
		}
		if resp.GetDegradationLevel() != adaptrecv1.DegradationLevel_DEGRADATION_LEVEL_BATCH_PREDICTIONS ||
			resp.GetModelVersion() != w.Version || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("user %d: %s by %s items %v; want BATCH_PREDICTIONS by %s items %v",
				u, resp.GetDegradationLevel(), resp.GetModelVersion(), got, w.Version, want)
		}
	}

	// 3. Redis down: the batch level cannot read the lists of users not
	// asked for yet; popularity answers them, with no error. Lists read
	// before are still served from the reader's in-process cache.
	env.StopComponent(testenv.Redis)
	for u := 100; u < 120; u += 2 {
		resp, err := recommend(w.Request(u, rng))
		if err != nil {
			t.Fatalf("user %d with Redis down: %v", u, err)
		}
		if resp.GetDegradationLevel() != adaptrecv1.DegradationLevel_DEGRADATION_LEVEL_POPULARITY {
			t.Fatalf("user %d with Redis down answered at %s, want POPULARITY", u, resp.GetDegradationLevel())
		}
	}
	resp, err := recommend(w.Request(0, rng))
	if err != nil || resp.GetDegradationLevel() != adaptrecv1.DegradationLevel_DEGRADATION_LEVEL_BATCH_PREDICTIONS {
		t.Fatalf("user 0, whose list was read before, with Redis down: %s (%v), want BATCH_PREDICTIONS from the cache", resp.GetDegradationLevel(), err)
	}
}

// setProduction rewrites the aliases object so production names version,
// without the registry's checks.
func setProduction(t *testing.T, obj *objstore.Store, model, version string) {
	t.Helper()
	ctx := t.Context()
	key := registry.AliasesKey(model)
	b, _, err := obj.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	var al map[string]any
	if err := json.Unmarshal(b, &al); err != nil {
		t.Fatal(err)
	}
	al["previous"], al["production"] = al["production"], version
	al["revision"] = al["revision"].(float64) + 1
	if b, err = json.Marshal(al); err != nil {
		t.Fatal(err)
	}
	if _, err := obj.Put(ctx, key, b, objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
}
