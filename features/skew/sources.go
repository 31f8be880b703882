package skew

import (
	"cmp"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/adaptrec/adaptrec/eventlog"
	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/features/offline"
	"github.com/adaptrec/adaptrec/features/snapshot"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
)

// Defaults of Options.
const (
	DefaultMaxEvents        = 10_000
	DefaultMaxItemsPerEvent = 10
)

// Options configure Run. Zero values mean the documented defaults.
type Options struct {
	// TrainingSet is the id of the training set compared (required).
	TrainingSet string
	// From and To bound the event times of the PredictionEvents read:
	// [From, To).
	From, To time.Time
	// Topic is the archived topic read; events.TopicPredictions when empty.
	Topic string
	// MaxEvents caps the PredictionEvents sampled (DefaultMaxEvents): the
	// ones whose event ids hash lowest (FNV-1a), so the sample does not
	// depend on the order events are read in.
	MaxEvents int
	// MaxItemsPerEvent caps the served items sampled per event
	// (DefaultMaxItemsPerEvent), again those whose event id and item
	// position hash lowest.
	MaxItemsPerEvent int
	// SampleSize is the values per column kept for quantiles and PSI
	// (DefaultSampleSize).
	SampleSize int
	// IncludeShadow also reads shadow predictions (mirrored traffic scored
	// by a shadow model); they are skipped by default.
	IncludeShadow bool
	// Thresholds decide which columns are flagged.
	Thresholds Thresholds
}

// Store reads training sets and the event log; *objstore.Store implements
// it.
type Store interface {
	eventlog.Source
	snapshot.Store
}

// ServedSummary describes the PredictionEvents a report read.
type ServedSummary struct {
	// Topic is the archived topic read.
	Topic string `json:"topic"`
	// Events counts the PredictionEvents in the range; Sampled those
	// used; Items the served items used.
	Events  int64 `json:"events"`
	Sampled int64 `json:"sampled"`
	Items   int64 `json:"items"`
	// Shadow counts skipped shadow predictions; OtherSchema skipped events
	// whose feature_schema_hash is not the training set's; Malformed
	// skipped events whose feature names and values do not line up.
	Shadow      int64 `json:"shadow"`
	OtherSchema int64 `json:"other_schema"`
	Malformed   int64 `json:"malformed"`
	// Unknown lists served feature names the training set does not have.
	Unknown []string `json:"unknown,omitempty"`
}

// Run compares the training set opt.TrainingSet with the PredictionEvents
// archived in [opt.From, opt.To).
func Run(ctx context.Context, st Store, opt Options) (Report, error) {
	if opt.TrainingSet == "" {
		return Report{}, errors.New("skew: no training set named")
	}
	if !opt.From.Before(opt.To) {
		return Report{}, fmt.Errorf("skew: empty time range [%s, %s)", opt.From.Format(time.RFC3339), opt.To.Format(time.RFC3339))
	}
	if opt.MaxEvents < 0 || opt.MaxItemsPerEvent < 0 {
		return Report{}, fmt.Errorf("skew: negative sample caps (%d events, %d items per event)", opt.MaxEvents, opt.MaxItemsPerEvent)
	}
	th := opt.Thresholds.WithDefaults()
	if err := th.Validate(); err != nil {
		return Report{}, err
	}
	m, err := offline.ReadManifest(ctx, st, opt.TrainingSet)
	if err != nil {
		return Report{}, err
	}
	train, err := TrainingProfile(ctx, st, m, opt.SampleSize)
	if err != nil {
		return Report{}, err
	}
	served, sum, err := ServedProfile(ctx, st, train.Columns(), m.SchemaHash, opt)
	if err != nil {
		return Report{}, err
	}
	rows, err := Compare(train, served, th)
	if err != nil {
		return Report{}, err
	}
	r := Report{
		TrainingSet: m.ID, SchemaHash: m.SchemaHash, From: opt.From.UTC(), To: opt.To.UTC(), Thresholds: th,
		TrainingRows: m.Rows, Served: sum, Features: rows,
	}
	for _, f := range rows {
		if f.Flagged() {
			r.Flagged++
		}
	}
	return r, nil
}

// TrainingProfile profiles every row of the training set m.
func TrainingProfile(ctx context.Context, st snapshot.Store, m offline.Manifest, sampleSize int) (*Profile, error) {
	cols, err := Columns(m.Model)
	if err != nil {
		return nil, fmt.Errorf("training set %s: %w", m.ID, err)
	}
	if len(cols) != m.Width {
		return nil, fmt.Errorf("training set %s: its model schema has %d value columns, the manifest says %d", m.ID, len(cols), m.Width)
	}
	p, err := NewProfile(cols, sampleSize)
	if err != nil {
		return nil, err
	}
	rows, err := offline.ReadRows(ctx, st, m)
	if err != nil {
		return nil, err
	}
	for i := range rows {
		if err := p.AddRow(rows[i].Features); err != nil {
			return nil, fmt.Errorf("training set %s, row %d: %w", m.ID, i, err)
		}
	}
	return p, nil
}

// sampled is one PredictionEvent kept by the bottom-k sample.
type sampled struct {
	hash uint64
	id   string
	p    *adaptrecv1.PredictionEvent
}

// maxHeap keeps the k lowest hashes: its top is the highest kept.
type maxHeap []sampled

func (h maxHeap) Len() int           { return len(h) }
func (h maxHeap) Less(i, j int) bool { return ascending(h[i], h[j]) > 0 }

// ascending orders sampled events by hash, then id.
func ascending(a, b sampled) int {
	if c := cmp.Compare(a.hash, b.hash); c != 0 {
		return c
	}
	return cmp.Compare(a.id, b.id)
}
func (h maxHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *maxHeap) Push(x any)   { *h = append(*h, x.(sampled)) }
func (h *maxHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

func hashOf(parts ...string) uint64 {
	h := fnv.New64a()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return h.Sum64()
}

// ServedProfile profiles the feature values of a deterministic sample of the
// PredictionEvents archived in [opt.From, opt.To), into columns named like
// cols (see Options for the sampling). schemaHash, when not empty, skips
// events recording another non-empty feature_schema_hash.
//
// An event's user features (user_feature_names, user_features) count once
// per event; its item features once per sampled item. Names and values line
// up one to one when there are as many of each (names may then be expanded
// name[i]); otherwise a name of a vector feature in cols takes that vector's
// dimension of values, named name[0] … name[n-1]. Events whose names and
// values do not line up either way are skipped and counted as malformed.
func ServedProfile(ctx context.Context, src eventlog.Source, cols []Column, schemaHash string, opt Options) (*Profile, ServedSummary, error) {
	topic := cmp.Or(opt.Topic, events.TopicPredictions)
	maxEvents := cmp.Or(opt.MaxEvents, DefaultMaxEvents)
	maxItems := cmp.Or(opt.MaxItemsPerEvent, DefaultMaxItemsPerEvent)
	sum := ServedSummary{Topic: topic}
	var kept maxHeap
	err := eventlog.Scan(ctx, src, topic, opt.From, opt.To, func(r *eventlog.Row) error {
		var e adaptrecv1.Event
		if err := proto.Unmarshal(r.Payload, &e); err != nil {
			return fmt.Errorf("event %s at %s: undecodable payload: %w", r.EventID, r.EventTime.Format(time.RFC3339), err)
		}
		p := e.GetPrediction()
		if p == nil {
			return nil
		}
		sum.Events++
		if p.GetShadow() && !opt.IncludeShadow {
			sum.Shadow++
			return nil
		}
		if h := p.GetFeatureSchemaHash(); schemaHash != "" && h != "" && h != schemaHash {
			sum.OtherSchema++
			return nil
		}
		s := sampled{hash: hashOf(r.EventID), id: r.EventID, p: p}
		if len(kept) < maxEvents {
			heap.Push(&kept, s)
		} else if ascending(s, kept[0]) < 0 {
			kept[0] = s
			heap.Fix(&kept, 0)
		}
		return nil
	})
	if err != nil {
		return nil, sum, err
	}
	// Profile in a fixed order so that the reservoirs are deterministic.
	slices.SortFunc(kept, ascending)

	p, err := NewProfile(cols, opt.SampleSize)
	if err != nil {
		return nil, sum, err
	}
	widths := make(map[string]int)
	for _, c := range cols {
		if c.Name != c.Feature {
			widths[c.Feature]++
		}
	}
	unknown := make(map[string]bool)
	for _, s := range kept {
		user, ok := align(s.p.GetUserFeatureNames(), s.p.GetUserFeatures(), widths)
		if !ok {
			sum.Malformed++
			continue
		}
		itemNames, ok := itemColumns(s.p, widths)
		if !ok {
			sum.Malformed++
			continue
		}
		sum.Sampled++
		add := func(names []string, vals []float32) {
			for k, n := range names {
				if i, ok := p.Column(n); ok {
					p.Add(i, float64(vals[k]))
				} else {
					unknown[n] = true
				}
			}
		}
		add(user, s.p.GetUserFeatures())
		items := s.p.GetItems()
		order := make([]int, len(items))
		for k := range order {
			order[k] = k
		}
		hashes := make([]uint64, len(items))
		for k := range items {
			hashes[k] = hashOf(s.id, strconv.Itoa(k))
		}
		slices.SortFunc(order, func(a, b int) int {
			return cmp.Or(cmp.Compare(hashes[a], hashes[b]), cmp.Compare(a, b))
		})
		if len(order) > maxItems {
			order = order[:maxItems]
		}
		for _, k := range order {
			add(itemNames, items[k].GetFeatures())
			sum.Items++
		}
	}
	for n := range unknown {
		sum.Unknown = append(sum.Unknown, n)
	}
	slices.Sort(sum.Unknown)
	return p, sum, nil
}

// itemColumns returns the column names of an event's item features, or
// false when an item's values do not line up with the names.
func itemColumns(p *adaptrecv1.PredictionEvent, widths map[string]int) ([]string, bool) {
	names := p.GetItemFeatureNames()
	if len(p.GetItems()) == 0 {
		return nil, true
	}
	cols, ok := align(names, p.GetItems()[0].GetFeatures(), widths)
	if !ok {
		return nil, false
	}
	for _, it := range p.GetItems() {
		if len(it.GetFeatures()) != len(cols) {
			return nil, false
		}
	}
	return cols, true
}

// align returns one column name per value (see ServedProfile), or false.
func align(names []string, vals []float32, widths map[string]int) ([]string, bool) {
	if len(names) == len(vals) {
		return names, true
	}
	out := make([]string, 0, len(vals))
	for _, n := range names {
		w := widths[n]
		if w == 0 {
			out = append(out, n)
			continue
		}
		for i := range w {
			out = append(out, fmt.Sprintf("%s[%d]", n, i))
		}
	}
	return out, len(out) == len(vals)
}
