package predictions

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestEncodeDecodeRoundTrip(t *testing.T) {
	t.Parallel()
	tests := [][]Entry{
		{},
		{{ItemID: "i1", Score: 0.5}},
		{{ItemID: "item-000123", Score: 0.91}, {ItemID: "é", Score: 0}, {ItemID: strings.Repeat("x", 256), Score: 1e-30}},
	}
	for _, list := range tests {
		b := Encode(nil, list)
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("Decode(Encode(%v)): %v", list, err)
		}
		if len(got) != len(list) || (len(list) > 0 && !reflect.DeepEqual(got, list)) {
			t.Errorf("round trip of %v gave %v", list, got)
		}
	}
	// Scores are stored bit for bit, NaN included (validation, not the
	// codec, refuses it).
	got, err := Decode(Encode(nil, []Entry{{ItemID: "a", Score: float32(math.NaN())}}))
	if err != nil || !math.IsNaN(float64(got[0].Score)) {
		t.Errorf("NaN round trip: %v %v", got, err)
	}
}

func TestDecodeRefusesMalformedInput(t *testing.T) {
	t.Parallel()
	good := Encode(nil, []Entry{{ItemID: "i1", Score: 0.5}, {ItemID: "i2", Score: 0.25}})
	tests := map[string][]byte{
		"empty":          nil,
		"other format":   append([]byte{2}, good[1:]...),
		"truncated":      good[:len(good)-1],
		"trailing bytes": append(append([]byte(nil), good...), 0),
		"huge count":     {formatV1, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"long id":        append([]byte{formatV1, 1, 0x81, 0x02}, make([]byte, 300)...),
		"no count":       {formatV1},
	}
	for name, b := range tests {
		if _, err := Decode(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: Decode(%x) = %v, want ErrCorrupt", name, b, err)
		}
	}
}

func TestCheckList(t *testing.T) {
	t.Parallel()
	e := func(id string, s float32) Entry { return Entry{ItemID: id, Score: s} }
	long := make([]Entry, 80)
	for i := range long {
		long[i] = e(strings.Repeat("i", 1+i), 0.5)
	}
	longDup := append(append([]Entry(nil), long...), e("iii", 0.1))
	tests := []struct {
		name   string
		list   []Entry
		k      int
		check  string
		detail string
	}{
		{"valid", []Entry{e("a", 0.9), e("b", 0)}, 2, "", ""},
		{"valid long", long, 100, "", ""},
		{"empty", nil, 5, CheckEmpty, "no items"},
		{"over K", []Entry{e("a", 1), e("b", 1), e("c", 1)}, 2, CheckLength, "3 items, K is 2"},
		{"NaN", []Entry{e("a", 1), e("b", float32(math.NaN()))}, 5, CheckScore, "item b at position 1 scores NaN"},
		{"Inf", []Entry{e("a", float32(math.Inf(1)))}, 5, CheckScore, "item a at position 0 scores +Inf"},
		{"negative", []Entry{e("a", -0.25)}, 5, CheckScore, "item a at position 0 scores -0.25"},
		{"duplicate", []Entry{e("a", 1), e("b", 1), e("a", 0.5)}, 5, CheckDuplicate, "item a at positions 0 and 2"},
		{"duplicate long", longDup, 100, CheckDuplicate, "item iii at positions 2 and 80"},
		{"empty id", []Entry{e("", 1)}, 5, CheckItemID, "item at position 0 has a 0-byte id"},
	}
	for _, tt := range tests {
		check, detail := CheckList(tt.list, tt.k)
		if check != tt.check || detail != tt.detail {
			t.Errorf("%s: got %q %q, want %q %q", tt.name, check, detail, tt.check, tt.detail)
		}
	}
}

func TestCheckVersion(t *testing.T) {
	t.Parallel()
	v := Validation{MinCoverage: 0.9, MaxUserDrop: 0.5, MinUsers: 10}
	tests := []struct {
		name                      string
		users, expected, previous int
		want                      []string
	}{
		{"passes", 95, 100, 120, nil},
		{"first version", 95, 100, 0, nil},
		{"coverage", 80, 100, 0, []string{"coverage: 80 of 100 active users have a list (0.8000), below the minimum 0.9000"}},
		{"drop", 95, 100, 200, []string{"users: 95 users with a list against 200 in the current version: a fall of 52.5%, at most 50.0% allowed"}},
		{"too few", 5, 5, 0, []string{"users: 5 users with a list, at least 10 required (5 active)"}},
		{"no active users", 0, 0, 0, []string{"users: 0 users with a list, at least 10 required (0 active)"}},
	}
	for _, tt := range tests {
		var got []string
		for _, f := range CheckVersion(v, tt.users, tt.expected, tt.previous) {
			got = append(got, f.String())
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
	if fs := CheckVersion(Validation{}, 0, 100, 1000); len(fs) != 0 {
		t.Errorf("the zero Validation checked totals: %v", fs)
	}
}

func TestTallyNamesCountAndFirstExample(t *testing.T) {
	t.Parallel()
	var ty tally
	ty.add(CheckScore, "u1", "item a at position 0 scores NaN")
	ty.add(CheckEmpty, "u2", "no items")
	ty.add(CheckScore, "u3", "item b at position 2 scores -1")
	got := Describe(ty.failures())
	want := "score: 2 lists, first user u1: item a at position 0 scores NaN; empty: user u2: no items"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestPointerTransitions(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)
	m := func(n int64) Meta { return Meta{Version: n, ModelVersion: "mv"} }
	p1 := flipped(Pointer{}, m(1), now)
	if p1.Current.Version != 1 || p1.Previous != nil || p1.RolledBack {
		t.Fatalf("first flip: %+v", p1)
	}
	p2 := flipped(p1, m(2), now)
	if p2.Current.Version != 2 || p2.Previous == nil || p2.Previous.Version != 1 {
		t.Fatalf("second flip: %+v", p2)
	}
	back, err := rolledBack(p2, now)
	if err != nil || back.Current.Version != 1 || back.Previous.Version != 2 || !back.RolledBack {
		t.Fatalf("rollback: %+v %v", back, err)
	}
	fwd, err := rolledBack(back, now)
	if err != nil || fwd.Current.Version != 2 || fwd.Previous.Version != 1 {
		t.Fatalf("second rollback rolls forward: %+v %v", fwd, err)
	}
	if _, err := rolledBack(p1, now); !errors.Is(err, ErrNoPrevious) {
		t.Errorf("rollback of a first version: %v, want ErrNoPrevious", err)
	}
	if _, err := rolledBack(Pointer{}, now); !errors.Is(err, ErrNotFound) {
		t.Errorf("rollback with nothing current: %v, want ErrNotFound", err)
	}
}

func TestPruneTargets(t *testing.T) {
	t.Parallel()
	prev := Meta{Version: 5}
	ptr := Pointer{Current: Meta{Version: 7}, Previous: &prev}
	complete := map[int64]bool{1: true, 2: true, 4: true, 5: true, 7: true}
	// 3 abandoned, 6 rejected (not complete), 8 being written.
	versions := []int64{1, 2, 3, 4, 5, 6, 7, 8}
	tests := []struct {
		keep      int
		del, kept []int64
	}{
		{2, []int64{1, 2, 3, 4, 6}, []int64{5, 7, 8}},
		{3, []int64{1, 2, 3, 6}, []int64{4, 5, 7, 8}},
		{10, []int64{3, 6}, []int64{1, 2, 4, 5, 7, 8}},
	}
	for _, tt := range tests {
		del, kept := pruneTargets(versions, complete, ptr, tt.keep)
		if !reflect.DeepEqual(del, tt.del) || !reflect.DeepEqual(kept, tt.kept) {
			t.Errorf("keep %d: deleted %v kept %v, want %v and %v", tt.keep, del, kept, tt.del, tt.kept)
		}
	}
	// A rolled-back pointer: the previous version is newer than the current
	// one and is kept.
	newer := Meta{Version: 7}
	del, _ := pruneTargets(versions, complete, Pointer{Current: Meta{Version: 5}, Previous: &newer}, 2)
	if !reflect.DeepEqual(del, []int64{1, 2, 3, 4}) {
		t.Errorf("after a rollback deleted %v", del)
	}
}

func TestParseVersion(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int64{"3": 3, "v12": 12, "predictions_v7": 7} {
		if got, err := ParseVersion(in); err != nil || got != want {
			t.Errorf("ParseVersion(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "v0", "x3", "predictions_v-1"} {
		if _, err := ParseVersion(in); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), in) {
			t.Errorf("ParseVersion(%q) = %v, want ErrInvalid naming it", in, err)
		}
	}
	if VersionName(4) != "predictions_v4" {
		t.Errorf("VersionName(4) = %s", VersionName(4))
	}
}
