package registry_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/features"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/objstore"
	"github.com/adaptrec/adaptrec/internal/testenv"
	"github.com/adaptrec/adaptrec/registry"
	"github.com/adaptrec/adaptrec/registry/registrytest"
)

var created = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// newClient starts a real S3 server and returns a client on it that
// records its events.
func newClient(t *testing.T) (*registry.Client, *registrytest.Recorder, *objstore.Store) {
	t.Helper()
	env := testenv.New(t, testenv.S3)
	st := testenv.Bucket(t, env.Config())
	rec := &registrytest.Recorder{}
	return &registry.Client{Store: st, Events: rec, Features: registrytest.Features(), Logf: t.Logf}, rec, st
}

func register(t *testing.T, c *registry.Client, model string, seed int) registry.Manifest {
	t.Helper()
	m, err := c.Register(t.Context(), registrytest.Request(model, seed, created.Add(time.Duration(seed)*time.Minute)))
	if err != nil {
		t.Fatalf("register %s #%d: %v", model, seed, err)
	}
	return m
}

// keys lists every object under prefix.
func keys(t *testing.T, st *objstore.Store, prefix string) []string {
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

func TestRegistryRegisterReadAndImmutability(t *testing.T) {
	t.Parallel()
	c, rec, st := newClient(t)
	ctx := t.Context()
	req := registrytest.Request("ranker", 1, created)
	m, err := c.Register(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(m.Version, "20261122T100000Z-") || m.InputWidth != registrytest.Width || m.SchemaHash != registrytest.Features().SchemaHash() {
		t.Errorf("manifest %+v", m)
	}
	wantKeys := []string{
		"models/ranker/versions/" + m.Version + "/item_embeddings.bin",
		"models/ranker/versions/" + m.Version + "/manifest.json",
		"models/ranker/versions/" + m.Version + "/ranker.onnx",
	}
	if got := keys(t, st, "models/"); !slices.Equal(got, wantKeys) {
		t.Errorf("objects %v, want %v", got, wantKeys)
	}
	got, err := c.Get(ctx, "ranker", m.Version)
	if err != nil {
		t.Fatal(err)
	}
	if got.TrainingSet != "ts-0001" || got.CodeVersion != "0123abcd" || got.Metrics["auc"] != m.Metrics["auc"] ||
		got.Parameters["trees"] != "300" || !got.CreatedAt.Equal(created) || got.RegisteredBy != "registrytest" {
		t.Errorf("read back %+v", got)
	}
	onnx, err := c.ReadArtifact(ctx, got, "ranker.onnx")
	if err != nil || string(onnx) != string(registrytest.ONNX(registrytest.Width)) {
		t.Errorf("ranker.onnx: %d bytes, %v", len(onnx), err)
	}
	if err := c.Verify(ctx, got); err != nil {
		t.Error(err)
	}
	evs := rec.Events()
	if len(evs) != 1 {
		t.Fatalf("%d events, want 1", len(evs))
	}
	e := evs[0].GetModelLifecycle()
	if e.GetStage() != adaptrecv1.LifecycleStage_LIFECYCLE_STAGE_REGISTERED || e.GetModelName() != "ranker" || e.GetModelVersion() != m.Version ||
		!strings.HasSuffix(e.GetArtifactUri(), "/models/ranker/versions/"+m.Version+"/") || e.GetActor() != "registrytest" {
		t.Errorf("event %v", evs[0])
	}
	if err := events.Validate(evs[0], time.Now()); err != nil {
		t.Errorf("event is invalid: %v", err)
	}

	// The same request is the same version: refused, nothing rewritten,
	// and the registered manifest comes back for a retrying caller.
	again, err := c.Register(ctx, req)
	if !errors.Is(err, registry.ErrExists) || again.Version != m.Version {
		t.Errorf("registering %s again: %v (manifest %s)", m.Version, err, again.Version)
	}
	// Different content in the same second is another version.
	other := registrytest.Request("ranker", 2, created)
	m2, err := c.Register(ctx, other)
	if err != nil || m2.Version == m.Version || m2.Version[:16] != m.Version[:16] {
		t.Errorf("second version %q: %v", m2.Version, err)
	}
	// Every object of a version is create-only.
	if _, err := st.Put(ctx, m.Key(), []byte("{}"), objstore.PutOptions{IfNoneMatch: "*"}); !errors.Is(err, objstore.ErrPreconditionFailed) {
		t.Errorf("overwriting a manifest create-only: %v", err)
	}
	vs, err := c.Versions(ctx, "ranker")
	if err != nil || len(vs) != 2 || vs[0].Version > vs[1].Version && vs[0].CreatedAt.Equal(vs[1].CreatedAt) {
		t.Errorf("versions: %d, %v", len(vs), err)
	}
	if models, err := c.Models(ctx); err != nil || !slices.Equal(models, []string{"ranker"}) {
		t.Errorf("models %v, %v", models, err)
	}
	// A version whose manifest is missing (a registration that stopped
	// half-way) is invisible.
	if _, err := st.Put(ctx, registry.ArtifactKey("ranker", "20261122T110000Z-00000000", "ranker.onnx"), []byte("x"), objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if vs, err := c.Versions(ctx, "ranker"); err != nil || len(vs) != 2 {
		t.Errorf("versions with a half-written one: %d, %v", len(vs), err)
	}
	if _, err := c.Get(ctx, "ranker", "20261122T110000Z-00000000"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("Get of a half-written version: %v", err)
	}
}

// TestRegistryInvalidVersionsAreRefused registers broken versions and requires
// each to be refused before anything is written, with the aliases
// unchanged.
func TestRegistryInvalidVersionsAreRefused(t *testing.T) {
	t.Parallel()
	c, rec, st := newClient(t)
	ctx := t.Context()
	good := register(t, c, "ranker", 1)
	if _, err := c.Apply(ctx, "ranker", registry.Change{Action: registry.ActionPromote, Version: good.Version, Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	before, err := c.Aliases(ctx, "ranker")
	if err != nil {
		t.Fatal(err)
	}
	objects := keys(t, st, "models/")
	nEvents := len(rec.Events())

	errNaN := errors.New("probe batch scored NaN")
	incompatible := registrytest.Request("ranker", 2, created)
	incompatible.Schema.Features[2].Type = "vector[4]"
	incompatible.Schema.Features[2].Default = "[0,0,0,1]"
	for _, tc := range []struct {
		name      string
		edit      func(*registry.RegisterRequest)
		validator registry.Validator
		want      []string
		wantErr   error
	}{
		{name: "truncated ONNX", edit: func(r *registry.RegisterRequest) {
			r.Artifacts[0].Data = r.Artifacts[0].Data[:len(r.Artifacts[0].Data)/2]
		}, want: []string{"ranker ranker.onnx: malformed protobuf"}},
		{name: "not ONNX", edit: func(r *registry.RegisterRequest) {
			r.Artifacts[0].Data = []byte("<html>404 not found</html>")
		}, want: []string{"ranker ranker.onnx:"}},
		{name: "ONNX of another width", edit: func(r *registry.RegisterRequest) {
			r.Artifacts[0].Data = registrytest.ONNX(7)
		}, want: []string{"input features takes rows of 7 values, the schema's features make 5"}},
		{name: "ONNX metadata of another model", edit: func(r *registry.RegisterRequest) {
			r.Artifacts[0].Data = registrytest.ONNXWithMetadata(registrytest.Width, map[string]string{
				registry.MetaSchemaHash: "fs1:0000", registry.MetaInputWidth: "6", registry.MetaFeatureNames: `["item_ctr","user_ctr","item_vec"]`,
			})
		}, want: []string{`metadata adaptrec.feature_schema_hash is "fs1:0000"`, `metadata adaptrec.input_width is "6", the schema's features make 5`,
			`metadata adaptrec.feature_names lists ["item_ctr" "user_ctr" "item_vec"]`}},
		{name: "validator refuses", validator: registry.ValidatorFunc(func(_ context.Context, m registry.Manifest, a map[string][]byte) error {
			if len(a["ranker.onnx"]) == 0 || m.InputWidth != registrytest.Width || m.Version == "" {
				return fmt.Errorf("validator got manifest %+v and %d artifacts", m, len(a))
			}
			return errNaN
		}), want: []string{"validator: probe batch scored NaN"}, wantErr: errNaN},
		{name: "no metrics", edit: func(r *registry.RegisterRequest) { r.Metrics = nil }, want: []string{"no metrics"}},
		{name: "NaN metric", edit: func(r *registry.RegisterRequest) { r.Metrics["auc"] = math.NaN() }, want: []string{"metric auc is NaN"}},
		{name: "schema hash missing", edit: func(r *registry.RegisterRequest) { r.Schema.SchemaHash = "" }, want: []string{"schema hash missing"}},
		{name: "schema incompatible", edit: func(r *registry.RegisterRequest) { *r = incompatible },
			want: []string{"item_vec: model wants type vector[4], definitions have vector[3]"}, wantErr: features.ErrIncompatible},
		{name: "empty artifact, no ranker, bad name", edit: func(r *registry.RegisterRequest) {
			r.Artifacts = []registry.Artifact{{Name: "index.bin", Role: registry.RoleIndex}, {Name: "../x", Role: "weights", Data: []byte("x")}}
			r.TrainingSet, r.CodeVersion, r.Actor = "", "", ""
		}, want: []string{"artifact index.bin is empty", `artifact name "../x"`, `role "weights"`, "0 artifacts with role ranker",
			"training set id missing", "code version missing", "registered_by"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := registrytest.Request("ranker", 2, created)
			if tc.edit != nil {
				tc.edit(&req)
			}
			vc := *c
			vc.Validator = tc.validator
			_, err := vc.Register(ctx, req)
			var verr *registry.ValidationError
			if !errors.As(err, &verr) || !errors.Is(err, registry.ErrInvalid) {
				t.Fatalf("Register = %v, want a *ValidationError", err)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) && !strings.Contains(err.Error(), tc.wantErr.Error()) {
				t.Errorf("error does not carry %v: %v", tc.wantErr, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
	if got := keys(t, st, "models/"); !slices.Equal(got, objects) {
		t.Errorf("refused versions left objects: %v, before %v", got, objects)
	}
	after, err := c.Aliases(ctx, "ranker")
	if err != nil || after.Revision != before.Revision || after.Production != good.Version {
		t.Errorf("aliases after refusals: %+v, %v", after, err)
	}
	if n := len(rec.Events()); n != nEvents {
		t.Errorf("%d events published for refused versions", n-nEvents)
	}
	// Metadata that agrees with the manifest is accepted.
	withMeta := registrytest.Request("ranker", 4, created)
	withMeta.Artifacts[0].Data = registrytest.ONNXWithMetadata(registrytest.Width, map[string]string{
		registry.MetaSchemaHash: withMeta.Schema.SchemaHash, registry.MetaInputWidth: "5", registry.MetaFeatureNames: `["user_ctr","item_ctr","item_vec"]`,
	})
	if _, err := c.Register(ctx, withMeta); err != nil {
		t.Errorf("a ranker whose metadata agrees: %v", err)
	}
	// A required metric.
	rc := *c
	rc.RequiredMetrics = []string{"auc", "ndcg@10"}
	if _, err := rc.Register(ctx, registrytest.Request("ranker", 3, created)); !errors.Is(err, registry.ErrInvalid) || !strings.Contains(err.Error(), "metric ndcg@10 missing") {
		t.Errorf("missing required metric: %v", err)
	}
}

// TestRegistryChecksumMismatchIsDetectedOnRead corrupts artifacts and a manifest
// behind the registry's back, as a disk or a hand edit would, and requires
// every reader to notice and no alias to move to the corrupt version.
func TestRegistryChecksumMismatchIsDetectedOnRead(t *testing.T) {
	t.Parallel()
	c, _, st := newClient(t)
	ctx := t.Context()
	a := register(t, c, "ranker", 1)
	b := register(t, c, "ranker", 2)
	if _, err := c.Apply(ctx, "ranker", registry.Change{Action: registry.ActionPromote, Version: a.Version, Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	onnx := registrytest.ONNX(registrytest.Width)
	flipped := slices.Clone(onnx)
	flipped[len(flipped)-10] ^= 0x01 // a weight bit: still a well-formed model
	if _, err := st.Put(ctx, registry.ArtifactKey("ranker", b.Version, "ranker.onnx"), flipped, objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadArtifact(ctx, b, "ranker.onnx"); !errors.Is(err, registry.ErrCorrupt) || !strings.Contains(err.Error(), "sha256") {
		t.Errorf("ReadArtifact of a flipped bit: %v", err)
	}
	if _, err := st.Put(ctx, registry.ArtifactKey("ranker", b.Version, "item_embeddings.bin"), []byte("short"), objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	err := c.Verify(ctx, b)
	if !errors.Is(err, registry.ErrCorrupt) || !strings.Contains(err.Error(), "item_embeddings.bin has 5 bytes") || !strings.Contains(err.Error(), "ranker.onnx has sha256") {
		t.Errorf("Verify: %v", err)
	}
	before, _ := c.Aliases(ctx, "ranker")
	for _, ch := range []registry.Change{
		{Action: registry.ActionPromote, Version: b.Version, Actor: "test"},
		{Action: registry.ActionCanary, Version: b.Version, Weight: 0.1, Actor: "test"},
	} {
		if _, err := c.Apply(ctx, "ranker", ch); !errors.Is(err, registry.ErrCorrupt) {
			t.Errorf("%s of a corrupt version: %v", ch.Action, err)
		}
	}
	if after, _ := c.Aliases(ctx, "ranker"); after.Revision != before.Revision || after.Production != a.Version {
		t.Errorf("aliases moved to a corrupt version: %+v", after)
	}
	// A manifest edited after registration no longer matches its version.
	body := fmt.Appendf(nil, `{"format":1,"model":"ranker","version":%q,"created_at":%q,"schema_hash":%q,"schema":{"schema_hash":%q,"features":[{"name":"user_ctr","entity":"user","type":"float","default":"0.03"}]},"input_width":1,"training_set":"x","code_version":"y","metrics":{"auc":0.99},"artifacts":[{"name":"ranker.onnx","role":"ranker","bytes":1,"sha256":"%064x"}],"registered_by":"z"}`,
		a.Version, a.CreatedAt.Format(time.RFC3339Nano), a.SchemaHash, a.SchemaHash, 0)
	if _, err := st.Put(ctx, a.Key(), body, objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, "ranker", a.Version); !errors.Is(err, registry.ErrCorrupt) || !strings.Contains(err.Error(), "content hash") {
		t.Errorf("Get of an edited manifest: %v", err)
	}
}

// TestRegistryConcurrentPromotionsExactlyOneWins races promotions round after
// round: two callers that both saw the same production promote different
// versions, and exactly one may win.
func TestRegistryConcurrentPromotionsExactlyOneWins(t *testing.T) {
	t.Parallel()
	c, rec, _ := newClient(t)
	ctx := t.Context()
	const nVersions, rounds, racers = 6, 24, 3
	versions := make([]string, nVersions)
	for i := range versions {
		versions[i] = register(t, c, "ranker", i).Version
	}
	wins := 0
	for round := range rounds {
		from, err := c.Aliases(ctx, "ranker")
		if err != nil {
			t.Fatal(err)
		}
		var targets []string
		for _, v := range versions {
			if v != from.Production && len(targets) < racers {
				targets = append(targets, v)
			}
		}
		// Odd rounds race on the compare-and-swap alone (every racer holds
		// the same state); even rounds read the aliases themselves and
		// carry the production they expect, so a racer that reads after
		// the winner fails on its precondition instead.
		errs := make([]error, len(targets))
		results := make([]registry.Aliases, len(targets))
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i, v := range targets {
			wg.Go(func() {
				<-start
				ch := registry.Change{Action: registry.ActionPromote, Version: v, Actor: fmt.Sprintf("racer-%d", i), Reason: fmt.Sprintf("round %d", round)}
				if round%2 == 1 {
					results[i], errs[i] = c.ApplyFrom(ctx, from, ch)
				} else {
					ch.ExpectProduction = from.Production
					if ch.ExpectProduction == "" {
						ch.ExpectProduction = registry.None
					}
					results[i], errs[i] = c.Apply(ctx, "ranker", ch)
				}
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Fatalf("round %d: both %s and %s won", round, targets[winner], targets[i])
			case err == nil:
				winner = i
			case !errors.Is(err, registry.ErrConflict):
				t.Fatalf("round %d: promote %s: %v, want ErrConflict", round, targets[i], err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: nobody won: %v", round, errs)
		}
		wins++
		now, err := c.Aliases(ctx, "ranker")
		if err != nil {
			t.Fatal(err)
		}
		if now.Production != targets[winner] || now.Previous != from.Production || now.Revision != from.Revision+1 ||
			results[winner].Revision != now.Revision || now.Change.Actor != fmt.Sprintf("racer-%d", winner) {
			t.Fatalf("round %d: aliases %+v after %s won from %+v", round, now, targets[winner], from)
		}
		for i, err := range errs {
			if i != winner && !strings.Contains(err.Error(), "production") {
				t.Errorf("round %d: the loser's error does not say what production is: %v", round, err)
			}
		}
	}
	hist, err := c.History(ctx, "ranker")
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != wins {
		t.Fatalf("history has %d revisions, %d promotions won", len(hist), wins)
	}
	for i, h := range hist {
		if h.Revision != int64(i+1) || h.Change == nil || h.Change.Action != registry.ActionPromote || h.Change.Reason != fmt.Sprintf("round %d", i) {
			t.Errorf("history[%d] = %+v", i, h)
		}
	}
	// One registration event per version, one promotion event per win.
	var promoted int
	ids := map[string]bool{}
	for _, e := range rec.Events() {
		if e.GetModelLifecycle().GetStage() == adaptrecv1.LifecycleStage_LIFECYCLE_STAGE_PROMOTED {
			promoted++
		}
		if ids[e.GetEnvelope().GetEventId()] {
			t.Errorf("event id %s published twice", e.GetEnvelope().GetEventId())
		}
		ids[e.GetEnvelope().GetEventId()] = true
	}
	if promoted != wins {
		t.Errorf("%d promotion events for %d wins", promoted, wins)
	}
}

// lifecycleEvents reads every event on the model-lifecycle topic, by
// event id.
func lifecycleEvents(t *testing.T, cfg config.Config) []*adaptrecv1.Event {
	t.Helper()
	out := testenv.TopicEvents(t, cfg.Kafka, events.TopicModelLifecycle)
	slices.SortFunc(out, func(a, b *adaptrecv1.Event) int {
		return strings.Compare(a.GetEnvelope().GetEventId(), b.GetEnvelope().GetEventId())
	})
	return out
}

// TestRegistryAliasLifecycleOnKafka walks a model through shadow, canary,
// promotion and rollback with a real producer, and reads the events back.
func TestRegistryAliasLifecycleOnKafka(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.S3, testenv.Kafka)
	cfg := env.Config()
	st := testenv.EventLog(t, cfg)
	producer, err := events.NewProducer(cfg.Kafka, events.ProducerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { producer.Close() })
	c := &registry.Client{Store: st, Events: producer, Features: registrytest.Features(), Logf: t.Logf}
	ctx := t.Context()
	a, b, d := register(t, c, "ranker", 1), register(t, c, "ranker", 2), register(t, c, "ranker", 3)
	apply := func(ch registry.Change) registry.Aliases {
		t.Helper()
		ch.Actor = "alice"
		al, err := c.Apply(ctx, "ranker", ch)
		if err != nil {
			t.Fatalf("%s %s: %v", ch.Action, ch.Version, err)
		}
		return al
	}
	if _, err := c.Apply(ctx, "ranker", registry.Change{Action: registry.ActionRollback, Actor: "alice"}); !errors.Is(err, registry.ErrNoPrevious) {
		t.Errorf("rollback with no production: %v", err)
	}
	apply(registry.Change{Action: registry.ActionPromote, Version: a.Version, Reason: "first"})
	if _, err := c.Apply(ctx, "ranker", registry.Change{Action: registry.ActionRollback, Actor: "alice"}); !errors.Is(err, registry.ErrNoPrevious) {
		t.Errorf("rollback with only one production: %v", err)
	}
	apply(registry.Change{Action: registry.ActionShadow, Version: b.Version})
	apply(registry.Change{Action: registry.ActionCanary, Version: b.Version, Weight: 0.05})
	al := apply(registry.Change{Action: registry.ActionCanary, Version: b.Version, Weight: 0.25})
	if al.Canary != b.Version || al.CanaryWeight != 0.25 || al.Shadow != b.Version {
		t.Errorf("after canary: %+v", al)
	}
	for _, bad := range []registry.Change{
		{Action: registry.ActionCanary, Version: b.Version, Weight: 0},
		{Action: registry.ActionCanary, Version: b.Version, Weight: 1.5},
		{Action: registry.ActionCanary, Version: a.Version, Weight: 0.5}, // production
		{Action: registry.ActionPromote, Version: b.Version, Weight: 0.5},
		{Action: "deploy", Version: b.Version},
		{Action: registry.ActionPromote, Version: "latest"},
		{Action: registry.ActionRollback, Version: a.Version},
	} {
		bad.Actor = "alice"
		if _, err := c.Apply(ctx, "ranker", bad); !errors.Is(err, registry.ErrInvalid) {
			t.Errorf("%+v: %v, want ErrInvalid", bad, err)
		}
	}
	if _, err := c.Apply(ctx, "ranker", registry.Change{Action: registry.ActionPromote, Version: d.Version}); !errors.Is(err, registry.ErrInvalid) || !strings.Contains(err.Error(), "actor missing") {
		t.Errorf("no actor: %v", err)
	}
	al = apply(registry.Change{Action: registry.ActionPromote, Version: b.Version, ExpectProduction: a.Version, Reason: "canary looked good"})
	if al.Production != b.Version || al.Previous != a.Version || al.Canary != "" || al.CanaryWeight != 0 || al.Shadow != "" {
		t.Errorf("after promoting the canary: %+v", al)
	}
	// Promoting production again changes nothing.
	if again := apply(registry.Change{Action: registry.ActionPromote, Version: b.Version}); again.Revision != al.Revision {
		t.Errorf("promoting production again made revision %d", again.Revision)
	}
	apply(registry.Change{Action: registry.ActionShadow, Version: d.Version})
	apply(registry.Change{Action: registry.ActionClearShadow})
	if again := apply(registry.Change{Action: registry.ActionClearShadow}); again.Shadow != "" || again.Revision != 7 {
		t.Errorf("clearing an empty shadow: %+v", again)
	}
	if _, err := c.Apply(ctx, "ranker", registry.Change{Action: registry.ActionRollback, ExpectProduction: a.Version, Actor: "bob"}); !errors.Is(err, registry.ErrConflict) {
		t.Errorf("rollback expecting the wrong production: %v", err)
	}
	al = apply(registry.Change{Action: registry.ActionRollback, ExpectProduction: b.Version, Reason: "ctr dropped"})
	if al.Production != a.Version || al.Previous != "" || al.Revision != 8 || al.Change.Replaced != b.Version {
		t.Errorf("after rollback: %+v", al)
	}
	if _, err := c.Apply(ctx, "ranker", registry.Change{Action: registry.ActionRollback, Actor: "alice"}); !errors.Is(err, registry.ErrNoPrevious) {
		t.Errorf("second rollback: %v", err)
	}
	if v, err := c.Resolve(ctx, "ranker", "production"); err != nil || v != a.Version {
		t.Errorf("Resolve(production) = %s, %v", v, err)
	}
	if _, err := c.Resolve(ctx, "ranker", "canary"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("Resolve(canary) with none: %v", err)
	}

	type want struct {
		stage          adaptrecv1.LifecycleStage
		version, prev  string
		weight         float64
		reason, action string
	}
	wants := []want{
		{adaptrecv1.LifecycleStage_LIFECYCLE_STAGE_PROMOTED, a.Version, "", 0, "first", "promote"},
		{adaptrecv1.LifecycleStage_LIFECYCLE_STAGE_SHADOW, b.Version, "", 0, "", "shadow"},
		{adaptrecv1.LifecycleStage_LIFECYCLE_STAGE_CANARY, b.Version, "", 0.05, "", "canary"},
		{adaptrecv1.LifecycleStage_LIFECYCLE_STAGE_CANARY, b.Version, "", 0.25, "", "canary"},
		{adaptrecv1.LifecycleStage_LIFECYCLE_STAGE_PROMOTED, b.Version, a.Version, 0, "canary looked good", "promote"},
		{adaptrecv1.LifecycleStage_LIFECYCLE_STAGE_SHADOW, d.Version, "", 0, "", "shadow"},
		{adaptrecv1.LifecycleStage_LIFECYCLE_STAGE_RETIRED, d.Version, "", 0, "", "clear-shadow"},
		{adaptrecv1.LifecycleStage_LIFECYCLE_STAGE_ROLLED_BACK, a.Version, b.Version, 0, "ctr dropped", "rollback"},
	}
	// Promoting production again republished revision 5's event with its
	// id (a retry completing a lost announcement); consumers dedupe it.
	var got []*adaptrecv1.Event
	testenv.Eventually(t, 20*time.Second, func() error {
		got = lifecycleEvents(t, cfg)
		if len(got) != 3+len(wants)+1 {
			return fmt.Errorf("%d lifecycle events, want %d", len(got), 3+len(wants)+1)
		}
		return nil
	})
	got = slices.CompactFunc(got, func(a, b *adaptrecv1.Event) bool {
		if a.GetEnvelope().GetEventId() != b.GetEnvelope().GetEventId() {
			return false
		}
		if !proto.Equal(a, b) {
			t.Errorf("two events with id %s differ:\n%v\n%v", a.GetEnvelope().GetEventId(), a, b)
		}
		return true
	})
	if len(got) != 3+len(wants) {
		t.Fatalf("%d distinct lifecycle events, want %d", len(got), 3+len(wants))
	}
	// Ids sort registrations ("registered") after revisions ("r0...").
	for i, w := range wants {
		e := got[i].GetModelLifecycle()
		if got[i].GetEnvelope().GetEventId() != registry.EventID("ranker", int64(i+1)) || e.GetStage() != w.stage ||
			e.GetModelVersion() != w.version || e.GetPreviousVersion() != w.prev || e.GetCanaryWeight() != w.weight ||
			e.GetReason() != w.reason || e.GetActor() != "alice" || !strings.HasSuffix(e.GetArtifactUri(), w.version+"/") {
			t.Errorf("event %d (%s) = %v, want %+v", i+1, w.action, got[i], w)
		}
	}
	for _, e := range got[len(wants):] {
		if e.GetModelLifecycle().GetStage() != adaptrecv1.LifecycleStage_LIFECYCLE_STAGE_REGISTERED {
			t.Errorf("event %v, want a registration", e)
		}
	}
	hist, err := c.History(ctx, "ranker")
	if err != nil || len(hist) != len(wants) {
		t.Fatalf("history: %d revisions, %v", len(hist), err)
	}
	for i, h := range hist {
		if string(h.Change.Action) != wants[i].action || h.Change.Actor != "alice" || h.Change.At.IsZero() {
			t.Errorf("history[%d] = %+v", i, h.Change)
		}
	}
}

// flakyStore fails chosen writes, as a network or a crash between two
// writes would.
type flakyStore struct {
	*objstore.Store
	mu   sync.Mutex
	fail func(key string) bool
}

func (s *flakyStore) Put(ctx context.Context, key string, body []byte, opts objstore.PutOptions) (string, error) {
	s.mu.Lock()
	fail := s.fail != nil && s.fail(key)
	s.mu.Unlock()
	if fail {
		return "", fmt.Errorf("put %s: injected failure", key)
	}
	return s.Store.Put(ctx, key, body, opts)
}

func (s *flakyStore) setFail(f func(key string) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = f
}

// TestRegistryChangesSurviveLostEventsAndHistoryWrites proves the at-least-once
// story: a change whose event was not published stands and is announced
// by applying it again (same event id); a change whose history record was
// not written is still in History and recorded by the next change.
func TestRegistryChangesSurviveLostEventsAndHistoryWrites(t *testing.T) {
	t.Parallel()
	c, rec, st := newClient(t)
	fs := &flakyStore{Store: st}
	c.Store = fs
	ctx := t.Context()
	a, b := register(t, c, "ranker", 1), register(t, c, "ranker", 2)
	if _, err := c.Apply(ctx, "ranker", registry.Change{Action: registry.ActionPromote, Version: a.Version, Actor: "t"}); err != nil {
		t.Fatal(err)
	}

	rec.Fail(errors.New("brokers unreachable"))
	al, err := c.Apply(ctx, "ranker", registry.Change{Action: registry.ActionPromote, Version: b.Version, Actor: "t"})
	if !errors.Is(err, registry.ErrUnpublished) || al.Production != b.Version || !strings.Contains(err.Error(), "brokers unreachable") {
		t.Fatalf("promotion with the brokers down: %+v, %v", al, err)
	}
	if now, _ := c.Aliases(ctx, "ranker"); now.Production != b.Version || now.Revision != 2 {
		t.Errorf("the change did not stand: %+v", now)
	}
	rec.Fail(nil)
	n := len(rec.Events())
	if again, err := c.Apply(ctx, "ranker", registry.Change{Action: registry.ActionPromote, Version: b.Version, Actor: "t"}); err != nil || again.Revision != 2 {
		t.Fatalf("retry: %+v, %v", again, err)
	}
	evs := rec.Events()
	if len(evs) != n+1 || evs[n].GetEnvelope().GetEventId() != registry.EventID("ranker", 2) ||
		evs[n].GetModelLifecycle().GetStage() != adaptrecv1.LifecycleStage_LIFECYCLE_STAGE_PROMOTED {
		t.Errorf("retry published %v", evs[n:])
	}

	// The writer of revision 3 "crashes" between its swap and its record.
	fs.setFail(func(key string) bool { return key == registry.HistoryKey("ranker", 3) })
	if _, err := c.Apply(ctx, "ranker", registry.Change{Action: registry.ActionRollback, Actor: "t"}); err != nil {
		t.Fatal(err)
	}
	hist, err := c.History(ctx, "ranker")
	if err != nil || len(hist) != 3 || hist[2].Change.Action != registry.ActionRollback {
		t.Fatalf("history with the last record missing: %d, %v", len(hist), err)
	}
	if slices.Contains(keys(t, st, "models/ranker/history/"), registry.HistoryKey("ranker", 3)) {
		t.Fatal("the injected failure did not happen")
	}
	// While revision 3 cannot be recorded, no change may build on it.
	if _, err := c.Apply(ctx, "ranker", registry.Change{Action: registry.ActionShadow, Version: b.Version, Actor: "t"}); err == nil || !strings.Contains(err.Error(), "nothing changed") {
		t.Errorf("change over an unrecordable revision: %v", err)
	}
	if now, _ := c.Aliases(ctx, "ranker"); now.Revision != 3 {
		t.Errorf("revision %d", now.Revision)
	}
	fs.setFail(nil)
	if _, err := c.Apply(ctx, "ranker", registry.Change{Action: registry.ActionShadow, Version: b.Version, Actor: "t"}); err != nil {
		t.Fatal(err)
	}
	want := []string{registry.HistoryKey("ranker", 1), registry.HistoryKey("ranker", 2), registry.HistoryKey("ranker", 3), registry.HistoryKey("ranker", 4)}
	if got := keys(t, st, "models/ranker/history/"); !slices.Equal(got, want) {
		t.Errorf("history objects %v", got)
	}
	hist, err = c.History(ctx, "ranker")
	if err != nil || len(hist) != 4 {
		t.Fatalf("history: %d, %v", len(hist), err)
	}
	// The record of revision 3 is the aliases object as revision 3 left it.
	body, _, err := st.Get(ctx, registry.HistoryKey("ranker", 3))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(body), `"action": "rollback"`) || !strings.Contains(string(body), `"revision": 3`) {
		t.Errorf("revision 3 record:\n%s", body)
	}
	// A Publisher that is not a Kafka producer, for unit use.
	var got []*adaptrecv1.Event
	c.Events = registry.PublisherFunc(func(_ context.Context, evs ...*adaptrecv1.Event) error {
		got = append(got, evs...)
		return nil
	})
	if _, err := c.Apply(ctx, "ranker", registry.Change{Action: registry.ActionClearShadow, Actor: "t"}); err != nil || len(got) != 1 {
		t.Errorf("PublisherFunc: %d events, %v", len(got), err)
	}
}
