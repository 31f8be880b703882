package eval

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/adaptrec/adaptrec/eventlog"
	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/batch"
	"github.com/adaptrec/adaptrec/features/snapshot"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/trainer/retrieval"
)

// DefaultRankerFeatures are the features.yaml features of the built-in
// ranker's rows, in row order: batch-lane user and item features that the
// batch job computes from a log of ratings (see archiveInteractions), where
// click-through rates read as like rates. The one-day features
// (item_ctr_1d, item_impressions_1d) are left out: on validation splits
// they made the ranker worse (docs/evaluation.md).
var DefaultRankerFeatures = []string{
	"user_ctr_30d",
	"user_impressions_30d",
	"user_clicks_30d",
	"user_active_days_30d",
	"user_tenure_days",
	"item_ctr_7d",
	"item_ctr_30d",
	"item_ctr_position_adjusted_7d",
	"item_impressions_7d",
	"item_clicks_7d",
	"item_age_hours",
	"item_category_ctr_7d",
}

// Extra columns of a ranker row, appended after the layout's columns.
// They are properties of a (user, candidate) pair that features.yaml does
// not define: retrieval's own score and position, and a cross of two batch
// features.
const (
	// ExtraRetrievalScore is the inner product of the user's fold-in
	// embedding and the item's.
	ExtraRetrievalScore = "retrieval_score"
	// ExtraRetrievalRank is log2(2 + the candidate's 0-based position in
	// the retrieval order).
	ExtraRetrievalRank = "retrieval_rank"
	// ExtraRetrievalGap is the user's best retrieval score minus the
	// candidate's: the score on a scale that does not depend on how long
	// the user's history is.
	ExtraRetrievalGap = "retrieval_gap"
	// ExtraCategoryAffinity is the user's share of clicks on the item's
	// category: component item_category_id (mod its dimension) of
	// user_category_affinity, 0 for an item of unknown category. A
	// user×item cross of two batch features that a linear model cannot
	// form itself.
	ExtraCategoryAffinity = "category_affinity"
)

// knownExtras are the extra columns a rowBuilder can append.
var knownExtras = []string{ExtraRetrievalScore, ExtraRetrievalRank, ExtraRetrievalGap, ExtraCategoryAffinity}

// DefaultRankerExtras are the extra columns of the built-in ranker's rows.
var DefaultRankerExtras = []string{ExtraRetrievalGap, ExtraRetrievalRank, ExtraCategoryAffinity}

// archiveProducer is the envelope producer of the events the evaluation
// archives for the batch lane.
const archiveProducer = "trainer/eval"

// archiveInteractions writes interactions (in time order) to st's event
// log as the platform's interaction events, which is what the batch lane
// reads. A log of ratings has no impressions or clicks, and features/batch
// counts neither ratings (ACTION_RATE) nor their values, so each rating is
// presented as what it says about exposure and appeal: an
// ACTION_IMPRESSION (the user got to the item) and, for a positive
// (rating >= minPositive, the evaluation's own definition), an
// ACTION_CLICK at the same instant. Click-through rates then read as like
// rates, impressions and clicks as rating and like counts. Events have no
// session, device, surface or position.
func archiveInteractions(ctx context.Context, st eventlog.Putter, ds *Dataset, inter []Interaction, minPositive float32) error {
	w := &eventlog.Writer{Store: st, Topic: events.TopicInteractions}
	evs := make([]*adaptrecv1.Event, 0, 4096)
	flush := func() error {
		if err := w.Add(ctx, evs...); err != nil {
			return err
		}
		evs = evs[:0]
		return nil
	}
	for n, it := range inter {
		at := time.Unix(it.Time, 0).UTC()
		base := "eval-" + strconv.Itoa(n)
		user, item := ds.UserIDs[it.User], ds.ItemIDs[it.Item]
		evs = append(evs, events.NewInteraction(base+"-i", at, archiveProducer, &adaptrecv1.UserInteractionEvent{
			UserId: user, ItemId: item, Action: adaptrecv1.Action_ACTION_IMPRESSION, Position: -1,
		}))
		if it.Rating >= minPositive {
			evs = append(evs, events.NewInteraction(base+"-c", at, archiveProducer, &adaptrecv1.UserInteractionEvent{
				UserId: user, ItemId: item, Action: adaptrecv1.Action_ACTION_CLICK, Position: -1,
			}))
		}
		if len(evs) >= cap(evs)-1 {
			if err := flush(); err != nil {
				return fmt.Errorf("eval: archive interactions: %w", err)
			}
		}
	}
	if err := flush(); err != nil {
		return fmt.Errorf("eval: archive interactions: %w", err)
	}
	if err := w.Flush(ctx); err != nil {
		return fmt.Errorf("eval: archive interactions: %w", err)
	}
	return nil
}

// featureView is the feature store as of one instant: every user's and
// item's batch features, bound to records of the definitions.
type featureView struct {
	asOf time.Time
	// users and items are indexed by the data set's dense numbers; a nil
	// record (an entity the snapshot has no row for) reads as defaults.
	users, items []*features.Record
}

// batchGroups returns the storage groups of the named features, checking
// that each is a batch feature of a user or an item: the only ones the
// evaluation can compute for a candidate it never showed.
func batchGroups(fs *features.FeatureSet, names []string) ([]string, error) {
	var groups []string
	for _, name := range names {
		f, ok := fs.Lookup(name)
		switch {
		case !ok:
			return nil, fmt.Errorf("eval: ranker feature %s is not defined in %s", name, fs.Source())
		case f.Lane != features.LaneBatch || (f.Entity != features.EntityUser && f.Entity != features.EntityItem):
			return nil, fmt.Errorf("eval: ranker feature %s is a %s %s feature; the evaluation computes batch user and item features only", name, f.Entity, f.Lane)
		}
		if !slices.Contains(groups, f.Group) {
			groups = append(groups, f.Group)
		}
	}
	return groups, nil
}

// featuresAsOf runs the batch job over st's event log as of asOf (it reads
// only events before asOf), writes each group as a snapshot to st, reads
// it back and binds it to records: the path from archived events to
// model inputs that materialization and training sets take.
func featuresAsOf(ctx context.Context, st *memStore, fs *features.FeatureSet, ds *Dataset, groups []string, asOf time.Time) (*featureView, error) {
	res, err := batch.Compute(ctx, st, fs, asOf, groups, batch.Config{Catalogue: ds.Catalogue})
	if err != nil {
		return nil, fmt.Errorf("eval: batch features as of %s: %w", asOf.Format(time.RFC3339), err)
	}
	v := &featureView{asOf: res.AsOf, users: make([]*features.Record, len(ds.UserIDs)), items: make([]*features.Record, len(ds.ItemIDs))}
	userIdx := indexOf(ds.UserIDs)
	itemIdx := indexOf(ds.ItemIDs)
	for _, g := range res.Groups {
		m, err := snapshot.Write(ctx, st, fs, g.Group, res.AsOf, g.Rows, snapshot.WriteOptions{NotComputed: g.NotComputed, CreatedAt: res.AsOf})
		if err != nil {
			return nil, fmt.Errorf("eval: snapshot %s as of %s: %w", g.Group, res.AsOf.Format(time.RFC3339), err)
		}
		m, rows, err := snapshot.Read(ctx, st, m.Group, m.Version)
		if err != nil {
			return nil, fmt.Errorf("eval: read snapshot %s: %w", g.Group, err)
		}
		bind, err := m.Bind(fs)
		if err != nil {
			return nil, fmt.Errorf("eval: %w", err)
		}
		recs, idx := v.users, userIdx
		if g.Entity == features.EntityItem {
			recs, idx = v.items, itemIdx
		}
		for i := range rows {
			e, ok := idx[rows[i].EntityID]
			if !ok {
				continue
			}
			if recs[e] == nil {
				recs[e] = fs.NewRecord(g.Entity)
			}
			if err := bind.Apply(recs[e], &rows[i]); err != nil {
				return nil, fmt.Errorf("eval: snapshot %s: %w", g.Group, err)
			}
		}
	}
	return v, nil
}

func indexOf(ids []string) map[string]int32 {
	m := make(map[string]int32, len(ids))
	for i, id := range ids {
		m[id] = int32(i)
	}
	return m
}

// rowBuilder turns a user's retrieved candidates into ranker rows: the
// layout's columns through features.Layout.FillBatch (the one flattening
// path), then the extra columns.
type rowBuilder struct {
	layout *features.Layout
	extras []string
	width  int
	items  []*features.Record
	buf    []float32
	// affinity and category feed ExtraCategoryAffinity.
	affinity, category *features.Feature
}

// groups returns the feature groups the rows read: the layout's and those
// of the features extra columns read.
func (b *rowBuilder) groups(fs *features.FeatureSet) ([]string, error) {
	names := b.layout.Names()
	if b.affinity != nil {
		names = append(names, b.affinity.Name, b.category.Name)
	}
	return batchGroups(fs, names)
}

func newRowBuilder(fs *features.FeatureSet, names, extras []string) (*rowBuilder, error) {
	layout, err := fs.NewLayout(names)
	if err != nil {
		return nil, fmt.Errorf("eval: ranker features: %w", err)
	}
	for _, x := range extras {
		if !slices.Contains(knownExtras, x) {
			return nil, fmt.Errorf("eval: unknown extra ranker column %q (known: %s)", x, strings.Join(knownExtras, ", "))
		}
	}
	b := &rowBuilder{layout: layout, extras: slices.Clone(extras), width: layout.Width() + len(extras)}
	if slices.Contains(extras, ExtraCategoryAffinity) {
		aff, ok1 := fs.Lookup("user_category_affinity")
		cat, ok2 := fs.Lookup("item_category_id")
		if !ok1 || !ok2 || aff.Type.Kind != features.KindVector || cat.Type.Kind != features.KindInt {
			return nil, fmt.Errorf("eval: extra column %s needs user_category_affinity (a vector) and item_category_id (an int) in %s", ExtraCategoryAffinity, fs.Source())
		}
		b.affinity, b.category = aff, cat
	}
	return b, nil
}

// columns names the values of a row: the layout's features (a vector's
// components as name[i]) and then the extras.
func (b *rowBuilder) columns() []string {
	var out []string
	for _, c := range b.layout.Columns() {
		if c.Width == 1 {
			out = append(out, c.Name)
			continue
		}
		for i := range c.Width {
			out = append(out, c.Name+"["+strconv.Itoa(i)+"]")
		}
	}
	return append(out, b.extras...)
}

// appendRows appends one row per hit to dst.
func (b *rowBuilder) appendRows(dst []float32, v *featureView, user int32, hits []retrieval.Hit) ([]float32, error) {
	lw := b.layout.Width()
	b.items = b.items[:0]
	for _, h := range hits {
		b.items = append(b.items, v.items[h.Item])
	}
	b.buf = slices.Grow(b.buf[:0], len(hits)*lw)[:len(hits)*lw]
	if err := b.layout.FillBatch(b.buf, v.users[user], nil, b.items, nil); err != nil {
		return nil, fmt.Errorf("eval: ranker rows: %w", err)
	}
	var affinity []float32
	if b.affinity != nil {
		affinity = b.affinity.Default.Vector
		if u := v.users[user]; u != nil {
			val, _, err := u.Get(b.affinity.ID)
			if err != nil {
				return nil, fmt.Errorf("eval: ranker rows: %w", err)
			}
			affinity = val.Vector
		}
	}
	for r, h := range hits {
		dst = append(dst, b.buf[r*lw:(r+1)*lw]...)
		for _, x := range b.extras {
			switch x {
			case ExtraRetrievalScore:
				dst = append(dst, h.Score)
			case ExtraRetrievalRank:
				dst = append(dst, float32(math.Log2(float64(r)+2)))
			case ExtraRetrievalGap:
				dst = append(dst, hits[0].Score-h.Score)
			case ExtraCategoryAffinity:
				cat := b.category.Default.Int
				if it := v.items[h.Item]; it != nil {
					val, _, err := it.Get(b.category.ID)
					if err != nil {
						return nil, fmt.Errorf("eval: ranker rows: %w", err)
					}
					cat = val.Int
				}
				var a float32
				if cat >= 0 && len(affinity) > 0 {
					a = affinity[int(cat)%len(affinity)]
				}
				dst = append(dst, a)
			}
		}
	}
	return dst, nil
}
