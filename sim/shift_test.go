package sim

import (
	"math"
	"slices"
	"testing"
	"time"
)

func TestWorldShiftTastes(t *testing.T) {
	t.Parallel()
	cfg := WorldConfig{Seed: 3, Start: testStart, Window: 7 * 24 * time.Hour,
		Catalogue: CatalogueConfig{Items: 2000}, Population: PopulationConfig{Users: 4000}}
	w, err := NewWorld(cfg)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := NewWorld(cfg)
	if err != nil {
		t.Fatal(err)
	}
	at := w.End().Add(time.Hour)
	if err := w.ShiftTastes(Shift{At: at, Share: 0.6, Strength: 0.9}); err != nil {
		t.Fatal(err)
	}
	if got := w.Users.ShiftAt(); !got.Equal(at.Truncate(time.Second)) {
		t.Errorf("ShiftAt = %s, want %s", got, at)
	}
	if s := w.Users.ShiftedShare(); math.Abs(s-0.6) > 0.03 {
		t.Errorf("shifted share %.3f, want about 0.6", s)
	}
	dim := w.Catalogue.Dim
	before, after, ref := make([]float32, dim), make([]float32, dim), make([]float32, dim)
	moved := 0
	for i := range w.Users.Users {
		u, p := &w.Users.Users[i], &plain.Users.Users[i]
		// Everything drawn with the world is unchanged.
		if !slices.Equal(u.pref0, p.pref0) || !slices.Equal(u.pref1, p.pref1) || u.Activity != p.Activity {
			t.Fatalf("user %s changed beyond its shift", u.ID)
		}
		w.Users.Preference(u, at.Add(-time.Minute), before)
		plain.Users.Preference(p, at.Add(-time.Minute), ref)
		if !slices.Equal(before, ref) {
			t.Fatalf("user %s's taste changed before the shift", u.ID)
		}
		w.Users.Preference(u, at.Add(time.Minute), after)
		if u.Shifted && cosine(before, after) < 0.9 {
			moved++
		}
		if !u.Shifted {
			plain.Users.Preference(p, at.Add(time.Minute), ref)
			if !slices.Equal(after, ref) {
				t.Fatalf("unshifted user %s's taste changed", u.ID)
			}
		}
	}
	if moved < len(w.Users.Users)/2 {
		t.Errorf("only %d of %d users' tastes moved at the shift", moved, len(w.Users.Users))
	}
	if err := w.ShiftTastes(Shift{}); err == nil {
		t.Error("a shift without a time was accepted")
	}
}
