package batch_test

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/batch"
	"github.com/adaptrec/adaptrec/features/snapshot"
)

func TestValidate(t *testing.T) {
	t.Parallel()
	stats := func(mean, std, lo, hi, def float64) snapshot.FeatureStats {
		return snapshot.FeatureStats{Count: 1000, Mean: mean, Std: std, Min: lo, Max: hi, DefaultRate: def}
	}
	base := func() (*batch.GroupData, *snapshot.Manifest, *snapshot.Manifest) {
		g := &batch.GroupData{
			Group:  "item_batch",
			Entity: features.EntityItem,
			Rows:   []snapshot.Row{{EntityID: "a"}, {EntityID: "b"}, {EntityID: "c"}},
			Active: []string{"a", "b"},
			Bounds: map[string]batch.Range{"ctr": {Min: 0, Max: 1}, "views": {Min: 0, Max: math.Inf(1)}},
		}
		m := &snapshot.Manifest{Group: "item_batch", Version: "new", Rows: 1000, Stats: map[string]snapshot.FeatureStats{
			"ctr":   stats(0.031, 0.01, 0.001, 0.2, 0.1),
			"views": stats(12, 30, 0, 900, 0.2),
			"emb":   {Count: 16000, NotComputed: "trainer"},
		}}
		prev := &snapshot.Manifest{Group: "item_batch", Version: "old", Rows: 1100, Stats: map[string]snapshot.FeatureStats{
			"ctr":   stats(0.03, 0.01, 0.001, 0.2, 0.1),
			"views": stats(10, 30, 0, 800, 0.2),
			"emb":   {Count: 16000, NotComputed: "trainer"},
		}}
		return g, m, prev
	}
	cases := []struct {
		name   string
		change func(g *batch.GroupData, m, prev *snapshot.Manifest)
		opts   batch.ValidationOptions
		noPrev bool
		want   []string // failures, as Failure.String prefixes
	}{
		{name: "healthy"},
		{name: "first snapshot", noPrev: true},
		{name: "active entity without a row", change: func(g *batch.GroupData, m, prev *snapshot.Manifest) {
			g.Active = append(g.Active, "z")
		}, want: []string{`coverage: 1 of 3 active item entities have no row (coverage 0.6667 < 1.0000), e.g. "z"`}},
		{name: "coverage bound", opts: batch.ValidationOptions{MinCoverage: 0.5}, change: func(g *batch.GroupData, m, prev *snapshot.Manifest) {
			g.Active = append(g.Active, "z")
		}},
		{name: "NaN", change: func(g *batch.GroupData, m, prev *snapshot.Manifest) {
			s := m.Stats["ctr"]
			s.NaN = 3
			m.Stats["ctr"] = s
		}, want: []string{"finite: ctr: 3 NaN and 0 infinite values"}},
		{name: "rate above 1", change: func(g *batch.GroupData, m, prev *snapshot.Manifest) {
			s := m.Stats["ctr"]
			s.Max = 1.4
			m.Stats["ctr"] = s
		}, want: []string{"range: ctr: values span [0.001, 1.4], outside [0, 1]"}},
		{name: "negative count", change: func(g *batch.GroupData, m, prev *snapshot.Manifest) {
			s := m.Stats["views"]
			s.Min = -1
			m.Stats["views"] = s
		}, want: []string{"range: views: values span [-1, 900], outside [0, +Inf]"}},
		{name: "rows fell", change: func(g *batch.GroupData, m, prev *snapshot.Manifest) {
			m.Rows = 500
		}, want: []string{"rows: 500 rows, previous snapshot old had 1100 (more than 50% fewer)"}},
		{name: "mean shift", change: func(g *batch.GroupData, m, prev *snapshot.Manifest) {
			s := m.Stats["ctr"]
			s.Mean = 0.045
			m.Stats["ctr"] = s
		}, want: []string{"drift: ctr: mean 0.045 moved 1.50 standard deviations from 0.03 in old (bound 1)"}},
		{name: "mean shift bound", opts: batch.ValidationOptions{MaxMeanShift: 2}, change: func(g *batch.GroupData, m, prev *snapshot.Manifest) {
			s := m.Stats["ctr"]
			s.Mean = 0.045
			m.Stats["ctr"] = s
		}},
		{name: "mean collapse of a skewed count", change: func(g *batch.GroupData, m, prev *snapshot.Manifest) {
			s := m.Stats["views"]
			s.Mean = 2
			m.Stats["views"] = s
		}, want: []string{"drift: views: mean 2 is 0.2× the 10 of old (bound 3×)"}},
		{name: "defaults everywhere", change: func(g *batch.GroupData, m, prev *snapshot.Manifest) {
			s := m.Stats["ctr"]
			s.DefaultRate = 0.9
			m.Stats["ctr"] = s
		}, want: []string{"defaults: ctr: 90.0% of rows hold the default, 10.0% in old"}},
		{name: "small snapshots skip drift", change: func(g *batch.GroupData, m, prev *snapshot.Manifest) {
			m.Rows, prev.Rows = 60, 60
			s := m.Stats["ctr"]
			s.Mean = 0.09
			m.Stats["ctr"] = s
		}},
		{name: "several at once", change: func(g *batch.GroupData, m, prev *snapshot.Manifest) {
			m.Rows = 10
			s := m.Stats["views"]
			s.Inf = 1
			m.Stats["views"] = s
		}, want: []string{"rows: 10 rows", "finite: views: 0 NaN and 1 infinite values"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g, m, prev := base()
			if tc.change != nil {
				tc.change(g, m, prev)
			}
			if tc.noPrev {
				prev = nil
			}
			err := batch.Validate(g, m, prev, tc.opts)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("want no failure, got %v", err)
				}
				return
			}
			var ve *batch.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("want a *ValidationError, got %v", err)
			}
			if len(ve.Failures) != len(tc.want) {
				t.Fatalf("failures %v, want %q", ve.Failures, tc.want)
			}
			for i, w := range tc.want {
				if got := ve.Failures[i].String(); !strings.HasPrefix(got, w) {
					t.Errorf("failure %d: %q, want %q", i, got, w)
				}
			}
			if !strings.Contains(err.Error(), "snapshot item_batch/new failed validation: ") {
				t.Errorf("error %q does not name the snapshot", err)
			}
		})
	}
}
