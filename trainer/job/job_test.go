package job_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/adaptrec/adaptrec/eventlog"
	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/batch"
	"github.com/adaptrec/adaptrec/features/offline"
	"github.com/adaptrec/adaptrec/features/snapshot"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/objstore"
	"github.com/adaptrec/adaptrec/internal/onnxrt"
	"github.com/adaptrec/adaptrec/internal/testenv"
	"github.com/adaptrec/adaptrec/registry"
	"github.com/adaptrec/adaptrec/registry/onnxcheck"
	"github.com/adaptrec/adaptrec/registry/registrytest"
	"github.com/adaptrec/adaptrec/serving/ann"
	"github.com/adaptrec/adaptrec/serving/covisit"
	"github.com/adaptrec/adaptrec/sim"
	"github.com/adaptrec/adaptrec/trainer/job"
	"github.com/adaptrec/adaptrec/trainer/ranker"
	"github.com/adaptrec/adaptrec/trainer/retrieval"
)

// programEnv makes the test binary act as an external trainer: "go" runs
// job.RunCommand, "fail" reports an error and exits 3, "nothing" exits 0
// without writing anything, "layout" copies a finished layout the way a
// program that builds no serving indexes would write it (copyLayout).
const programEnv = "JOBTEST_PROGRAM"

// Settings of the "layout" program, in its environment.
const (
	// layoutFromEnv is the folder of a finished Go layout to copy.
	layoutFromEnv = "JOBTEST_FROM"
	// layoutFormatEnv is the metadata format written (1 or 2).
	layoutFormatEnv = "JOBTEST_FORMAT"
	// layoutDropEnv lists the artifacts left out, comma-separated, with
	// their metadata sections.
	layoutDropEnv = "JOBTEST_DROP"
	// layoutCorruptEnv names an artifact whose last byte is flipped, its
	// size and SHA-256 in the metadata following, so only the artifact's
	// own checksum can catch it.
	layoutCorruptEnv = "JOBTEST_CORRUPT"
	// layoutEventsFromEnv, when set, replaces embeddings.from: the program
	// claims to have read another event range.
	layoutEventsFromEnv = "JOBTEST_EVENTS_FROM"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(programEnv); mode != "" {
		os.Exit(program(mode))
	}
	os.Exit(m.Run())
}

func program(mode string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch mode {
	case "go":
		cfg, err := config.Load("", nil)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		if err := job.RunCommand(ctx, os.Args[1:], cfg.S3, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "train job:", err)
			return 1
		}
		return 0
	case "fail":
		fmt.Fprintln(os.Stderr, "loading CUDA")
		os.Stdout.Write(job.FormatEvent(job.Event{Event: job.EventProgress, Stage: job.StageRead, Message: "reading"}))
		os.Stdout.Write(job.FormatEvent(job.Event{Event: job.EventError, Message: "CUDA out of memory"}))
		return 3
	case "nothing":
		os.Stdout.Write(job.FormatEvent(job.Event{Event: job.EventDone}))
		return 0
	case "layout":
		if err := copyLayout(ctx, os.Args[1:]); err != nil {
			os.Stdout.Write(job.FormatEvent(job.Event{Event: job.EventError, Message: err.Error()}))
			return 1
		}
		return 0
	}
	return 2
}

// copyLayout is an external trainer that trains nothing: it copies the
// layout in $JOBTEST_FROM into --output as this job's (the job id of
// --input), keeping only the artifacts and metadata sections a program
// that builds no serving indexes writes (see the layout*Env settings), as
// trainer/reference/ranker.py does.
func copyLayout(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("layout", flag.ContinueOnError)
	input := fs.String("input", "", "")
	output := fs.String("output", "", "")
	fs.String("params", "", "")
	if err := fs.Parse(args); err != nil {
		return err
	}
	u, err := url.Parse(*input)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(u.Path)
	if err != nil {
		return err
	}
	in, err := job.DecodeInput(b)
	if err != nil {
		return err
	}
	from := os.Getenv(layoutFromEnv)
	b, err = os.ReadFile(filepath.Join(from, job.MetadataFile))
	if err != nil {
		return err
	}
	var md map[string]any
	if err := json.Unmarshal(b, &md); err != nil {
		return err
	}
	format, err := strconv.Atoi(os.Getenv(layoutFormatEnv))
	if err != nil {
		return fmt.Errorf("%s: %w", layoutFormatEnv, err)
	}
	md["format"], md["job_id"] = format, in.JobID
	drop := strings.Split(os.Getenv(layoutDropEnv), ",")
	params := md["params"].(map[string]any)
	if slices.Contains(drop, job.ANNFile) {
		delete(md, "ann")
		delete(params, "ann")
	}
	if slices.Contains(drop, job.CovisitFile) {
		delete(md, "covisit")
		delete(params, "covisit")
	}
	if slices.Contains(drop, job.UsersFile) {
		delete(md, "user_vectors")
	}
	if v := os.Getenv(layoutEventsFromEnv); v != "" {
		md["embeddings"].(map[string]any)["from"] = v
	}
	out, err := job.OpenDir(ctx, *output, config.S3{})
	if err != nil {
		return err
	}
	var kept []any
	for _, a := range md["artifacts"].([]any) {
		a := a.(map[string]any)
		name := a["name"].(string)
		if slices.Contains(drop, name) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(from, name))
		if err != nil {
			return err
		}
		if name == os.Getenv(layoutCorruptEnv) {
			data[len(data)-1] ^= 0xff
			sum := sha256.Sum256(data)
			a["sha256"] = hex.EncodeToString(sum[:])
		}
		if err := out.Put(ctx, name, data); err != nil {
			return err
		}
		kept = append(kept, a)
	}
	md["artifacts"] = kept
	if b, err = json.MarshalIndent(md, "", "  "); err != nil {
		return err
	}
	if err := out.Put(ctx, job.MetadataFile, b); err != nil {
		return err
	}
	os.Stdout.Write(job.FormatEvent(job.Event{Event: job.EventProgress, Stage: job.StageWrite, Message: "wrote " + out.URI("")}))
	os.Stdout.Write(job.FormatEvent(job.Event{Event: job.EventDone, Metadata: out.URI(job.MetadataFile)}))
	return nil
}

// script writes a shell script that runs this test binary as an external
// trainer in mode.
func script(t *testing.T, mode string) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "train-"+mode+".sh")
	body := fmt.Sprintf("#!/bin/sh\n%s=%s exec '%s' \"$@\"\n", programEnv, mode, exe)
	if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// fixture is a small simulated world archived on a real S3 server, with
// batch snapshots and a point-in-time training set built from it.
type fixture struct {
	cfg   config.Config
	store *objstore.Store
	fs    *features.FeatureSet
	set   offline.Manifest
	start time.Time
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	env := testenv.New(t, testenv.S3)
	f := &fixture{cfg: env.Config(), start: time.Date(2026, 11, 10, 0, 0, 0, 0, time.UTC)}
	f.store = testenv.Bucket(t, f.cfg)
	ctx := t.Context()
	var err error
	if f.fs, err = features.Load("../../features/features.yaml"); err != nil {
		t.Fatal(err)
	}
	w, err := sim.NewWorld(sim.WorldConfig{Seed: 5, Start: f.start, Window: 3 * 24 * time.Hour,
		Catalogue: sim.CatalogueConfig{Items: 400}, Population: sim.PopulationConfig{Users: 300}})
	if err != nil {
		t.Fatal(err)
	}
	a := &eventlog.Writer{Store: f.store, Topic: events.TopicInteractions}
	if _, err := sim.GenerateHistory(ctx, w, sim.HistoryConfig{Events: 40_000}, func(ctx context.Context, evs []*adaptrecv1.Event) error {
		return a.Add(ctx, evs...)
	}); err != nil {
		t.Fatal(err)
	}
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	zones := func(id string) string {
		if i, ok := w.Users.Lookup(id); ok {
			return w.Users.Users[i].TimeZone.Name
		}
		return ""
	}
	asOf := f.start.Add(24 * time.Hour)
	res, err := batch.Compute(ctx, f.store, f.fs, asOf, batch.BatchGroups(f.fs), batch.Config{Catalogue: batch.CatalogueFromSim(w.Catalogue), Zones: zones})
	if err != nil {
		t.Fatal(err)
	}
	for i := range res.Groups {
		g := &res.Groups[i]
		if _, err := snapshot.Write(ctx, f.store, f.fs, g.Group, asOf, g.Rows, snapshot.WriteOptions{NotComputed: g.NotComputed}); err != nil {
			t.Fatal(err)
		}
	}
	if f.set, err = offline.Build(ctx, f.store, f.fs, offline.Config{ID: "ts-job", From: asOf, To: w.End(), Zones: zones}); err != nil {
		t.Fatal(err)
	}
	t.Logf("training set: %d rows, %d positives, width %d", f.set.Rows, f.set.Positives, f.set.Width)
	return f
}

// input is a fast job on the fixture's training set.
func (f *fixture) input(id string, seed uint64) job.Input {
	return job.Input{
		Format: job.InputFormat, JobID: id, Store: f.store.URI(""), TrainingSet: f.set.ID,
		Params: job.Params{
			Seed:       seed,
			Ranker:     job.RankerParams{Hidden: []int{16}, Epochs: 5, BatchSize: 128},
			Embeddings: job.EmbeddingParams{Factors: 8, Iterations: 3},
		},
	}
}

var fixedNow = func() time.Time { return time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC) }

// TestTrainingJobs trains on a simulated training set against real S3:
// the Go trainer's layout, its ONNX ranker in ONNX Runtime against the Go
// forward pass, registration through the ONNX Runtime validator,
// determinism for a seed, the external-command trainer (this test binary
// behind a shell script, over s3:// URIs) producing the same bytes, and
// tampered or unfinished layouts refused.
func TestTrainingJobs(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: starts S3 and needs ONNX Runtime; run without -short (make test)")
	}
	if err := onnxrt.Init(""); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t)
	ctx := t.Context()
	var mu sync.Mutex
	var stages []job.Stage
	g := &job.GoTrainer{Store: f.store, Now: fixedNow, Progress: func(p job.Progress) {
		mu.Lock()
		defer mu.Unlock()
		if len(stages) == 0 || stages[len(stages)-1] != p.Stage {
			stages = append(stages, p.Stage)
		}
	}}
	dir := job.LocalDir(t.TempDir())
	l, err := g.Train(ctx, f.input("job-a", 7), dir)
	if err != nil {
		t.Fatal(err)
	}
	md := l.Metadata
	t.Logf("metrics %v, split %+v, embeddings %+v, timings %v", md.Metrics, md.Split, md.Embeddings, md.Timings)

	t.Run("layout", func(t *testing.T) {
		want := []job.Stage{job.StageRead, job.StageSplit, job.StageRanker, job.StageEvaluate, job.StageEmbeddings, job.StageIndex,
			job.StageANN, job.StageCovisit, job.StageExport, job.StageWrite}
		if !slices.Equal(stages, want) {
			t.Errorf("progress stages %v, want %v", stages, want)
		}
		for _, name := range []string{job.InputFile, job.RankerFile, job.IndexFile, job.ANNFile, job.CovisitFile, job.UsersFile, job.MetadataFile} {
			if _, err := os.Stat(filepath.Join(string(dir), name)); err != nil {
				t.Errorf("layout lacks %s: %v", name, err)
			}
		}
		back, err := job.CheckLayout(ctx, dir)
		if err != nil {
			t.Fatal(err)
		}
		if back.Metadata.JobID != "job-a" || back.Metadata.TrainingSet != f.set.ID || back.Metadata.SchemaHash != f.fs.SchemaHash() ||
			back.Metadata.InputWidth != f.set.Width || back.Metadata.Trainer != job.TrainerGo || back.Metadata.CodeVersion == "" ||
			!back.Metadata.CreatedAt.Equal(fixedNow()) || len(back.Metadata.Artifacts) != 5 {
			t.Errorf("metadata %+v", back.Metadata)
		}
		s := md.Split
		if s.TrainRows+s.GapRows+s.ValidationRows != f.set.Rows || s.TrainRows == 0 || s.ValidationRows == 0 ||
			!s.TrainEnd.Equal(s.Cutoff.Add(-30*time.Minute)) || math.Abs(float64(s.ValidationRows)/float64(f.set.Rows)-0.2) > 0.01 {
			t.Errorf("split %+v of %d rows", s, f.set.Rows)
		}
		if e := md.Embeddings; !e.To.Equal(s.Cutoff) || !e.From.Equal(f.set.From.Add(-job.DefaultEmbeddingLookback)) || e.Items == 0 || e.Dims != 8 || e.Positives == 0 {
			t.Errorf("embeddings %+v (cutoff %s)", e, s.Cutoff)
		}
		if a := md.ANN; a.Items != md.Embeddings.Items || a.Dims != 8 || a.M != ann.DefaultM || a.Bands == 0 {
			t.Errorf("ann %+v", a)
		}
		if c := md.Covisit; c.Items != md.Embeddings.Items || c.Edges == 0 || c.ItemsWithNeighbours < c.Items/2 {
			t.Errorf("covisit %+v of %d items", c, md.Embeddings.Items)
		}
		if u := md.UserVectors; u != (job.UserVectors{Users: md.Embeddings.Users, Dims: 8}) {
			t.Errorf("user_vectors %+v, want the %d users of the embeddings in 8 dims", u, md.Embeddings.Users)
		}
		for _, stage := range []string{"ann", "covisit"} {
			if _, ok := md.Timings[stage]; !ok {
				t.Errorf("no %s timing in %v", stage, md.Timings)
			}
		}
		// A small world: the ranker must rank better than chance; its
		// calibration is not yet better than the base rate's.
		if auc := md.Metrics[job.MetricAUC]; !(auc > 0.55 && auc <= 1) || !(md.Metrics[job.MetricLogLoss] < 1.05*md.Metrics["baseline_logloss"]) {
			t.Errorf("metrics %v: the ranker learned nothing", md.Metrics)
		}
	})

	t.Run("ONNX Runtime matches the Go forward pass", func(t *testing.T) {
		data := l.Files[job.RankerFile]
		sess, err := onnxrt.Load(data, onnxrt.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer sess.Close()
		model, err := ranker.ParseONNX(data)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := offline.ReadRows(ctx, f.store, f.set)
		if err != nil {
			t.Fatal(err)
		}
		var flat []float32
		for _, r := range rows[len(rows)-500:] {
			flat = append(flat, r.Features...)
		}
		got, err := sess.Score(flat, 500)
		if err != nil {
			t.Fatal(err)
		}
		want, err := model.Predict(flat, 500)
		if err != nil {
			t.Fatal(err)
		}
		for i := range want {
			if d := math.Abs(float64(got[i] - want[i])); d > 1e-5 {
				t.Fatalf("row %d: ONNX Runtime %v, Predict %v", i, got[i], want[i])
			}
		}
		// The index serves: fold a user in from two items and search.
		x, err := retrieval.Load(bytes.NewReader(l.Files[job.IndexFile]))
		if err != nil {
			t.Fatal(err)
		}
		emb, err := x.Embedder()
		if err != nil {
			t.Fatal(err)
		}
		vec, err := emb.Embed(nil, []int32{0, 1}, []float32{1, 1})
		if err != nil {
			t.Fatal(err)
		}
		if hits := x.Search(nil, vec, 10, retrieval.SearchOptions{}); len(hits) != 10 {
			t.Errorf("search: %d hits", len(hits))
		}
	})

	t.Run("ANN index and co-visitation table agree with the IVF index", func(t *testing.T) {
		x, err := retrieval.Load(bytes.NewReader(l.Files[job.IndexFile]))
		if err != nil {
			t.Fatal(err)
		}
		a, err := ann.Load(bytes.NewReader(l.Files[job.ANNFile]))
		if err != nil {
			t.Fatal(err)
		}
		if a.Len() != x.Len() || a.Dims() != x.Dims() {
			t.Fatalf("%s holds %d items of %d dims, %s %d of %d", job.ANNFile, a.Len(), a.Dims(), job.IndexFile, x.Len(), x.Dims())
		}
		// The ANN's ids are the IVF's item indexes: its answers for a
		// user folded in from two items are the IVF's exact ones.
		emb, err := x.Embedder()
		if err != nil {
			t.Fatal(err)
		}
		vec, err := emb.Embed(nil, []int32{0, 1}, []float32{1, 1})
		if err != nil {
			t.Fatal(err)
		}
		got, err := a.Search(nil, vec, 20, ann.SearchOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want := x.Exact(nil, vec, 20, nil)
		found := 0
		for _, h := range got {
			if slices.ContainsFunc(want, func(w retrieval.Hit) bool { return w.Item == h.ID }) {
				found++
			}
		}
		if len(got) != 20 || found < 18 {
			t.Errorf("ANN search found %d of the IVF's exact top 20 (%d hits)", found, len(got))
		}

		c, err := covisit.Load(bytes.NewReader(l.Files[job.CovisitFile]))
		if err != nil {
			t.Fatal(err)
		}
		if c.Len() != x.Len() || c.Edges() == 0 || int64(c.Edges()) != md.Covisit.Edges {
			t.Fatalf("%s: %d items and %d neighbours, %s %d items", job.CovisitFile, c.Len(), c.Edges(), job.IndexFile, x.Len())
		}
		for i := range int32(c.Len()) {
			if c.ID(i) != x.ID(i) {
				t.Fatalf("item %d is %q in %s, %q in %s", i, c.ID(i), job.CovisitFile, x.ID(i), job.IndexFile)
			}
		}
		// Items a user just visited bring up their neighbours.
		var recent []int32
		for i := range int32(c.Len()) {
			if nbr, _ := c.Neighbours(i); len(nbr) > 0 && len(recent) < 3 {
				recent = append(recent, i)
			}
		}
		if hits := c.Recommend(nil, recent, 10, nil); len(hits) == 0 {
			t.Errorf("no co-visitation recommendations for %v", recent)
		}
	})

	t.Run("user vectors are the ALS model's", func(t *testing.T) {
		x, err := retrieval.Load(bytes.NewReader(l.Files[job.IndexFile]))
		if err != nil {
			t.Fatal(err)
		}
		u, err := retrieval.LoadUserVectors(bytes.NewReader(l.Files[job.UsersFile]))
		if err != nil {
			t.Fatal(err)
		}
		if u.Len() != md.Embeddings.Users || u.Dims() != x.Dims() {
			t.Fatalf("%s holds %d users of %d dims; the embeddings have %d users, %s %d dims", job.UsersFile, u.Len(), u.Dims(), md.Embeddings.Users, job.IndexFile, x.Dims())
		}
		// Every user's training positives, read back from the event log.
		e := md.Embeddings
		pos := map[string]map[int32]float64{} // summed as the trainer sums them
		if err := eventlog.Scan(ctx, f.store, e.Topic, e.From, e.To, func(r *eventlog.Row) error {
			w, ok := md.Params.Embeddings.Weights[r.Action]
			if !ok || r.UserID == "" || r.ItemID == "" {
				return nil
			}
			i, ok := x.Lookup(r.ItemID)
			if !ok {
				return fmt.Errorf("positive item %q is not in %s", r.ItemID, job.IndexFile)
			}
			if pos[r.UserID] == nil {
				pos[r.UserID] = map[int32]float64{}
			}
			pos[r.UserID][i] += w
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if len(pos) != u.Len() {
			t.Fatalf("%d users have positives, %s holds %d", len(pos), job.UsersFile, u.Len())
		}
		emb, err := x.Embedder()
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(7, 8))
		var above, pairs int
		for user, liked := range pos {
			k, ok := u.Lookup(user)
			if !ok {
				t.Fatalf("user %q has positives but no stored vector", user)
			}
			v := u.Vector(k)
			// The ALS user vector: folding the user's own positives in
			// against items.ivf gives it back bit for bit.
			var items []int32
			var strengths []float32
			for i, s := range liked {
				items, strengths = append(items, i), append(strengths, float32(s))
			}
			folded, err := emb.Embed(nil, items, strengths)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(folded, v) {
				t.Fatalf("user %q: stored vector %v, folded in from the user's positives %v", user, v, folded)
			}
			// It scores the user's positives above random other items.
			for i := range liked {
				for range 20 {
					j := int32(rng.IntN(x.Len()))
					if _, seen := liked[j]; seen {
						continue
					}
					pairs++
					if dotf(v, x.Vector(i)) > dotf(v, x.Vector(j)) {
						above++
					}
				}
			}
		}
		auc := float64(above) / float64(pairs)
		t.Logf("stored user vectors score their training positives above random items in %.3f of %d pairs", auc, pairs)
		if auc < 0.8 {
			t.Errorf("stored user vectors score their training positives above random items in only %.3f of pairs (chance: 0.5)", auc)
		}
	})

	t.Run("register with the ONNX Runtime validator", func(t *testing.T) {
		rec := &registrytest.Recorder{}
		c := &registry.Client{Store: f.store, Events: rec, Features: f.fs, Validator: &onnxcheck.Validator{},
			RequiredMetrics: []string{job.MetricAUC, job.MetricLogLoss}}
		m, err := job.Register(ctx, c, l, "ranker", "test", "job-a")
		if err != nil {
			t.Fatal(err)
		}
		if m.TrainingSet != f.set.ID || m.SchemaHash != f.fs.SchemaHash() || len(m.Artifacts) != 7 ||
			m.Parameters["job_id"] != "job-a" || m.Parameters["ranker.hidden"] != "16" || m.Metrics[job.MetricAUC] != md.Metrics[job.MetricAUC] {
			t.Errorf("registered %+v", m)
		}
		if err := c.Verify(ctx, m); err != nil {
			t.Error(err)
		}
		for name, role := range map[string]registry.Role{job.RankerFile: registry.RoleRanker, job.IndexFile: registry.RoleIndex,
			job.ANNFile: job.ANNRole, job.CovisitFile: job.CovisitRole, job.UsersFile: job.UsersRole} {
			if a, ok := m.Artifact(name); !ok || a.Role != role {
				t.Errorf("registered %s: %+v, %v; want role %s", name, a, ok, role)
			}
		}
		again, err := job.Register(ctx, c, l, "ranker", "test", "job-a")
		if !errors.Is(err, registry.ErrExists) || again.Version != m.Version {
			t.Errorf("registering the layout again: %v, %s", err, again.Version)
		}
		// A layout whose ranker was swapped for a broken one is refused
		// by the validator, and nothing is written.
		broken := *l
		broken.Files = maps.Clone(l.Files)
		broken.Files[job.RankerFile] = registrytest.ONNX(f.set.Width)
		if _, err := job.Register(ctx, c, &broken, "ranker-broken", "test", ""); !errors.Is(err, registry.ErrInvalid) {
			t.Errorf("a ranker without metadata was registered: %v", err)
		}
	})

	t.Run("deterministic for a seed", func(t *testing.T) {
		again, err := g.Train(ctx, f.input("job-b", 7), job.LocalDir(t.TempDir()))
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{job.RankerFile, job.IndexFile, job.ANNFile, job.CovisitFile, job.UsersFile} {
			if !bytes.Equal(again.Files[name], l.Files[name]) {
				t.Errorf("%s differs between two runs with seed 7", name)
			}
		}
		if fmt.Sprint(again.Metadata.Metrics) != fmt.Sprint(md.Metrics) {
			t.Errorf("metrics %v, then %v", md.Metrics, again.Metadata.Metrics)
		}
		// The same training set held in memory trains the same model.
		rows, err := offline.ReadRows(ctx, f.store, f.set)
		if err != nil {
			t.Fatal(err)
		}
		mem := f.input("job-mem", 7)
		mem.TrainingSet, mem.Data = "", &job.TrainingData{Manifest: f.set, Rows: rows}
		fromMemory, err := g.Train(ctx, mem, job.LocalDir(t.TempDir()))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(fromMemory.Files[job.RankerFile], l.Files[job.RankerFile]) || fromMemory.Metadata.TrainingSet != f.set.ID {
			t.Errorf("training from memory: another ranker, or training set %q", fromMemory.Metadata.TrainingSet)
		}
		other, err := g.Train(ctx, f.input("job-c", 8), job.LocalDir(t.TempDir()))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(other.Files[job.RankerFile], l.Files[job.RankerFile]) || bytes.Equal(other.Files[job.IndexFile], l.Files[job.IndexFile]) {
			t.Error("seed 8 gave the artifacts of seed 7")
		}
	})

	t.Run("external command", func(t *testing.T) {
		var progress []job.Progress
		var log bytes.Buffer
		c := &job.Command{Path: script(t, "go"), S3: &f.cfg.S3, Log: &log, Progress: func(p job.Progress) { progress = append(progress, p) }}
		out := job.NewStoreDir(f.store, "training-jobs/job-ext/")
		ext, err := c.Train(ctx, f.input("job-ext", 7), out)
		if err != nil {
			t.Fatalf("%v\nlog:\n%s", err, log.String())
		}
		// The same trainer in another process, over s3:// URIs: the same
		// bytes as in process.
		for _, name := range []string{job.RankerFile, job.IndexFile, job.ANNFile, job.CovisitFile, job.UsersFile} {
			if !bytes.Equal(ext.Files[name], l.Files[name]) {
				t.Errorf("%s of the external run differs from the in-process run", name)
			}
		}
		if ext.URI != f.store.URI("training-jobs/job-ext/") || ext.Metadata.JobID != "job-ext" || len(ext.Files[job.InputFile]) == 0 {
			t.Errorf("layout %s, metadata %+v", ext.URI, ext.Metadata)
		}
		// A whole layout is the program's: nothing derived, nothing
		// rewritten.
		if ext.Metadata.ANN.BuiltBy != "" || ext.Metadata.Covisit.BuiltBy != "" || ext.Metadata.UserVectors.BuiltBy != "" {
			t.Errorf("the runner rebuilt a whole layout's artifacts: ann %+v, covisit %+v, user vectors %+v", ext.Metadata.ANN, ext.Metadata.Covisit, ext.Metadata.UserVectors)
		}
		var epochs int
		for _, p := range progress {
			if p.Stage == job.StageRanker && p.Steps == 5 && p.Metrics["loss"] > 0 && p.Elapsed > 0 {
				epochs++
			}
		}
		if epochs != 5 || progress[len(progress)-1].Stage != job.StageWrite {
			t.Errorf("progress %+v", progress)
		}

		_, err = (&job.Command{Path: script(t, "fail"), Log: &log}).Train(ctx, f.input("job-fail", 7), job.LocalDir(t.TempDir()))
		if err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "CUDA out of memory") {
			t.Errorf("failing program: %v", err)
		}
		if !strings.Contains(log.String(), "loading CUDA") {
			t.Errorf("the program's log was not passed through:\n%s", log.String())
		}
		_, err = (&job.Command{Path: script(t, "nothing")}).Train(ctx, f.input("job-nothing", 7), job.LocalDir(t.TempDir()))
		if !errors.Is(err, job.ErrInvalidLayout) || !strings.Contains(err.Error(), "exited 0 but") || !strings.Contains(err.Error(), "no metadata.json") {
			t.Errorf("program that wrote nothing: %v", err)
		}
		in := f.input("job-mem", 7)
		in.Data = &job.TrainingData{Manifest: f.set}
		if _, err := c.Train(ctx, in, job.LocalDir(t.TempDir())); err == nil || !strings.Contains(err.Error(), "not in memory") {
			t.Errorf("in-memory training set: %v", err)
		}
		// A layout from another job is not this job's.
		if _, err := (&job.Command{Path: "/bin/true"}).Train(ctx, f.input("job-other", 7), dir); !errors.Is(err, job.ErrInvalidLayout) || !strings.Contains(err.Error(), "wrote job job-a") {
			t.Errorf("another job's layout: %v", err)
		}
	})

	t.Run("external command without the serving indexes", func(t *testing.T) {
		program := script(t, "layout")
		run := func(t *testing.T, id string, c *job.Command, env ...string) (*job.Layout, job.LocalDir, []job.Stage, error) {
			t.Helper()
			var stages []job.Stage
			c.Path, c.Env = program, append([]string{layoutFromEnv + "=" + string(dir)}, env...)
			c.Progress = func(p job.Progress) {
				if len(stages) == 0 || stages[len(stages)-1] != p.Stage {
					stages = append(stages, p.Stage)
				}
			}
			out := job.LocalDir(t.TempDir())
			l, err := c.Train(ctx, f.input(id, 7), out)
			return l, out, stages, err
		}

		t.Run("format 1: all derived", func(t *testing.T) {
			got, out, stages, err := run(t, "job-f1", &job.Command{S3: &f.cfg.S3}, layoutFormatEnv+"=1", layoutDropEnv+"=items.ann,covisit.bin,users.emb")
			if err != nil {
				t.Fatal(err)
			}
			if want := []job.Stage{job.StageWrite, job.StageEmbeddings, job.StageANN, job.StageCovisit, job.StageWrite}; !slices.Equal(stages, want) {
				t.Errorf("progress stages %v, want the program's write, then the runner's %v", stages, want[1:])
			}
			// Derived as the Go trainer builds them: the same bytes as
			// its in-process run on the same job (users.emb folded in
			// from items.ivf is the ALS run's user factors, bit for bit).
			for _, name := range []string{job.RankerFile, job.IndexFile, job.ANNFile, job.CovisitFile, job.UsersFile} {
				if !bytes.Equal(got.Files[name], l.Files[name]) {
					t.Errorf("%s differs from the Go trainer's", name)
				}
			}
			m := got.Metadata
			wantANN, wantCov, wantUsers := md.ANN, md.Covisit, md.UserVectors
			wantANN.BuiltBy, wantCov.BuiltBy, wantUsers.BuiltBy = job.BuiltByRunner, job.BuiltByRunner, job.BuiltByRunner
			if m.Format != job.MetadataFormat || m.JobID != "job-f1" || m.ANN != wantANN || m.Covisit != wantCov || m.UserVectors != wantUsers ||
				len(m.Artifacts) != 5 || m.Params.ANN != md.Params.ANN || m.Params.Covisit != md.Params.Covisit {
				t.Errorf("metadata %+v, want format %d with ann %+v, covisit %+v and user vectors %+v", m, job.MetadataFormat, wantANN, wantCov, wantUsers)
			}
			for _, stage := range []string{"covisit", "users"} {
				if _, ok := m.Timings[stage]; !ok {
					t.Errorf("timings %v: no %s timing of the runner", m.Timings, stage)
				}
			}
			if m.Timings["ranker"] != md.Timings["ranker"] {
				t.Errorf("timings %v: want the program's ranker (%v)", m.Timings, md.Timings["ranker"])
			}
			// What is on disk is what Train returned, and reads back.
			back, err := job.CheckLayout(ctx, out)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(back.Files[job.MetadataFile], got.Files[job.MetadataFile]) {
				t.Error("metadata.json on disk differs from the returned layout's")
			}
		})

		t.Run("format 2 without covisit.bin: only that derived", func(t *testing.T) {
			got, _, stages, err := run(t, "job-f2", &job.Command{Store: f.store}, layoutFormatEnv+"=2", layoutDropEnv+"=covisit.bin")
			if err != nil {
				t.Fatal(err)
			}
			if want := []job.Stage{job.StageWrite, job.StageCovisit, job.StageWrite}; !slices.Equal(stages, want) {
				t.Errorf("progress stages %v, want %v", stages, want)
			}
			if m := got.Metadata; m.ANN != md.ANN || m.Covisit.BuiltBy != job.BuiltByRunner || !bytes.Equal(got.Files[job.ANNFile], l.Files[job.ANNFile]) ||
				!bytes.Equal(got.Files[job.CovisitFile], l.Files[job.CovisitFile]) {
				t.Errorf("the program's items.ann must stay its own and covisit.bin be derived: ann %+v, covisit %+v", m.ANN, m.Covisit)
			}
		})

		t.Run("format 2 without users.emb: only that derived", func(t *testing.T) {
			got, _, stages, err := run(t, "job-f2u", &job.Command{Store: f.store}, layoutFormatEnv+"=2", layoutDropEnv+"=users.emb")
			if err != nil {
				t.Fatal(err)
			}
			if want := []job.Stage{job.StageWrite, job.StageEmbeddings, job.StageWrite}; !slices.Equal(stages, want) {
				t.Errorf("progress stages %v, want %v", stages, want)
			}
			wantUsers := md.UserVectors
			wantUsers.BuiltBy = job.BuiltByRunner
			if m := got.Metadata; m.ANN != md.ANN || m.Covisit != md.Covisit || m.UserVectors != wantUsers || len(m.Artifacts) != 5 {
				t.Errorf("ann %+v, covisit %+v, user vectors %+v: want the program's indexes and user vectors %+v derived", m.ANN, m.Covisit, m.UserVectors, wantUsers)
			}
			for _, name := range []string{job.ANNFile, job.CovisitFile, job.UsersFile} {
				if !bytes.Equal(got.Files[name], l.Files[name]) {
					t.Errorf("%s differs from the Go trainer's", name)
				}
			}
		})

		for _, tc := range []struct {
			name string
			env  []string
			want string
		}{
			{"corrupt items.ivf", []string{layoutCorruptEnv + "=" + job.IndexFile}, "items.ivf: retrieval: corrupt index artifact"},
			{"another event range", []string{layoutEventsFromEnv + "=" + md.Embeddings.From.Add(time.Hour).Format(time.RFC3339)},
				"but the job's event range is " + events.TopicInteractions + " in [" + md.Embeddings.From.Format(time.RFC3339)},
		} {
			t.Run("refused: "+tc.name, func(t *testing.T) {
				env := append([]string{layoutFormatEnv + "=1", layoutDropEnv + "=items.ann,covisit.bin,users.emb"}, tc.env...)
				_, out, _, err := run(t, "job-bad", &job.Command{Store: f.store}, env...)
				if !errors.Is(err, job.ErrInvalidLayout) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "exited 0 but") {
					t.Fatalf("Train: %v, want %q", err, tc.want)
				}
				// Nothing derived, the program's metadata left as it was.
				for _, name := range []string{job.ANNFile, job.CovisitFile, job.UsersFile} {
					if _, err := os.Stat(filepath.Join(string(out), name)); !errors.Is(err, os.ErrNotExist) {
						t.Errorf("%s was written: %v", name, err)
					}
				}
				if _, err := job.CheckLayout(ctx, out); err == nil || !strings.Contains(err.Error(), "format 1") {
					t.Errorf("the program's format-1 metadata was rewritten: %v", err)
				}
			})
		}
	})

	t.Run("tampered layouts", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			edit func(dir string)
			want string
		}{
			{"unfinished", func(d string) { os.Remove(filepath.Join(d, job.MetadataFile)) }, "did not finish"},
			{"ranker changed", func(d string) { flip(t, filepath.Join(d, job.RankerFile)) }, "ranker.onnx has"},
			{"index missing", func(d string) { os.Remove(filepath.Join(d, job.IndexFile)) }, "items.ivf is listed but missing"},
			{"ANN index changed", func(d string) { flip(t, filepath.Join(d, job.ANNFile)) }, "items.ann has"},
			{"co-visitation table missing", func(d string) { os.Remove(filepath.Join(d, job.CovisitFile)) }, "covisit.bin is listed but missing"},
			{"user vectors changed", func(d string) { flip(t, filepath.Join(d, job.UsersFile)) }, "users.emb has"},
			{"user vectors built by someone unknown", func(d string) {
				p := filepath.Join(d, job.MetadataFile)
				b, _ := os.ReadFile(p)
				os.WriteFile(p, bytes.Replace(b, []byte("\n  \"user_vectors\": {"), []byte("\n  \"user_vectors\": {\n    \"built_by\": \"gpu\","), 1), 0o644)
			}, `user_vectors built_by "gpu"`},
			{"user vectors described but not listed", func(d string) {
				editMetadata(t, d, func(md map[string]any) {
					md["artifacts"] = slices.DeleteFunc(md["artifacts"].([]any), func(a any) bool { return a.(map[string]any)["name"] == job.UsersFile })
				})
			}, "but the artifacts do not list users.emb"},
			{"ANN index under another role", func(d string) {
				p := filepath.Join(d, job.MetadataFile)
				b, _ := os.ReadFile(p)
				os.WriteFile(p, bytes.Replace(b, []byte(`"name": "items.ann",
      "role": "ann_index"`), []byte(`"name": "items.ann",
      "role": "embeddings"`), 1), 0o644)
			}, "artifact items.ann has role embeddings, want ann_index"},
			{"ANN index built by someone unknown", func(d string) {
				p := filepath.Join(d, job.MetadataFile)
				b, _ := os.ReadFile(p)
				os.WriteFile(p, bytes.Replace(b, []byte("\n  \"ann\": {"), []byte("\n  \"ann\": {\n    \"built_by\": \"gpu\","), 1), 0o644)
			}, `ann built_by "gpu"`},
			{"metadata edited", func(d string) {
				p := filepath.Join(d, job.MetadataFile)
				b, _ := os.ReadFile(p)
				os.WriteFile(p, bytes.Replace(b, []byte(`"input_width": `), []byte(`"input_width": 1`), 1), 0o644)
			}, "input_width 1"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				d := t.TempDir()
				for name, b := range l.Files {
					if err := os.WriteFile(filepath.Join(d, name), b, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				if _, err := job.CheckLayout(ctx, job.LocalDir(d)); err != nil {
					t.Fatalf("the copy: %v", err)
				}
				tc.edit(d)
				if _, err := job.CheckLayout(ctx, job.LocalDir(d)); !errors.Is(err, job.ErrInvalidLayout) || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("CheckLayout: %v, want %q", err, tc.want)
				}
			})
		}
	})

	t.Run("a layout from before users.emb still checks and registers", func(t *testing.T) {
		d := t.TempDir()
		for name, b := range l.Files {
			if name != job.UsersFile {
				if err := os.WriteFile(filepath.Join(d, name), b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
		editMetadata(t, d, func(md map[string]any) {
			delete(md, "user_vectors")
			md["artifacts"] = slices.DeleteFunc(md["artifacts"].([]any), func(a any) bool { return a.(map[string]any)["name"] == job.UsersFile })
		})
		old, err := job.CheckLayout(ctx, job.LocalDir(d))
		if err != nil {
			t.Fatal(err)
		}
		if old.Metadata.UserVectors != (job.UserVectors{}) || len(old.Metadata.Artifacts) != 4 {
			t.Errorf("metadata %+v", old.Metadata)
		}
		c := &registry.Client{Store: f.store, Events: &registrytest.Recorder{}, Features: f.fs, Validator: &onnxcheck.Validator{}}
		m, err := job.Register(ctx, c, old, "ranker-old-layout", "test", "")
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := m.Artifact(job.UsersFile); ok || len(m.Artifacts) != 6 {
			t.Errorf("registered %+v", m.Artifacts)
		}
	})
}

// editMetadata rewrites the metadata.json of the layout in dir with f.
func editMetadata(t *testing.T, dir string, f func(md map[string]any)) {
	t.Helper()
	p := filepath.Join(dir, job.MetadataFile)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var md map[string]any
	if err := json.Unmarshal(b, &md); err != nil {
		t.Fatal(err)
	}
	f(md)
	if b, err = json.MarshalIndent(md, "", "  "); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func dotf(a, b []float32) float32 {
	var s float32
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

// flip inverts the last byte of a file.
func flip(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 0xff
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
