package features

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
)

// layoutDoc has every kind on every stored entity and a request feature.
var layoutDoc = doc(
	"version: 1",
	"features:",
	"  - {name: user_ctr, entity: user, type: float, lane: batch, default: 0.03, freshness_sla: 26h, owner: o, description: d}",
	"  - {name: user_emb, entity: user, type: 'vector[3]', lane: batch, default: [1, 2, 3], freshness_sla: 26h, owner: o, description: d}",
	"  - {name: user_recent, entity: user, type: list, lane: nearline, default: [], ttl: 30m, owner: o, description: d}",
	"  - {name: user_creators, entity: user, type: map, lane: batch, default: {}, freshness_sla: 26h, owner: o, description: d}",
	"  - {name: item_clicks, entity: item, type: int, lane: batch, default: -1, freshness_sla: 26h, owner: o, description: d}",
	"  - {name: item_emb, entity: item, type: 'vector[2]', lane: batch, default: [0, 0], freshness_sla: 26h, owner: o, description: d}",
	"  - {name: ui_seen, entity: user_item, type: int, lane: nearline, default: 0, ttl: 1h, owner: o, description: d}",
	"  - {name: req_local_hour, entity: request, type: int, lane: request, default: -1, owner: o, description: d}",
)

// layoutNames mixes entities in the row on purpose.
var layoutNames = []string{"item_clicks", "user_ctr", "req_local_hour", "item_emb", "ui_seen", "user_emb"}

func id(t testing.TB, s *FeatureSet, name string) ID {
	t.Helper()
	f, ok := s.Lookup(name)
	if !ok {
		t.Fatalf("no feature %s", name)
	}
	return f.ID
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestLayoutColumns(t *testing.T) {
	t.Parallel()
	s := mustParse(t, layoutDoc)
	l, err := s.NewLayout(layoutNames)
	must(t, err)
	want := []Column{
		{Name: "item_clicks", Entity: EntityItem, Type: Type{Kind: KindInt}, Offset: 0, Width: 1},
		{Name: "user_ctr", Entity: EntityUser, Type: Type{Kind: KindFloat}, Offset: 1, Width: 1},
		{Name: "req_local_hour", Entity: EntityRequest, Type: Type{Kind: KindInt}, Offset: 2, Width: 1},
		{Name: "item_emb", Entity: EntityItem, Type: Type{Kind: KindVector, Dim: 2}, Offset: 3, Width: 2},
		{Name: "ui_seen", Entity: EntityUserItem, Type: Type{Kind: KindInt}, Offset: 5, Width: 1},
		{Name: "user_emb", Entity: EntityUser, Type: Type{Kind: KindVector, Dim: 3}, Offset: 6, Width: 3},
	}
	if got := l.Columns(); !slices.Equal(got, want) || l.Width() != 9 || !slices.Equal(l.Names(), layoutNames) {
		t.Errorf("Columns() = %+v, Width() = %d; want %+v, 9", got, l.Width(), want)
	}
}

func TestNewLayoutErrors(t *testing.T) {
	t.Parallel()
	s := mustParse(t, layoutDoc)
	tests := []struct {
		names []string
		want  string
	}{
		{nil, "layout: no features named"},
		{[]string{"user_ctr", "nope"}, "layout: nope: not defined in test.yaml"},
		{[]string{"user_ctr", "user_ctr"}, "layout: user_ctr: named twice"},
		{[]string{"user_recent"}, "layout: user_recent: a list has no fixed width and cannot be a ranker input"},
		{[]string{"user_creators", "nope", "user_ctr", "user_ctr"}, "layout: user_creators: a map has no fixed width and cannot be a ranker input; " +
			"nope: not defined in test.yaml; user_ctr: named twice"},
	}
	for _, tt := range tests {
		_, err := s.NewLayout(tt.names)
		if err == nil || err.Error() != tt.want {
			t.Errorf("NewLayout(%v) = %v, want %q", tt.names, err, tt.want)
		}
		if _, err := s.Schema(tt.names); err == nil {
			t.Errorf("Schema(%v) succeeded, want the layout error", tt.names)
		}
	}
}

func TestLayoutFill(t *testing.T) {
	t.Parallel()
	s := mustParse(t, layoutDoc)
	l, err := s.NewLayout(layoutNames)
	must(t, err)
	defaults := []float32{-1, 0.03, -1, 0, 0, 0, 1, 2, 3}
	tests := []struct {
		name string
		set  func(in Inputs)
		want []float32
	}{
		{"nothing known", nil, defaults},
		{"every value set", func(in Inputs) {
			must(t, in.Item.SetInt(id(t, s, "item_clicks"), 7))
			must(t, in.User.SetFloat(id(t, s, "user_ctr"), 0.5))
			must(t, in.Request.SetInt(id(t, s, "req_local_hour"), 23))
			must(t, in.Item.SetVector(id(t, s, "item_emb"), []float32{0.25, -0.5}))
			must(t, in.UserItem.SetInt(id(t, s, "ui_seen"), 1))
			must(t, in.User.SetVector(id(t, s, "user_emb"), []float32{4, 5, 6}))
		}, []float32{7, 0.5, 23, 0.25, -0.5, 1, 4, 5, 6}},
		{"only the item known", func(in Inputs) {
			must(t, in.Item.SetVector(id(t, s, "item_emb"), []float32{9, 9}))
		}, []float32{-1, 0.03, -1, 9, 9, 0, 1, 2, 3}},
		{"a value set then unset", func(in Inputs) {
			must(t, in.User.SetFloat(id(t, s, "user_ctr"), 0.5))
			in.User.Unset(id(t, s, "user_ctr"))
		}, defaults},
		{"a set value equal to zero is not the default", func(in Inputs) {
			must(t, in.Item.SetInt(id(t, s, "item_clicks"), 0))
		}, []float32{0, 0.03, -1, 0, 0, 0, 1, 2, 3}},
		{"ints beyond 2^24 round to float32", func(in Inputs) {
			must(t, in.Item.SetInt(id(t, s, "item_clicks"), 1<<24+1))
		}, []float32{1 << 24, 0.03, -1, 0, 0, 0, 1, 2, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := Inputs{User: s.NewRecord(EntityUser), Item: s.NewRecord(EntityItem),
				UserItem: s.NewRecord(EntityUserItem), Request: s.NewRecord(EntityRequest)}
			if tt.set != nil {
				tt.set(in)
			}
			row := slices.Repeat([]float32{math.MaxFloat32}, l.Width()+1)
			must(t, l.Fill(row, in))
			if !slices.Equal(row[:l.Width()], tt.want) || row[l.Width()] != math.MaxFloat32 {
				t.Errorf("Fill() = %v, want %v and the value after the row untouched", row, tt.want)
			}
			if tt.set == nil {
				must(t, l.Fill(row, Inputs{}))
				if !slices.Equal(row[:l.Width()], tt.want) {
					t.Errorf("Fill(no records) = %v, want %v", row, tt.want)
				}
			}
		})
	}
}

func TestLayoutFillBatchMatchesFill(t *testing.T) {
	t.Parallel()
	s := mustParse(t, layoutDoc)
	l, err := s.NewLayout(layoutNames)
	must(t, err)
	user, req := s.NewRecord(EntityUser), s.NewRecord(EntityRequest)
	must(t, user.SetFloat(id(t, s, "user_ctr"), 0.25))
	must(t, req.SetInt(id(t, s, "req_local_hour"), 8))
	const n = 6
	items := make([]*Record, n)
	pairs := make([]*Record, n)
	for i := range n {
		if i == 3 {
			continue // an unknown item: defaults
		}
		items[i] = s.NewRecord(EntityItem)
		must(t, items[i].SetInt(id(t, s, "item_clicks"), int64(i*10)))
		if i%2 == 0 {
			must(t, items[i].SetVector(id(t, s, "item_emb"), []float32{float32(i), -float32(i)}))
			pairs[i] = s.NewRecord(EntityUserItem)
			must(t, pairs[i].SetInt(id(t, s, "ui_seen"), int64(i)))
		}
	}
	for _, withPairs := range []bool{true, false} {
		t.Run(fmt.Sprintf("pairs=%v", withPairs), func(t *testing.T) {
			p := pairs
			if !withPairs {
				p = nil
			}
			batch := make([]float32, n*l.Width())
			must(t, l.FillBatch(batch, user, req, items, p))
			row := make([]float32, l.Width())
			for i := range n {
				in := Inputs{User: user, Request: req, Item: items[i]}
				if withPairs {
					in.UserItem = pairs[i]
				}
				must(t, l.Fill(row, in))
				if got := batch[i*l.Width() : (i+1)*l.Width()]; !slices.Equal(got, row) {
					t.Errorf("FillBatch row %d = %v, Fill = %v", i, got, row)
				}
			}
		})
	}
}

// TestHotPathDoesNotAllocate covers what serving runs per request: the
// request lane and FillBatch. Not parallel: AllocsPerRun needs that.
func TestHotPathDoesNotAllocate(t *testing.T) {
	s, err := Load("features.yaml")
	must(t, err)
	l, err := s.NewLayout(benchmarkNames(s))
	must(t, err)
	user, req := s.NewRecord(EntityUser), s.NewRecord(EntityRequest)
	setAll(t, user)
	items := make([]*Record, 50)
	for i := range items {
		items[i] = s.NewRecord(EntityItem)
		setAll(t, items[i])
	}
	rc := RequestContext{Time: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC), TimeZone: "Europe/Paris",
		Device: adaptrecv1.Device_DEVICE_TV, Surface: "home", SessionID: "s1",
		User: UserState{SessionKey: SessionKey("s1"), SessionStart: time.Date(2026, 11, 22, 11, 0, 0, 0, time.UTC)}}
	buf := make([]float32, len(items)*l.Width())
	allocs := testing.AllocsPerRun(100, func() {
		if err := s.FillRequest(req, rc); err != nil {
			t.Fatal(err)
		}
		if err := l.FillBatch(buf, user, req, items, nil); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("FillRequest + FillBatch allocate %v times per request, want 0", allocs)
	}
}

func TestLayoutErrors(t *testing.T) {
	t.Parallel()
	s := mustParse(t, layoutDoc)
	other := mustParse(t, layoutDoc)
	l, err := s.NewLayout(layoutNames)
	must(t, err)
	item, user := s.NewRecord(EntityItem), s.NewRecord(EntityUser)
	row := make([]float32, 2*l.Width())
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"short row", l.Fill(row[:3], Inputs{}), "layout: row buffer holds 3 values, the layout needs 9"},
		{"short batch", l.FillBatch(row, nil, nil, make([]*Record, 3), nil), "layout: row buffer holds 18 values, 3 rows of 9 need 27"},
		{"pairs of another length", l.FillBatch(row, nil, nil, []*Record{item}, []*Record{}), "layout: 0 user×item records for 1 items"},
		{"item as user", l.Fill(row, Inputs{User: item}), "wrong feature record: a item record was given as the user record"},
		{"user as request", l.FillBatch(row, nil, user, nil, nil), "wrong feature record: a user record was given as the request record"},
		{"user among items", l.FillBatch(row, nil, nil, []*Record{item, user}, nil), "item 1: wrong feature record: a user record was given as the item record"},
		{"record of other definitions", l.Fill(row, Inputs{Item: other.NewRecord(EntityItem)}),
			"wrong feature record: the item record belongs to other feature definitions than the layout"},
	}
	for _, tt := range tests {
		if tt.err == nil || tt.err.Error() != tt.want {
			t.Errorf("%s: error %v, want %q", tt.name, tt.err, tt.want)
		}
	}
}

func TestRecord(t *testing.T) {
	t.Parallel()
	s := mustParse(t, layoutDoc)
	user := s.NewRecord(EntityUser)
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"int into a float", user.SetInt(id(t, s, "user_ctr"), 1), "wrong feature record: user_ctr is a float, not a int"},
		{"item feature into a user record", user.SetInt(id(t, s, "item_clicks"), 1), "wrong feature record: item_clicks is a item feature, the record holds user features"},
		{"unknown id", user.SetFloat(ID(999), 1), "wrong feature record: no feature with id 999"},
		{"NaN", user.SetFloat(id(t, s, "user_ctr"), math.NaN()), "user_ctr: NaN is not a finite 32-bit float"},
		{"float32 overflow", user.SetFloat(id(t, s, "user_ctr"), 1e39), "user_ctr: 1e+39 is not a finite 32-bit float"},
		{"short vector", user.SetVector(id(t, s, "user_emb"), []float32{1}), "user_emb: 1 components for a vector[3]"},
		{"infinite component", user.SetVector(id(t, s, "user_emb"), []float32{1, float32(math.Inf(1)), 0}), "user_emb: component 1 is +Inf, not finite"},
		{"list into a map", user.SetList(id(t, s, "user_creators"), nil), "wrong feature record: user_creators is a map, not a list"},
		{"map into a list", user.SetMap(id(t, s, "user_recent"), nil), "wrong feature record: user_recent is a list, not a map"},
	}
	for _, tt := range tests {
		if tt.err == nil || tt.err.Error() != tt.want || !(errors.Is(tt.err, ErrWrongRecord) == strings.HasPrefix(tt.want, "wrong feature record")) {
			t.Errorf("%s: error %v, want %q", tt.name, tt.err, tt.want)
		}
	}
	// Failed sets leave the defaults in place.
	for _, f := range s.Entity(EntityUser) {
		if user.Has(f.ID) {
			t.Errorf("%s is set after failed sets", f.Name)
		}
	}

	recent, creators, emb := id(t, s, "user_recent"), id(t, s, "user_creators"), id(t, s, "user_emb")
	must(t, user.SetList(recent, []string{"i1", "i2"}))
	must(t, user.SetMap(creators, map[string]float64{"7": 3}))
	must(t, user.SetVector(emb, []float32{7, 8, 9}))
	getTests := []struct {
		id    ID
		set   bool
		check func(v Value) bool
	}{
		{recent, true, func(v Value) bool { return slices.Equal(v.List, []string{"i1", "i2"}) }},
		{creators, true, func(v Value) bool { return v.Map["7"] == 3 }},
		{emb, true, func(v Value) bool { return slices.Equal(v.Vector, []float32{7, 8, 9}) }},
		{id(t, s, "user_ctr"), false, func(v Value) bool { return v.Float == 0.03 }},
	}
	for _, tt := range getTests {
		v, set, err := user.Get(tt.id)
		if err != nil || set != tt.set || !tt.check(v) || user.Has(tt.id) != tt.set {
			t.Errorf("Get(%d) = %+v, %v, %v; want set=%v and the expected value", tt.id, v, set, err, tt.set)
		}
	}
	if _, _, err := user.Get(id(t, s, "item_clicks")); !errors.Is(err, ErrWrongRecord) {
		t.Errorf("Get(item feature) on a user record = %v, want ErrWrongRecord", err)
	}
	user.Reset()
	for _, f := range s.Entity(EntityUser) {
		v, set, err := user.Get(f.ID)
		if set || err != nil || canonicalValue(f.Type, v) != canonicalValue(f.Type, f.Default) {
			t.Errorf("after Reset, %s = %+v (set %v, %v), want its default", f.Name, v, set, err)
		}
	}
	if user.Entity() != EntityUser {
		t.Errorf("Entity() = %v", user.Entity())
	}
}

// benchmarkNames picks the 40 ranker inputs of a realistic model from the
// project's definitions: every item and user×item feature, plus a few user
// and request features.
func benchmarkNames(s *FeatureSet) []string {
	var names []string
	for _, e := range []Entity{EntityItem, EntityUserItem} {
		for _, f := range s.Entity(e) {
			if f.Type.Width() > 0 {
				names = append(names, f.Name)
			}
		}
	}
	return append(names, "user_ctr_30d", "user_embedding", "req_hour_sin", "req_device")
}

// BenchmarkFillBatch assembles the ranker input of one request: 1 user and
// 500 candidate items, 40 features per row.
func BenchmarkFillBatch(b *testing.B) {
	s, err := Load("features.yaml")
	if err != nil {
		b.Fatal(err)
	}
	names := benchmarkNames(s)
	if len(names) != 40 {
		b.Fatalf("benchmark layout has %d features, want 40: %v", len(names), names)
	}
	l, err := s.NewLayout(names)
	if err != nil {
		b.Fatal(err)
	}
	const n = 500
	user := s.NewRecord(EntityUser)
	setAll(b, user)
	req := s.NewRecord(EntityRequest)
	must(b, s.FillRequest(req, RequestContext{}))
	items, pairs := make([]*Record, n), make([]*Record, n)
	for i := range n {
		items[i] = s.NewRecord(EntityItem)
		setAll(b, items[i])
		if i%5 == 0 { // the user knows one candidate in five
			pairs[i] = s.NewRecord(EntityUserItem)
			setAll(b, pairs[i])
		}
	}
	dst := make([]float32, n*l.Width())
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := l.FillBatch(dst, user, req, items, pairs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(l.Width()), "floats/row")
}

// setAll sets every numeric feature of a record to a value that is not its
// default.
func setAll(b testing.TB, r *Record) {
	for _, f := range r.set.Entity(r.Entity()) {
		switch f.Type.Kind {
		case KindFloat:
			must(b, r.SetFloat(f.ID, float64(f.Default.Float)+0.5))
		case KindInt:
			must(b, r.SetInt(f.ID, f.Default.Int+3))
		case KindVector:
			v := make([]float32, f.Type.Dim)
			for i := range v {
				v[i] = float32(i) / 10
			}
			must(b, r.SetVector(f.ID, v))
		}
	}
}
