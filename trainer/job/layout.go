package job

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/objstore"
	"github.com/adaptrec/adaptrec/registry"
	"github.com/adaptrec/adaptrec/serving/ann"
	"github.com/adaptrec/adaptrec/serving/covisit"
	"github.com/adaptrec/adaptrec/trainer/ranker"
	"github.com/adaptrec/adaptrec/trainer/retrieval"
)

// File names of the artifact layout (see the package documentation).
const (
	InputFile    = "input.json"
	RankerFile   = "ranker.onnx"
	IndexFile    = "items.ivf"
	ANNFile      = "items.ann"
	CovisitFile  = "covisit.bin"
	UsersFile    = "users.emb"
	MetadataFile = "metadata.json"
)

// Registry roles of items.ann, covisit.bin and users.emb: the registry's
// validator (registry/onnxcheck) loads each by its role before the version
// is written.
const (
	ANNRole     = registry.RoleANNIndex
	CovisitRole = registry.RoleCovisit
	UsersRole   = registry.RoleUserVectors
)

// layoutRoles are the artifacts of a layout, with their roles, in the
// order the metadata lists them. Optional ones may be missing from a
// layout written before they existed.
var layoutRoles = []struct {
	name     string
	role     registry.Role
	optional bool
}{
	{RankerFile, registry.RoleRanker, false},
	{IndexFile, registry.RoleIndex, false},
	{ANNFile, ANNRole, false},
	{CovisitFile, CovisitRole, false},
	{UsersFile, UsersRole, true},
}

// MetadataFormat is the version of metadata.json this package writes and
// reads. Format 2 added items.ann and covisit.bin to the layout, with
// their ANN and Covisit sections. users.emb and its user_vectors section
// came later within format 2 and are optional: layouts written before them
// stay valid, and a CheckLayout that predates them passes new layouts (it
// checks the sizes and SHA-256 of artifacts it does not know), though only
// a registry that knows the user_vectors role registers them.
const MetadataFormat = 2

// Trainer names in Metadata.Trainer.
const TrainerGo = "go"

// BuiltByRunner is ANNIndex.BuiltBy, CovisitTable.BuiltBy and
// UserVectors.BuiltBy for an artifact Command derived after an external
// program exited, because the program's layout lacked it (see Command).
// Empty means the trainer built it.
const BuiltByRunner = "runner"

// Required metrics: every layout reports the ranker's AUC and log loss on
// the validation part.
const (
	MetricAUC     = "auc"
	MetricLogLoss = "logloss"
)

// ErrInvalidLayout is wrapped by CheckLayout's errors: the folder is not a
// finished job's layout, or disagrees with its metadata.
var ErrInvalidLayout = errors.New("invalid training job output")

// Metadata describes a finished job; it is metadata.json, written last.
type Metadata struct {
	// Format is MetadataFormat.
	Format int `json:"format"`
	// JobID is the Input's.
	JobID string `json:"job_id"`
	// Trainer names the implementation ("go", or what an external
	// program calls itself, e.g. "pytorch").
	Trainer string `json:"trainer"`
	// CodeVersion identifies the trainer's code (a commit).
	CodeVersion string `json:"code_version"`
	// CreatedAt is when the job finished training.
	CreatedAt time.Time `json:"created_at"`
	// TrainingSet is the training set's id.
	TrainingSet string `json:"training_set"`
	// SchemaHash is the feature schema hash of the training set and the
	// ranker (Schema.SchemaHash); Schema the ranker's input features in
	// row order, InputWidth their float32 values per row.
	SchemaHash string               `json:"schema_hash"`
	Schema     features.ModelSchema `json:"model_schema"`
	InputWidth int                  `json:"input_width"`
	// Params are the parameters the job ran with, defaults resolved.
	Params Params `json:"params"`
	// Split says which examples trained and which measured the ranker.
	Split Split `json:"split"`
	// Embeddings describes the item embeddings and index.
	Embeddings Embeddings `json:"embeddings"`
	// ANN describes items.ann, Covisit covisit.bin.
	ANN     ANNIndex     `json:"ann"`
	Covisit CovisitTable `json:"covisit"`
	// UserVectors describes users.emb; zero (and left out of the JSON)
	// for a layout without it.
	UserVectors UserVectors `json:"user_vectors,omitzero"`
	// Metrics are measured on the validation part: at least MetricAUC and
	// MetricLogLoss, all finite.
	Metrics map[string]float64 `json:"metrics"`
	// Artifacts are the layout's files but input.json and metadata.json.
	Artifacts []Artifact `json:"artifacts"`
	// Timings are seconds per stage ("total" for the whole job).
	Timings map[string]float64 `json:"timings_s,omitempty"`
}

// Split is the time split of a training set.
type Split struct {
	// Cutoff starts the validation part: every example at or after it.
	Cutoff time.Time `json:"cutoff"`
	// TrainEnd ends the training part: every example before it. It is
	// Cutoff minus Gap, so every training label was settled (its
	// attribution window closed) before the first validation example.
	TrainEnd time.Time `json:"train_end"`
	Gap      Duration  `json:"gap"`
	// Rows and positives per part; GapRows fell between the parts.
	TrainRows           int64 `json:"train_rows"`
	TrainPositives      int64 `json:"train_positives"`
	ValidationRows      int64 `json:"validation_rows"`
	ValidationPositives int64 `json:"validation_positives"`
	GapRows             int64 `json:"gap_rows"`
	// EarlyStoppingRows of the training part chose the best epoch;
	// BestEpoch and EpochsRun report the ranker's training.
	EarlyStoppingRows int64 `json:"early_stopping_rows"`
	BestEpoch         int   `json:"best_epoch"`
	EpochsRun         int   `json:"epochs_run"`
}

// Embeddings describes how the item embeddings were trained.
type Embeddings struct {
	// Topic, From and To are the event log range read: [From, To), To at
	// most Split.Cutoff.
	Topic string    `json:"topic"`
	From  time.Time `json:"from"`
	To    time.Time `json:"to"`
	// EventsRead counts the events scanned, Positives those that count
	// (Params.Embeddings.Weights), Pairs the distinct user–item pairs.
	EventsRead int64 `json:"events_read"`
	Positives  int64 `json:"positives"`
	Pairs      int64 `json:"pairs"`
	// Users and Items have at least one positive; the index holds Items.
	Users int `json:"users"`
	Items int `json:"items"`
	// Dims, Lists and NProbe describe the index.
	Dims   int `json:"dims"`
	Lists  int `json:"lists"`
	NProbe int `json:"nprobe"`
}

// ANNIndex describes items.ann: serving/ann's HNSW index over the same
// item vectors as items.ivf. Its int32 ids are items.ivf's item indexes
// (0..Items-1), so a hit's id names an item through items.ivf's id table.
type ANNIndex struct {
	// BuiltBy is empty when the trainer built items.ann, BuiltByRunner
	// when Command derived it from items.ivf.
	BuiltBy        string  `json:"built_by,omitempty"`
	Items          int     `json:"items"`
	Dims           int     `json:"dims"`
	M              int     `json:"m"`
	EfConstruction int     `json:"ef_construction"`
	EfSearch       int     `json:"ef_search"`
	NormRatio      float64 `json:"norm_ratio"`
	Bands          int     `json:"bands"`
}

// CovisitTable describes covisit.bin: serving/covisit's co-visitation
// table, built from the embeddings' positives (Embeddings.Positives in
// [From, To)). Its items are items.ivf's, in the same order.
type CovisitTable struct {
	// BuiltBy is empty when the trainer built covisit.bin, BuiltByRunner
	// when Command derived it from the job's positives.
	BuiltBy string `json:"built_by,omitempty"`
	Items   int    `json:"items"`
	// ItemsWithNeighbours have at least one neighbour; Edges counts the
	// neighbour entries of all items.
	ItemsWithNeighbours int   `json:"items_with_neighbours"`
	Edges               int64 `json:"edges"`
}

// UserVectors describes users.emb: trainer/retrieval's user-vectors
// artifact, the vectors of the users with a positive in the embeddings'
// event range, from the same run as items.ivf's item vectors (of the same
// dims), so a stored user vector scores items.ivf's items as the trained
// model does. Serving uses it for a user without recent items.
type UserVectors struct {
	// BuiltBy is empty when the trainer wrote its ALS user factors,
	// BuiltByRunner when Command folded each user in from their positives
	// against items.ivf's vectors (Index.Embedder).
	BuiltBy string `json:"built_by,omitempty"`
	Users   int    `json:"users"`
	Dims    int    `json:"dims"`
}

// Artifact is one file of the layout.
type Artifact struct {
	Name   string        `json:"name"`
	Role   registry.Role `json:"role"`
	Bytes  int64         `json:"bytes"`
	SHA256 string        `json:"sha256"`
}

// Layout is a finished job's output: its metadata and the bytes of every
// file (input.json and metadata.json included).
type Layout struct {
	// URI is the output folder's.
	URI      string
	Metadata Metadata
	Files    map[string][]byte
}

func artifactOf(name string, role registry.Role, data []byte) Artifact {
	sum := sha256.Sum256(data)
	return Artifact{Name: name, Role: role, Bytes: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}
}

// EncodeMetadata returns metadata.json's bytes.
func EncodeMetadata(m Metadata) ([]byte, error) {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode training job metadata: %w", err)
	}
	return append(b, '\n'), nil
}

// CheckLayout reads a finished job's output folder and checks it: the
// metadata is complete (ids, code version, schema hash and schema, finite
// metrics with AUC and log loss), every artifact it lists has its size and
// SHA-256, ranker.onnx is an ONNX ranker whose adaptrec metadata
// (trainer/ranker) names the same feature schema and width, items.ivf
// loads as a retrieval index of the recorded size, items.ann loads as an
// ANN index over exactly items.ivf's items and vectors (ids 0..n-1), and
// covisit.bin loads as a co-visitation table over items.ivf's ids, in its
// order. It needs no ONNX Runtime; the registry's validator runs the
// model. users.emb is optional (layouts written before it lack it); when
// listed, it must load as user vectors of items.ivf's dims and agree with
// the user_vectors section. Errors wrap ErrInvalidLayout, or the folder's
// error when a file cannot be read.
func CheckLayout(ctx context.Context, dir Dir) (*Layout, error) {
	l := &Layout{URI: dir.URI(""), Files: map[string][]byte{}}
	b, err := dir.Get(ctx, MetadataFile)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("%w: %s: no %s (the job did not finish)", ErrInvalidLayout, l.URI, MetadataFile)
	}
	if err != nil {
		return nil, err
	}
	l.Files[MetadataFile] = b
	if err := json.Unmarshal(b, &l.Metadata); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalidLayout, dir.URI(MetadataFile), err)
	}
	m := &l.Metadata
	var bad []string
	add := func(format string, args ...any) { bad = append(bad, fmt.Sprintf(format, args...)) }
	if m.Format != MetadataFormat {
		add("format %d, this build reads %d", m.Format, MetadataFormat)
	}
	if !jobIDRE.MatchString(m.JobID) {
		add("job_id %q is not a job id", m.JobID)
	}
	if m.Trainer == "" || m.CodeVersion == "" || m.TrainingSet == "" || m.CreatedAt.IsZero() {
		add("trainer %q, code_version %q, training_set %q and created_at %s are all required",
			m.Trainer, m.CodeVersion, m.TrainingSet, m.CreatedAt.Format(time.RFC3339))
	}
	if !strings.HasPrefix(m.SchemaHash, features.SchemaHashPrefix) || m.SchemaHash != m.Schema.SchemaHash {
		add("schema_hash %q must be an %s hash equal to model_schema's %q", m.SchemaHash, features.SchemaHashPrefix, m.Schema.SchemaHash)
	}
	if w, err := schemaWidth(m.Schema); err != nil {
		add("model_schema: %v", err)
	} else if w != m.InputWidth {
		add("input_width %d, but model_schema's features fill rows of %d", m.InputWidth, w)
	}
	for _, k := range []string{MetricAUC, MetricLogLoss} {
		if _, ok := m.Metrics[k]; !ok {
			add("metric %s missing", k)
		}
	}
	for k, v := range m.Metrics {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			add("metric %s is %v", k, v)
		}
	}
	if auc, ok := m.Metrics[MetricAUC]; ok && !(auc >= 0 && auc <= 1) {
		add("metric %s %v is outside [0, 1]", MetricAUC, auc)
	}
	for _, b := range []struct{ section, by string }{{"ann", m.ANN.BuiltBy}, {"covisit", m.Covisit.BuiltBy}, {"user_vectors", m.UserVectors.BuiltBy}} {
		if b.by != "" && b.by != BuiltByRunner {
			add("%s built_by %q: want none (the trainer built it) or %q", b.section, b.by, BuiltByRunner)
		}
	}
	roles := map[string]registry.Role{}
	for _, a := range m.Artifacts {
		if a.Name == "" || strings.ContainsAny(a.Name, "/\\") || a.Name == MetadataFile || a.Name == InputFile || roles[a.Name] != "" {
			add("artifact name %q is empty, a path, reserved or repeated", a.Name)
			continue
		}
		roles[a.Name] = a.Role
		data, err := dir.Get(ctx, a.Name)
		if errors.Is(err, ErrNotFound) {
			add("artifact %s is listed but missing", a.Name)
			continue
		}
		if err != nil {
			return nil, err
		}
		if got := artifactOf(a.Name, a.Role, data); got.Bytes != a.Bytes || got.SHA256 != a.SHA256 {
			add("artifact %s has %d bytes and SHA-256 %s, the metadata says %d and %s", a.Name, got.Bytes, got.SHA256, a.Bytes, a.SHA256)
			continue
		}
		l.Files[a.Name] = data
	}
	for _, r := range layoutRoles {
		if got, ok := roles[r.name]; !ok {
			if !r.optional {
				add("artifacts must include %s (role %s)", r.name, r.role)
			}
		} else if got != r.role {
			add("artifact %s has role %s, want %s", r.name, got, r.role)
		}
	}
	if data, ok := l.Files[RankerFile]; ok {
		md, err := ranker.ReadMetadata(data)
		switch {
		case err != nil:
			add("%s: %v", RankerFile, err)
		case md.Width != m.InputWidth:
			add("%s reads rows of %d values, the metadata says %d", RankerFile, md.Width, m.InputWidth)
		case !reflect.DeepEqual(md.Schema, m.Schema):
			add("%s was exported for feature schema %s %v, the metadata says %s %v", RankerFile, md.Schema.SchemaHash, md.Schema.Names(), m.SchemaHash, m.Schema.Names())
		}
	}
	var ivf *retrieval.Index
	if data, ok := l.Files[IndexFile]; ok {
		x, err := retrieval.Load(bytes.NewReader(data))
		switch {
		case err != nil:
			add("%s: %v", IndexFile, err)
		case x.Len() != m.Embeddings.Items || x.Dims() != m.Embeddings.Dims:
			add("%s holds %d items of %d dims, the metadata says %d of %d", IndexFile, x.Len(), x.Dims(), m.Embeddings.Items, m.Embeddings.Dims)
		default:
			ivf = x
		}
	}
	if data, ok := l.Files[ANNFile]; ok {
		if err := checkANN(data, m.ANN, ivf); err != nil {
			add("%s: %v", ANNFile, err)
		}
	}
	if data, ok := l.Files[CovisitFile]; ok {
		if err := checkCovisit(data, m.Covisit, ivf); err != nil {
			add("%s: %v", CovisitFile, err)
		}
	}
	if data, ok := l.Files[UsersFile]; ok {
		if err := checkUsers(data, m.UserVectors, ivf); err != nil {
			add("%s: %v", UsersFile, err)
		}
	} else if _, listed := roles[UsersFile]; !listed && m.UserVectors != (UserVectors{}) {
		add("user_vectors describes %+v, but the artifacts do not list %s", m.UserVectors, UsersFile)
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("%w: %s: %s", ErrInvalidLayout, l.URI, strings.Join(bad, "; "))
	}
	if in, err := dir.Get(ctx, InputFile); err == nil {
		l.Files[InputFile] = in
	} else if !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	return l, nil
}

// checkANN loads items.ann and checks it against its metadata and, when
// items.ivf loaded, against that: the same items (ids 0..n-1 are its item
// indexes) with the same vectors, bit for bit.
func checkANN(data []byte, md ANNIndex, ivf *retrieval.Index) error {
	x, err := ann.Load(bytes.NewReader(data))
	if err != nil {
		return err
	}
	got := ANNIndex{BuiltBy: md.BuiltBy, Items: x.Len(), Dims: x.Dims(), M: x.M(), EfConstruction: x.EfConstruction(), EfSearch: x.EfSearch(),
		NormRatio: x.NormRatio(), Bands: x.Bands()}
	if got != md {
		return fmt.Errorf("holds %+v, the metadata says %+v", got, md)
	}
	if ivf == nil {
		return nil
	}
	if x.Len() != ivf.Len() || x.Dims() != ivf.Dims() {
		return fmt.Errorf("holds %d items of %d dims, %s %d of %d", x.Len(), x.Dims(), IndexFile, ivf.Len(), ivf.Dims())
	}
	for i := range int32(ivf.Len()) {
		v, ok := x.Vector(i)
		if !ok {
			return fmt.Errorf("has no item %d (%s's %q): its ids must be %s's item indexes", i, IndexFile, ivf.ID(i), IndexFile)
		}
		w := ivf.Vector(i)
		for k := range v {
			if math.Float32bits(v[k]) != math.Float32bits(w[k]) {
				return fmt.Errorf("item %d (%q) has another vector than in %s: not built from the same embeddings", i, ivf.ID(i), IndexFile)
			}
		}
	}
	return nil
}

// checkCovisit loads covisit.bin and checks it against its metadata and,
// when items.ivf loaded, against that: the same item ids in the same
// order, so one index names one item in both.
func checkCovisit(data []byte, md CovisitTable, ivf *retrieval.Index) error {
	t, err := covisit.Load(bytes.NewReader(data))
	if err != nil {
		return err
	}
	got := CovisitTable{BuiltBy: md.BuiltBy, Items: t.Len(), Edges: int64(t.Edges())}
	for i := range int32(t.Len()) {
		if nbr, _ := t.Neighbours(i); len(nbr) > 0 {
			got.ItemsWithNeighbours++
		}
	}
	if got != md {
		return fmt.Errorf("holds %+v, the metadata says %+v", got, md)
	}
	if ivf == nil {
		return nil
	}
	if t.Len() != ivf.Len() {
		return fmt.Errorf("holds %d items, %s %d", t.Len(), IndexFile, ivf.Len())
	}
	for i := range int32(t.Len()) {
		if t.ID(i) != ivf.ID(i) {
			return fmt.Errorf("item %d is %q, in %s %q: the tables must list the same items in the same order", i, t.ID(i), IndexFile, ivf.ID(i))
		}
	}
	return nil
}

// checkUsers loads users.emb and checks it against its metadata and, when
// items.ivf loaded, against that: vectors of the same dims, which serving
// searches items.ivf's items with.
func checkUsers(data []byte, md UserVectors, ivf *retrieval.Index) error {
	u, err := retrieval.LoadUserVectors(bytes.NewReader(data))
	if err != nil {
		return err
	}
	if got := (UserVectors{BuiltBy: md.BuiltBy, Users: u.Len(), Dims: u.Dims()}); got != md {
		return fmt.Errorf("holds %+v, the metadata says %+v", got, md)
	}
	if ivf != nil && u.Dims() != ivf.Dims() {
		return fmt.Errorf("holds vectors of %d dims, %s of %d: not from the same embeddings", u.Dims(), IndexFile, ivf.Dims())
	}
	return nil
}

// schemaWidth is the row width a model schema implies.
func schemaWidth(s features.ModelSchema) (int, error) {
	if len(s.Features) == 0 {
		return 0, errors.New("no features")
	}
	w := 0
	for _, f := range s.Features {
		t, err := features.ParseType(f.Type)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", f.Name, err)
		}
		if t.Width() == 0 {
			return 0, fmt.Errorf("%s: a %s is not a ranker input", f.Name, f.Type)
		}
		w += t.Width()
	}
	return w, nil
}

// ErrNotFound is returned by Dir.Get for a file that does not exist.
var ErrNotFound = errors.New("no such file in the training job folder")

// Dir is a job's output folder: a local directory or an S3 prefix.
type Dir interface {
	// Put writes a file, replacing it.
	Put(ctx context.Context, name string, data []byte) error
	// Get reads a file; a missing one is ErrNotFound.
	Get(ctx context.Context, name string) ([]byte, error)
	// URI names a file of the folder; URI("") names the folder, ending
	// with a slash.
	URI(name string) string
}

// LocalDir is a folder on the local file system.
type LocalDir string

var _ Dir = LocalDir("")

// Put writes the file atomically (a temporary file renamed over it),
// creating the folder if needed.
func (d LocalDir) Put(_ context.Context, name string, data []byte) error {
	if err := os.MkdirAll(string(d), 0o755); err != nil {
		return fmt.Errorf("training job folder: %w", err)
	}
	f, err := os.CreateTemp(string(d), "."+name+".tmp*")
	if err != nil {
		return fmt.Errorf("training job folder: %w", err)
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(string(d), name))
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", d.URI(name), err)
	}
	return nil
}

// Get reads the file.
func (d LocalDir) Get(_ context.Context, name string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(string(d), name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", d.URI(name), ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", d.URI(name), err)
	}
	return b, nil
}

// URI returns file:///abs/path/name.
func (d LocalDir) URI(name string) string {
	abs, err := filepath.Abs(string(d))
	if err != nil {
		abs = string(d)
	}
	return (&url.URL{Scheme: "file", Path: filepath.ToSlash(abs) + "/" + name}).String()
}

// ObjectStore is what StoreDir needs of an object store; *objstore.Store
// implements it.
type ObjectStore interface {
	Get(ctx context.Context, key string) ([]byte, objstore.ObjectInfo, error)
	Put(ctx context.Context, key string, body []byte, opts objstore.PutOptions) (string, error)
	URI(key string) string
}

var _ ObjectStore = (*objstore.Store)(nil)

// StoreDir is a folder in an object store: the keys under Prefix.
type StoreDir struct {
	Store ObjectStore
	// Prefix ends with a slash (StoreDir adds one when it does not).
	Prefix string
}

var _ Dir = StoreDir{}

// NewStoreDir returns the folder of st under prefix.
func NewStoreDir(st ObjectStore, prefix string) StoreDir {
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return StoreDir{Store: st, Prefix: prefix}
}

// Put writes the object.
func (d StoreDir) Put(ctx context.Context, name string, data []byte) error {
	ct := "application/octet-stream"
	if strings.HasSuffix(name, ".json") {
		ct = "application/json"
	}
	if _, err := d.Store.Put(ctx, d.Prefix+name, data, objstore.PutOptions{ContentType: ct}); err != nil {
		return fmt.Errorf("write %s: %w", d.URI(name), err)
	}
	return nil
}

// Get reads the object.
func (d StoreDir) Get(ctx context.Context, name string) ([]byte, error) {
	b, _, err := d.Store.Get(ctx, d.Prefix+name)
	if errors.Is(err, objstore.ErrNotFound) {
		return nil, fmt.Errorf("%s: %w", d.URI(name), ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", d.URI(name), err)
	}
	return b, nil
}

// URI returns s3://bucket/prefix/name.
func (d StoreDir) URI(name string) string { return d.Store.URI(d.Prefix + name) }

// OpenDir opens a job folder by URI: s3://bucket/key/ (through cfg's
// endpoint, region and credentials; its bucket and prefix are ignored),
// file:///path, or a plain local path.
func OpenDir(ctx context.Context, uri string, cfg config.S3) (Dir, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("training job folder %q: %w", uri, err)
	}
	switch u.Scheme {
	case "":
		return LocalDir(uri), nil
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("training job folder %q: a file URI names a local path (file:///path)", uri)
		}
		return LocalDir(u.Path), nil
	case "s3":
		st, key, err := openBucket(ctx, u, cfg)
		if err != nil {
			return nil, fmt.Errorf("training job folder %q: %w", uri, err)
		}
		return NewStoreDir(st, key), nil
	}
	return nil, fmt.Errorf("training job folder %q: want an s3:// or file:// URI or a local path", uri)
}

// OpenStore opens the store an Input names (s3://bucket/prefix/), through
// cfg's endpoint, region and credentials.
func OpenStore(ctx context.Context, uri string, cfg config.S3) (*objstore.Store, error) {
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "s3" {
		return nil, fmt.Errorf("training job store %q: want s3://bucket/prefix/", uri)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("training job store %q: no bucket", uri)
	}
	cfg.Bucket, cfg.Prefix = u.Host, strings.TrimPrefix(u.Path, "/")
	st, err := objstore.New(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("training job store %q: %w", uri, err)
	}
	return st, nil
}

// openBucket returns a store for u's bucket whose key prefix is u's path,
// and that path.
func openBucket(ctx context.Context, u *url.URL, cfg config.S3) (*objstore.Store, string, error) {
	if u.Host == "" {
		return nil, "", errors.New("no bucket")
	}
	key := strings.TrimPrefix(u.Path, "/")
	cfg.Bucket, cfg.Prefix = u.Host, ""
	st, err := objstore.New(ctx, cfg)
	if err != nil {
		return nil, "", err
	}
	return st, key, nil
}
