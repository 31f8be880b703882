package sim

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
)

func newTestPopulation(t *testing.T, cat *Catalogue, cfg PopulationConfig) *Population {
	t.Helper()
	if cfg.Start.IsZero() {
		cfg.Start = testStart
	}
	p, err := NewPopulation(cat, cfg)
	if err != nil {
		t.Fatalf("NewPopulation: %v", err)
	}
	return p
}

func cosine(a, b []float32) float64 { return dot(a, b) / (norm(a) * norm(b)) }

func TestPopulationShape(t *testing.T) {
	t.Parallel()
	cat := newTestCatalogue(t, CatalogueConfig{Seed: 1, Items: 5000})
	p := newTestPopulation(t, cat, PopulationConfig{Seed: 1, Users: 20_000})
	again := newTestPopulation(t, cat, PopulationConfig{Seed: 1, Users: 20_000})
	other := newTestPopulation(t, cat, PopulationConfig{Seed: 2, Users: 20_000})
	if p.Len() != 20_000 {
		t.Fatalf("Len = %d", p.Len())
	}
	if !slices.Equal(p.Users[123].pref0, again.Users[123].pref0) || p.Users[123].Activity != again.Users[123].Activity {
		t.Error("same seed gave different users")
	}
	if slices.Equal(p.Users[123].pref0, other.Users[123].pref0) {
		t.Error("different seeds gave the same user")
	}

	acts := make([]float64, p.Len())
	devices := map[adaptrecv1.Device]int{}
	zones := map[string]int{}
	var sum float64
	for i := range p.Users {
		u := &p.Users[i]
		if j, ok := p.Lookup(u.ID); !ok || j != i || int(u.Index) != i {
			t.Fatalf("Lookup(%q) = %d, %v; Index %d", u.ID, j, ok, u.Index)
		}
		acts[i] = float64(u.Activity)
		sum += acts[i]
		devices[u.Device]++
		zones[u.TimeZone.Name]++
		if n := norm(u.pref0); math.Abs(n-1) > 1e-4 {
			t.Fatalf("user %s preference norm %g", u.ID, n)
		}
	}
	if mean := sum / float64(p.Len()); math.Abs(mean-1) > 1e-3 {
		t.Errorf("mean activity %g, want 1", mean)
	}
	slices.Sort(acts)
	top := 0.0
	for _, a := range acts[len(acts)*9/10:] {
		top += a
	}
	if top/sum < 0.3 {
		t.Errorf("top 10%% of users have %.0f%% of the activity, want a heavy tail (> 30%%)", 100*top/sum)
	}
	for _, d := range deviceMix {
		if got := float64(devices[d.device]) / float64(p.Len()); math.Abs(got-d.weight) > 0.02 {
			t.Errorf("device %s share %.3f, want %.3f", d.device, got, d.weight)
		}
	}
	if len(zones) < 10 {
		t.Errorf("only %d time zones used", len(zones))
	}
	// Preferences are mixtures over categories: a user's taste is close to
	// the centroid of a favourite category.
	var favCos float64
	for i := range 1000 {
		u := &p.Users[i]
		favCos += cosine(u.pref0, cat.Categories[u.favourites[0]].Centroid)
	}
	if favCos/1000 < 0.3 {
		t.Errorf("mean cosine of preference to first favourite centroid %.2f, want > 0.3", favCos/1000)
	}
}

func TestPreferenceDriftAndShift(t *testing.T) {
	t.Parallel()
	cat := newTestCatalogue(t, CatalogueConfig{Seed: 3, Items: 2000})
	shiftAt := testStart.Add(10 * 24 * time.Hour)
	// Each case compares every user's preference at two times: unshifted
	// users' cosines must lie in [minU, maxU], shifted users' mean cosine in
	// [minMeanS, maxMeanS].
	tests := []struct {
		name               string
		cfg                PopulationConfig
		from, to           time.Time
		minU, maxU         float64
		minMeanS, maxMeanS float64
		wantShiftedFrac    float64
	}{
		{"no drift", PopulationConfig{DriftPerDay: -1}, testStart, testStart.AddDate(0, 0, 60), 0.9999, 1, 0, 0, 0},
		{"one day of drift is slow", PopulationConfig{}, testStart, testStart.AddDate(0, 0, 1), 0.99, 1, 0, 0, 0},
		{"sixty days of drift move", PopulationConfig{}, testStart, testStart.AddDate(0, 0, 60), -1, 0.999, 0, 0, 0},
		{"shift jumps at its time", PopulationConfig{DriftPerDay: -1, Shift: Shift{At: shiftAt, Share: 0.3}},
			shiftAt.Add(-time.Second), shiftAt, 0.9999, 1, -1, 0.5, 0.3},
		{"no jump before the shift", PopulationConfig{DriftPerDay: -1, Shift: Shift{At: shiftAt}},
			testStart, shiftAt.Add(-time.Second), 0.9999, 1, 0.9999, 1, 0.5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := tt.cfg
			cfg.Seed, cfg.Users = 4, 4000
			p := newTestPopulation(t, cat, cfg)
			a := make([]float32, cat.Dim)
			b := make([]float32, cat.Dim)
			shifted, minU, maxU, sumS, sumU := 0, 2.0, -2.0, 0.0, 0.0
			for i := range p.Users {
				u := &p.Users[i]
				c := cosine(p.Preference(u, tt.from, a), p.Preference(u, tt.to, b))
				if u.Shifted {
					shifted++
					sumS += c
				} else {
					minU, maxU = min(minU, c), max(maxU, c)
					sumU += c
				}
			}
			if frac := float64(shifted) / float64(p.Len()); math.Abs(frac-tt.wantShiftedFrac) > 0.03 {
				t.Errorf("shifted share %.3f, want %.3f", frac, tt.wantShiftedFrac)
			}
			if minU < tt.minU || maxU > tt.maxU+1e-6 {
				t.Errorf("unshifted cosines in [%.4f, %.4f] (mean %.3f), want within [%.4f, %.4f]",
					minU, maxU, sumU/float64(p.Len()-shifted), tt.minU, tt.maxU)
			}
			if shifted > 0 {
				if m := sumS / float64(shifted); m < tt.minMeanS || m > tt.maxMeanS+1e-6 {
					t.Errorf("shifted mean cosine %.4f, want within [%.4f, %.4f]", m, tt.minMeanS, tt.maxMeanS)
				}
			}
		})
	}
}

func TestPopulationConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  PopulationConfig
		want string
	}{
		{"too many users", PopulationConfig{Start: testStart, Users: MaxUsers + 1}, "population users: 5000001"},
		{"no start", PopulationConfig{}, "population start: required"},
		{"drift", PopulationConfig{Start: testStart, DriftPerDay: 1.5}, "drift_per_day: 1.5"},
		{"shift share", PopulationConfig{Start: testStart, Shift: Shift{At: testStart, Share: 2}}, "shift share: 2"},
		{"shift strength", PopulationConfig{Start: testStart, Shift: Shift{At: testStart, Strength: 3}}, "shift strength: 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if err := tt.cfg.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestDiurnalAndLocalHour(t *testing.T) {
	t.Parallel()
	u := &User{TimeZone: TimeZone{"Asia/Kolkata", 5*time.Hour + 30*time.Minute}}
	tests := []struct {
		utc  time.Time
		want float64
	}{
		{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), 5.5},
		{time.Date(2026, 1, 1, 20, 0, 0, 0, time.UTC), 1.5},
		{time.Date(1969, 12, 31, 23, 0, 0, 0, time.UTC), 4.5}, // negative unix time
	}
	for _, tt := range tests {
		if got := u.LocalHour(tt.utc); math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("LocalHour(%s) = %g, want %g", tt.utc, got, tt.want)
		}
	}
	if !(Diurnal(21) > 3*Diurnal(4) && Diurnal(20.5) > Diurnal(13)) {
		t.Errorf("daily rhythm: 21h %.2f, 4h %.2f, 13h %.2f", Diurnal(21), Diurnal(4), Diurnal(13))
	}
	if got, want := Diurnal(23.5), (diurnal[23]+diurnal[0])/2; math.Abs(got-want) > 1e-12 {
		t.Errorf("Diurnal(23.5) = %g, want %g (wraps to midnight)", got, want)
	}
}
