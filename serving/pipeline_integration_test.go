package serving_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/adaptrec/adaptrec/internal/metricstest"
	"github.com/adaptrec/adaptrec/internal/servingtest"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/adaptrec/adaptrec/events"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/objstore"
	"github.com/adaptrec/adaptrec/internal/onnxrt"
	"github.com/adaptrec/adaptrec/internal/servingworld"
	"github.com/adaptrec/adaptrec/internal/testenv"
	"github.com/adaptrec/adaptrec/registry"
	"github.com/adaptrec/adaptrec/serving"
	"github.com/adaptrec/adaptrec/serving/admission"
	"github.com/adaptrec/adaptrec/trainer/ranker"
	"github.com/adaptrec/adaptrec/trainer/retrieval"
)

// served is a serving instance on a small world, over gRPC.
type served struct {
	t      *testing.T
	env    *testenv.Env
	cfg    config.Config
	world  *servingworld.World
	inst   *serving.Instance
	client adaptrecv1.RecommendServiceClient
	reg    *registry.Client
	obj    *objstore.Store
}

func serve(t *testing.T, env *testenv.Env, o serving.InstanceOptions) *served {
	t.Helper()
	cfg := env.Config()
	cfg.Features.File = "../features/features.yaml"
	cfg.Server.ModelPoll = time.Second
	ctx := t.Context()
	w, err := servingworld.Build(ctx, cfg, servingworld.Options{Items: 2000, Users: 200, TrainRows: 20000, PairsPerUser: 10, Hidden: []int{16}, CacheDir: "-"}, func(s string) { t.Log(s) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if o.Name == "" {
		o.Name = "serving-test"
	}
	inst, err := serving.NewInstance(ctx, cfg, log, o)
	if err != nil {
		t.Fatal(err)
	}
	conn := servingtest.Serve(t, ctx, inst, time.Minute)
	obj, err := objstore.New(ctx, cfg.S3)
	if err != nil {
		t.Fatal(err)
	}
	producer, err := events.NewProducer(cfg.Kafka, events.ProducerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { producer.Close() })
	return &served{t: t, env: env, cfg: cfg, world: w, inst: inst, client: adaptrecv1.NewRecommendServiceClient(conn),
		reg: &registry.Client{Store: obj, Events: producer}, obj: obj}
}

func (s *served) recommend(ctx context.Context, u int, rng *rand.Rand, p adaptrecv1.Priority) (*adaptrecv1.RecommendResponse, error) {
	req := s.world.Request(u, rng)
	req.Priority = p
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return s.client.Recommend(ctx, req)
}

// variant registers a new version with the production version's artifacts
// and its ranker's output layer negated (so it ranks differently), or, with
// corrupt, then overwrites its ranker in S3 with garbage.
func (s *served) variant(reason string, corrupt bool) string {
	t, ctx := s.t, s.t.Context()
	al, err := s.reg.Aliases(ctx, s.world.Model)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.reg.Get(ctx, s.world.Model, al.Production)
	if err != nil {
		t.Fatal(err)
	}
	req := registry.RegisterRequest{Model: m.Model, Schema: m.Schema, TrainingSet: m.TrainingSet, CodeVersion: m.CodeVersion,
		Parameters: map[string]string{"variant": reason}, Metrics: m.Metrics, Actor: "test", Reason: reason}
	for _, f := range m.Artifacts {
		b, err := s.reg.ReadArtifact(ctx, m, f.Name)
		if err != nil {
			t.Fatal(err)
		}
		if f.Role == registry.RoleRanker {
			rk, err := ranker.ParseONNX(b)
			if err != nil {
				t.Fatal(err)
			}
			out := &rk.Layers[len(rk.Layers)-1]
			for i := range out.W {
				out.W[i] = -out.W[i]
			}
			if b, err = rk.ExportONNX(); err != nil {
				t.Fatal(err)
			}
		}
		req.Artifacts = append(req.Artifacts, registry.Artifact{Name: f.Name, Role: f.Role, Data: b})
	}
	v, err := s.reg.Register(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if corrupt {
		key := registry.ArtifactKey(v.Model, v.Version, serving.ArtifactRanker)
		if _, err := s.obj.Put(ctx, key, []byte("not an ONNX model"), objstore.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return v.Version
}

// setProductionBehindRegistry rewrites the aliases object so production
// names version, without the registry's checks.
func (s *served) setProductionBehindRegistry(version string) {
	t, ctx := s.t, s.t.Context()
	key := registry.AliasesKey(s.world.Model)
	b, _, err := s.obj.Get(ctx, key)
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
	if _, err := s.obj.Put(ctx, key, b, objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (s *served) promote(version string) {
	if _, err := s.reg.Apply(s.t.Context(), s.world.Model, registry.Change{Action: registry.ActionPromote, Version: version, Actor: "test"}); err != nil {
		s.t.Fatal(err)
	}
}

// load sends requests from n goroutines until stop is closed and returns
// every response's version and level per goroutine, in order, and the
// errors.
type loadResult struct {
	mu       sync.Mutex
	versions [][]string
	levels   map[string]int
	errs     []error
	n        atomic.Int64
	done     chan struct{}
}

func (s *served) load(ctx context.Context, n int, stop <-chan struct{}) *loadResult {
	r := &loadResult{versions: make([][]string, n), levels: map[string]int{}, done: make(chan struct{})}
	var wg sync.WaitGroup
	for g := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 9))
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := s.recommend(ctx, rng.IntN(len(s.world.UserIDs())), rng, adaptrecv1.Priority_PRIORITY_NORMAL)
				r.n.Add(1)
				r.mu.Lock()
				if err != nil {
					r.errs = append(r.errs, err)
				} else {
					r.versions[g] = append(r.versions[g], resp.GetModelVersion())
					r.levels[resp.GetDegradationLevel().String()]++
				}
				r.mu.Unlock()
			}
		}()
	}
	go func() { <-stop; wg.Wait(); close(r.done) }()
	return r
}

func (r *loadResult) wait() { <-r.done }

func TestPipelineServesAndSurvivesFailures(t *testing.T) {
	env := testenv.NewWithOptions(t, testenv.Options{Components: []testenv.Component{testenv.Kafka, testenv.Redis, testenv.S3}, Persist: true})
	// Admission is not under test here: a loaded test machine must not
	// shed the load that drives the swap.
	s := serve(t, env, serving.InstanceOptions{Admission: &admission.Config{MaxInFlight: 64, LatencySLO: time.Second}})
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(1, 2))
	v1 := s.world.Version

	t.Run("full", func(t *testing.T) {
		for u := range 20 {
			resp, err := s.recommend(ctx, u, rng, adaptrecv1.Priority_PRIORITY_NORMAL)
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetModelVersion() != v1 || !modelRanked(resp) ||
				resp.GetExperimentArm() != serving.ArmProduction || len(resp.GetItems()) != servingworld.NumItems {
				t.Fatalf("user %d: version %s level %s arm %s, %d items; want %s ranked by the model, production, %d items",
					u, resp.GetModelVersion(), resp.GetDegradationLevel(), resp.GetExperimentArm(), len(resp.GetItems()), v1, servingworld.NumItems)
			}
			seen := map[string]bool{}
			for _, it := range resp.GetItems() {
				i, ok := s.world.ItemIndex(it.GetItemId())
				if !ok || s.world.Flagged(i) || seen[it.GetItemId()] {
					t.Fatalf("user %d: item %s unknown, flagged or repeated", u, it.GetItemId())
				}
				seen[it.GetItemId()] = true
			}
		}
		// Every response is recorded with the features it was ranked on.
		testenv.Eventually(t, 30*time.Second, func() error {
			for _, e := range testenv.TopicEvents(t, s.cfg.Kafka, events.TopicPredictions) {
				p := e.GetPrediction()
				if p.GetModelVersion() == v1 && len(p.GetItems()) == servingworld.NumItems && len(p.GetUserFeatures()) > 0 &&
					len(p.GetItems()[0].GetFeatures()) > 0 && len(p.GetItems()[0].GetSources()) > 0 {
					return nil
				}
			}
			return fmt.Errorf("no PredictionEvent of %s with served features and sources yet", v1)
		})
	})

	t.Run("returning users without a session get ANN candidates", func(t *testing.T) {
		// No recent items in the request and no live session: the only
		// user vector is the one the model's training run stored for the
		// user (users.emb). A user the model never saw has none, and the
		// ANN source proposes nothing for them.
		var returning []string
		for u, id := range s.world.UserIDs() {
			if !s.world.InSession(u) {
				returning = append(returning, id)
			}
		}
		if len(returning) < 5 {
			t.Fatalf("%d of %d users are without a session; the world should have about 15%%", len(returning), len(s.world.UserIDs()))
		}
		returning = returning[:min(len(returning), 12)]
		stored := userVectorCount(t, "stored")
		requests := map[string]string{} // request id → user
		ask := func(user string) {
			id := fmt.Sprintf("returning-%s-%d", user, len(requests))
			resp, err := s.client.Recommend(ctx, &adaptrecv1.RecommendRequest{RequestId: id, UserId: user, NumItems: servingworld.NumItems})
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetModelVersion() != v1 || !modelRanked(resp) || len(resp.GetItems()) != servingworld.NumItems {
				t.Fatalf("user %s: version %s level %s, %d items; want %s ranked by the model, %d items",
					user, resp.GetModelVersion(), resp.GetDegradationLevel(), len(resp.GetItems()), v1, servingworld.NumItems)
			}
			requests[id] = user
		}
		for _, user := range returning {
			ask(user)
		}
		const newcomer = "user-the-model-never-saw"
		ask(newcomer)
		if got := userVectorCount(t, "stored") - stored; got < float64(len(returning)) {
			t.Errorf("the stored user vector was used %v times for %d returning users", got, len(returning))
		}
		testenv.Eventually(t, 30*time.Second, func() error {
			annItems := map[string]int{}
			recorded := 0
			for _, e := range testenv.TopicEvents(t, s.cfg.Kafka, events.TopicPredictions) {
				p := e.GetPrediction()
				user, ok := requests[p.GetRequestId()]
				if !ok {
					continue
				}
				recorded++
				for _, it := range p.GetItems() {
					if slices.Contains(it.GetSources(), "ann") {
						annItems[user]++
					}
				}
			}
			if recorded < len(requests) {
				return fmt.Errorf("%d of %d PredictionEvents recorded so far", recorded, len(requests))
			}
			// The ANN source has a 4 ms deadline, which a loaded test
			// machine can miss now and then; without the stored vectors
			// no returning user would get any ANN-sourced item at all.
			with := 0
			for _, user := range returning {
				if annItems[user] > 0 {
					with++
				}
			}
			if 4*with < 3*len(returning) {
				return fmt.Errorf("%d of %d returning users without a session were served ANN-sourced items (per user: %v), want at least 3/4", with, len(returning), annItems)
			}
			if annItems[newcomer] != 0 {
				return fmt.Errorf("a user the model never saw, without recent items, was served %d ANN-sourced items", annItems[newcomer])
			}
			t.Logf("ANN-sourced items among the %d served to each returning user: %v", servingworld.NumItems, annItems)
			return nil
		})
	})

	t.Run("user vectors are optional and checked", func(t *testing.T) {
		m, err := s.reg.Get(ctx, s.world.Model, v1)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := m.Artifact(serving.ArtifactUsers); !ok {
			t.Fatalf("the world's version %s has no %s", v1, serving.ArtifactUsers)
		}
		// register registers v1's artifacts with users as users.emb, or
		// without users.emb when users is nil, as a version trained
		// before it existed.
		register := func(reason string, users []byte) string {
			req := registry.RegisterRequest{Model: m.Model, Schema: m.Schema, TrainingSet: m.TrainingSet, CodeVersion: m.CodeVersion,
				Parameters: map[string]string{"variant": reason}, Metrics: m.Metrics, Actor: "test", Reason: reason}
			for _, f := range m.Artifacts {
				b, err := s.reg.ReadArtifact(ctx, m, f.Name)
				if err != nil {
					t.Fatal(err)
				}
				if f.Name == serving.ArtifactUsers {
					if users == nil {
						continue
					}
					b = users
				}
				req.Artifacts = append(req.Artifacts, registry.Artifact{Name: f.Name, Role: f.Role, Data: b})
			}
			v, err := s.reg.Register(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			return v.Version
		}
		narrow, err := retrieval.NewUserVectors([]string{s.world.UserIDs()[0]}, []float32{1, 2, 3}, 3)
		if err != nil {
			t.Fatal(err)
		}
		var narrowBytes bytes.Buffer
		if err := narrow.Save(&narrowBytes); err != nil {
			t.Fatal(err)
		}
		without := register("without users.emb", nil)
		for _, tc := range []struct {
			name, version, want string
		}{
			{"without users.emb", without, ""},
			{"users.emb of other dims", register("users.emb of 3 dims", narrowBytes.Bytes()), "users.emb holds vectors of 3 dimensions, items.ivf 64"},
			{"corrupt users.emb", register("corrupt users.emb", []byte("not user vectors")), "users.emb: retrieval: corrupt user vectors artifact"},
		} {
			loaded, err := serving.LoadModel(ctx, s.reg, s.inst.Store, s.world.Model, tc.version, onnxrt.Options{})
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("%s: %v", tc.name, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("%s: LoadModel = %v, want an error containing %q", tc.name, err, tc.want)
			}
			if err == nil {
				loaded.Close()
			}
		}

		// A version without users.emb serves; its returning users have no
		// user vector, so ANN proposes nothing for them.
		s.promote(without)
		testenv.Eventually(t, 10*time.Second, func() error {
			if v := s.inst.Models.Set().Production; v == nil || v.Version != without {
				return fmt.Errorf("production not yet %s", without)
			}
			return nil
		})
		var user string
		for u, id := range s.world.UserIDs() {
			if !s.world.InSession(u) {
				user = id
				break
			}
		}
		none := userVectorCount(t, "none")
		resp, err := s.client.Recommend(ctx, &adaptrecv1.RecommendRequest{UserId: user, NumItems: servingworld.NumItems})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetModelVersion() != without || !modelRanked(resp) || len(resp.GetItems()) != servingworld.NumItems {
			t.Errorf("user %s: version %s level %s, %d items; want %s ranked by the model, %d items",
				user, resp.GetModelVersion(), resp.GetDegradationLevel(), len(resp.GetItems()), without, servingworld.NumItems)
		}
		if got := userVectorCount(t, "none") - none; got != 1 {
			t.Errorf("%s served a returning user with a user vector (%v requests without one): it has no %s", without, got, serving.ArtifactUsers)
		}
		s.promote(v1)
		testenv.Eventually(t, 10*time.Second, func() error {
			if v := s.inst.Models.Set().Production; v == nil || v.Version != v1 {
				return fmt.Errorf("production not yet back to %s", v1)
			}
			return nil
		})
	})

	t.Run("hot swap under load", func(t *testing.T) {
		v2 := s.variant("hot swap", false)
		stop := make(chan struct{})
		r := s.load(ctx, 4, stop)
		time.Sleep(500 * time.Millisecond)
		swapped := time.Now()
		s.promote(v2)
		testenv.Eventually(t, 10*time.Second, func() error {
			resp, err := s.recommend(ctx, 0, rng, adaptrecv1.Priority_PRIORITY_NORMAL)
			if err != nil || resp.GetModelVersion() != v2 {
				return fmt.Errorf("still %s (%v)", resp.GetModelVersion(), err)
			}
			return nil
		})
		t.Logf("swap to %s served %s after the promotion", v2, time.Since(swapped).Round(time.Millisecond))
		time.Sleep(500 * time.Millisecond)
		close(stop)
		r.wait()
		if len(r.errs) > 0 {
			t.Fatalf("%d of %d requests failed during the swap, first: %v", len(r.errs), r.n.Load(), r.errs[0])
		}
		for g, vs := range r.versions {
			// One instance swaps atomically: each client sees v1 until
			// it sees v2, then only v2.
			k := slices.Index(vs, v2)
			if k < 0 || slices.ContainsFunc(vs[k:], func(v string) bool { return v != v2 }) || slices.ContainsFunc(vs[:k], func(v string) bool { return v != v1 }) {
				t.Errorf("client %d saw versions out of order or unknown: %v", g, compact(vs))
			}
		}
		t.Logf("%d requests during the swap, levels %v", r.n.Load(), r.levels)

		// The replaced version stays loaded as the previous one: a
		// rollback swaps it in without loading anything.
		loads := metricstest.Must(t, "adaptrec_serving_model_loads_total", map[string]string{"outcome": "ok"})
		if _, err := s.reg.Apply(ctx, s.world.Model, registry.Change{Action: registry.ActionRollback, Actor: "test"}); err != nil {
			t.Fatal(err)
		}
		rolledBack := time.Now()
		testenv.Eventually(t, 10*time.Second, func() error {
			resp, err := s.recommend(ctx, 0, rng, adaptrecv1.Priority_PRIORITY_NORMAL)
			if err != nil || resp.GetModelVersion() != v1 {
				return fmt.Errorf("still %s (%v)", resp.GetModelVersion(), err)
			}
			return nil
		})
		t.Logf("rollback to %s served %s after the change", v1, time.Since(rolledBack).Round(time.Millisecond))
		if after := metricstest.Must(t, "adaptrec_serving_model_loads_total", map[string]string{"outcome": "ok"}); after != loads {
			t.Errorf("the rollback to %s loaded %v model versions, want 0: the previous version must stay loaded", v1, after-loads)
		}
		// Production back on v2 for the subtests below (a rollback keeps no
		// previous, so this loads v2 again).
		s.promote(v2)
		testenv.Eventually(t, 10*time.Second, func() error {
			resp, err := s.recommend(ctx, 0, rng, adaptrecv1.Priority_PRIORITY_NORMAL)
			if err != nil || resp.GetModelVersion() != v2 {
				return fmt.Errorf("still %s (%v)", resp.GetModelVersion(), err)
			}
			return nil
		})
	})

	t.Run("canary and shadow", func(t *testing.T) {
		prod := s.inst.Models.Set().Production.Version
		canary, shadow := s.variant("canary", false), s.variant("shadow", false)
		for _, ch := range []registry.Change{
			{Action: registry.ActionCanary, Version: canary, Weight: 0.5, Actor: "test"},
			{Action: registry.ActionShadow, Version: shadow, Actor: "test"},
		} {
			if _, err := s.reg.Apply(ctx, s.world.Model, ch); err != nil {
				t.Fatal(err)
			}
		}
		testenv.Eventually(t, 10*time.Second, func() error {
			if set := s.inst.Models.Set(); set.Canary == nil || set.Shadow == nil {
				return fmt.Errorf("canary or shadow not loaded yet")
			}
			return nil
		})
		time.Sleep(200 * time.Millisecond) // the view binds the new set
		arms := map[string]map[string]bool{}
		requests := map[string]bool{}
		for u := range 200 {
			req := s.world.Request(u, rng)
			req.RequestId = fmt.Sprintf("canary-test-%d", u)
			resp, err := s.client.Recommend(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			requests[req.RequestId] = true
			if arms[resp.GetExperimentArm()] == nil {
				arms[resp.GetExperimentArm()] = map[string]bool{}
			}
			arms[resp.GetExperimentArm()][resp.GetModelVersion()] = true
			// A user's arm is stable.
			again, err := s.client.Recommend(ctx, req)
			if err != nil || again.GetExperimentArm() != resp.GetExperimentArm() {
				t.Fatalf("user %d: arm %s then %s (%v)", u, resp.GetExperimentArm(), again.GetExperimentArm(), err)
			}
		}
		if len(arms) != 2 || !arms[serving.ArmCanary][canary] || len(arms[serving.ArmCanary]) != 1 ||
			!arms[serving.ArmProduction][prod] || len(arms[serving.ArmProduction]) != 1 {
			t.Fatalf("arms and versions served %v; want canary %s and production %s, each alone in its arm", arms, canary, prod)
		}
		// Mirrored requests are scored by the shadow and recorded, never served.
		testenv.Eventually(t, 30*time.Second, func() error {
			n := 0
			for _, e := range testenv.TopicEvents(t, s.cfg.Kafka, events.TopicPredictions) {
				p := e.GetPrediction()
				if p.GetShadow() && p.GetModelVersion() == shadow && requests[p.GetRequestId()] && len(p.GetItems()) == servingworld.NumItems {
					n++
				}
			}
			if n < 100 {
				return fmt.Errorf("%d shadow PredictionEvents of %s for the test's requests so far", n, shadow)
			}
			return nil
		})
		for _, a := range []registry.Action{registry.ActionClearCanary, registry.ActionClearShadow} {
			if _, err := s.reg.Apply(ctx, s.world.Model, registry.Change{Action: a, Actor: "test"}); err != nil {
				t.Fatal(err)
			}
		}
		testenv.Eventually(t, 10*time.Second, func() error {
			if set := s.inst.Models.Set(); set.Canary != nil || set.Shadow != nil {
				return fmt.Errorf("canary or shadow still loaded")
			}
			return nil
		})
	})

	t.Run("corrupt model refused", func(t *testing.T) {
		bad := s.variant("corrupt", true)
		// The registry refuses to promote a version whose artifact no
		// longer matches its checksum; the alias is set behind its back,
		// as a storage fault after a promotion would leave it.
		if _, err := s.reg.Apply(ctx, s.world.Model, registry.Change{Action: registry.ActionPromote, Version: bad, Actor: "test"}); err == nil {
			t.Fatal("the registry promoted a version with a corrupt ranker")
		}
		prod := s.inst.Models.Set().Production.Version
		s.setProductionBehindRegistry(bad)
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) {
			resp, err := s.recommend(ctx, rng.IntN(200), rng, adaptrecv1.Priority_PRIORITY_NORMAL)
			if err != nil {
				t.Fatalf("a request failed while a corrupt version was promoted: %v", err)
			}
			if resp.GetModelVersion() == bad || resp.GetModelVersion() != prod || !modelRanked(resp) {
				t.Fatalf("served %s at %s; want the last good version %s ranking", resp.GetModelVersion(), resp.GetDegradationLevel(), prod)
			}
		}
		// Recovery: a good version is picked up.
		s.promote(v1)
		testenv.Eventually(t, 10*time.Second, func() error {
			resp, err := s.recommend(ctx, 1, rng, adaptrecv1.Priority_PRIORITY_NORMAL)
			if err != nil || resp.GetModelVersion() != v1 {
				return fmt.Errorf("serving %s (%v), want %s", resp.GetModelVersion(), err, v1)
			}
			return nil
		})
	})

	t.Run("redis down", func(t *testing.T) {
		s.env.StopComponent(testenv.Redis)
		levels := map[string]int{}
		for i := range 30 {
			resp, err := s.recommend(ctx, i%200, rng, adaptrecv1.Priority_PRIORITY_NORMAL)
			if err != nil {
				t.Fatalf("request %d failed with Redis down: %v", i, err)
			}
			if len(resp.GetItems()) != servingworld.NumItems {
				t.Fatalf("request %d: %d items", i, len(resp.GetItems()))
			}
			levels[resp.GetDegradationLevel().String()]++
		}
		if levels["DEGRADATION_LEVEL_STALE_FEATURES"] != 30 {
			t.Errorf("levels with Redis down %v, want every response at STALE_FEATURES (user features defaulted)", levels)
		}
		s.env.StartComponent(testenv.Redis)
		testenv.Eventually(t, 30*time.Second, func() error {
			resp, err := s.recommend(ctx, 3, rng, adaptrecv1.Priority_PRIORITY_NORMAL)
			if err != nil || resp.GetDegradationLevel() != adaptrecv1.DegradationLevel_DEGRADATION_LEVEL_FULL {
				return fmt.Errorf("level %s (%v) after Redis came back", resp.GetDegradationLevel(), err)
			}
			return nil
		})
	})

	t.Run("broker down", func(t *testing.T) {
		s.env.StopComponent(testenv.Kafka)
		for i := range 50 {
			start := time.Now()
			resp, err := s.recommend(ctx, i%200, rng, adaptrecv1.Priority_PRIORITY_NORMAL)
			if err != nil {
				t.Fatalf("request %d failed with the broker down: %v", i, err)
			}
			if !modelRanked(resp) {
				t.Errorf("request %d at %s with the broker down; predictions are buffered, ranking is unaffected", i, resp.GetDegradationLevel())
			}
			if d := time.Since(start); d > time.Second {
				t.Fatalf("request %d took %s with the broker down: publishing must not block serving", i, d)
			}
		}
		s.env.StartComponent(testenv.Kafka)
	})
}

// userVectorCount is adaptrec_serving_user_vector_total{source} of this
// process.
func userVectorCount(t *testing.T, source string) float64 {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "adaptrec_serving_user_vector_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "source" && l.GetValue() == source {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// modelRanked reports whether the model ranked the response: FULL, or
// STALE_FEATURES when a user read missed its 2 ms deadline on a loaded
// test machine.
func modelRanked(resp *adaptrecv1.RecommendResponse) bool {
	switch resp.GetDegradationLevel() {
	case adaptrecv1.DegradationLevel_DEGRADATION_LEVEL_FULL, adaptrecv1.DegradationLevel_DEGRADATION_LEVEL_STALE_FEATURES:
		return true
	}
	return false
}

func compact(vs []string) []string {
	var out []string
	for i, v := range vs {
		if i == 0 || v != vs[i-1] {
			out = append(out, v)
		}
	}
	return out
}

func TestOverloadShedsLowPriorityFirst(t *testing.T) {
	env := testenv.New(t, testenv.Kafka, testenv.Redis, testenv.S3)
	const slo = 200 * time.Millisecond
	s := serve(t, env, serving.InstanceOptions{Admission: &admission.Config{MaxInFlight: 2, LatencySLO: slo}})
	ctx := t.Context()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var lowShed, lowOK, lowOther atomic.Int64
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 3))
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, err := s.recommend(ctx, rng.IntN(200), rng, adaptrecv1.Priority_PRIORITY_LOW)
				switch status.Code(err) {
				case codes.OK:
					lowOK.Add(1)
				case codes.ResourceExhausted:
					lowShed.Add(1)
				default:
					lowOther.Add(1)
				}
			}
		}()
	}
	// Normal priority is not shed while a fallback can answer: the
	// requests admission has no room for get the popularity list.
	var normalLevels sync.Map
	var normalErrs atomic.Int64
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 11))
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := s.recommend(ctx, rng.IntN(200), rng, adaptrecv1.Priority_PRIORITY_NORMAL)
				if err != nil {
					normalErrs.Add(1)
					continue
				}
				n, _ := normalLevels.LoadOrStore(resp.GetDegradationLevel().String(), new(atomic.Int64))
				n.(*atomic.Int64).Add(1)
			}
		}()
	}
	rng := rand.New(rand.NewPCG(7, 7))
	var high []time.Duration
	for range 200 {
		start := time.Now()
		if _, err := s.recommend(ctx, rng.IntN(200), rng, adaptrecv1.Priority_PRIORITY_HIGH); err != nil {
			t.Fatalf("a high-priority request failed under overload: %v", err)
		}
		high = append(high, time.Since(start))
	}
	close(stop)
	wg.Wait()
	sort.Slice(high, func(i, j int) bool { return high[i] < high[j] })
	p99 := high[len(high)*99/100]
	t.Logf("low priority: %d served, %d shed, %d other errors; high priority p99 %s over %d requests", lowOK.Load(), lowShed.Load(), lowOther.Load(), p99, len(high))
	if lowShed.Load() == 0 {
		t.Error("no low-priority request was shed under overload")
	}
	if lowOther.Load() > 0 {
		t.Errorf("%d low-priority requests failed with another code than RESOURCE_EXHAUSTED", lowOther.Load())
	}
	levels := map[string]int64{}
	normalLevels.Range(func(k, v any) bool { levels[k.(string)] = v.(*atomic.Int64).Load(); return true })
	t.Logf("normal priority: levels %v, %d errors", levels, normalErrs.Load())
	if normalErrs.Load() > 0 {
		t.Errorf("%d normal-priority requests failed under overload; the popularity level should have answered them", normalErrs.Load())
	}
	if levels["DEGRADATION_LEVEL_POPULARITY"] == 0 {
		t.Error("no normal-priority request was answered by the popularity level under overload")
	}
	if p99 > slo {
		t.Errorf("high-priority p99 %s exceeds the SLO %s", p99, slo)
	}
}

func TestRankingCascadeFallsBackToTheGoRanker(t *testing.T) {
	env := testenv.New(t, testenv.Kafka, testenv.Redis, testenv.S3)
	// An ONNX budget no call can meet: every request times out of ONNX
	// Runtime and the Go forward pass of the same model answers.
	s := serve(t, env, serving.InstanceOptions{
		Pipeline:  &serving.PipelineConfig{RankTimeout: time.Nanosecond},
		Admission: &admission.Config{MaxInFlight: 64, LatencySLO: time.Second},
	})
	rng := rand.New(rand.NewPCG(5, 5))
	for i := range 30 {
		resp, err := s.recommend(t.Context(), i%200, rng, adaptrecv1.Priority_PRIORITY_NORMAL)
		if err != nil {
			t.Fatalf("request %d failed with ONNX Runtime timing out: %v", i, err)
		}
		if resp.GetDegradationLevel() != adaptrecv1.DegradationLevel_DEGRADATION_LEVEL_SIMPLE_RANKING ||
			resp.GetModelVersion() != s.world.Version || len(resp.GetItems()) != servingworld.NumItems {
			t.Fatalf("request %d: %s by %s with %d items; want SIMPLE_RANKING by %s with %d",
				i, resp.GetDegradationLevel(), resp.GetModelVersion(), len(resp.GetItems()), s.world.Version, servingworld.NumItems)
		}
	}
}
