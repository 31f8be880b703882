package rerank

import (
	"math"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		edit func(*Config)
		want []string // substrings of the error; none: valid
	}{
		{name: "defaults", edit: func(*Config) {}},
		{name: "zero config", edit: func(c *Config) { *c = Config{} }},
		{name: "boost exactly 1", edit: func(c *Config) { c.PromotedBoost = 1 }},
		{name: "largest values", edit: func(c *Config) {
			c.PromotedBoost, c.MaxPromoted, c.MaxPerCategory, c.MaxPerCreator, c.MinFresh = MaxPromotedBoost, MaxN, MaxN, MaxN, MaxN
		}},
		{name: "negative category cap", edit: func(c *Config) { c.MaxPerCategory = -1 },
			want: []string{"max_per_category -1", "0 turns the rule off"}},
		{name: "negative creator cap", edit: func(c *Config) { c.MaxPerCreator = -3 },
			want: []string{"max_per_creator -3"}},
		{name: "negative promoted cap", edit: func(c *Config) { c.MaxPromoted = -2 },
			want: []string{"max_promoted -2"}},
		{name: "fresh minimum above the list", edit: func(c *Config) { c.MinFresh = MaxN + 1 },
			want: []string{"min_fresh 501 outside 0..500"}},
		{name: "boost below 1", edit: func(c *Config) { c.PromotedBoost = 0.2 },
			want: []string{"promoted_boost 0.2", "1.2 to raise promoted scores by 20%"}},
		{name: "negative boost", edit: func(c *Config) { c.PromotedBoost = -1 },
			want: []string{"promoted_boost -1"}},
		{name: "huge boost", edit: func(c *Config) { c.PromotedBoost = 1000 },
			want: []string{"promoted_boost 1000"}},
		{name: "NaN boost", edit: func(c *Config) { c.PromotedBoost = math.NaN() },
			want: []string{"promoted_boost NaN"}},
		{name: "every bad key at once", edit: func(c *Config) {
			c.MaxPerCategory, c.MaxPerCreator, c.MinFresh, c.PromotedBoost = -1, -1, -1, 0.5
		}, want: []string{"max_per_category", "max_per_creator", "min_fresh", "promoted_boost"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := DefaultConfig()
			tt.edit(&cfg)
			err := cfg.Validate()
			_, newErr := New(cfg)
			if len(tt.want) == 0 {
				if err != nil || newErr != nil {
					t.Fatalf("Validate() = %v, New() error = %v; want both nil", err, newErr)
				}
				return
			}
			if err == nil || newErr == nil {
				t.Fatalf("Validate() = %v, New() error = %v; want errors containing %q", err, newErr, tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

// The server loads DefaultConfig and then its YAML file over it; a key
// the file sets must change only that field, and 0 must switch a rule
// off rather than restore a default.
func TestConfigYAMLOverlay(t *testing.T) {
	t.Parallel()
	doc := "suppress_seen: false\npromoted_boost: 1.5\nmax_promoted: 1\nmax_per_category: 0\nmin_fresh: 4\n"
	cfg := DefaultConfig()
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		t.Fatalf("decode %q: %v", doc, err)
	}
	want := Config{
		SuppressSeen:   false,
		PromotedBoost:  1.5,
		MaxPromoted:    1,
		MaxPerCategory: 0,
		MaxPerCreator:  DefaultConfig().MaxPerCreator,
		MinFresh:       4,
	}
	if cfg != want {
		t.Fatalf("decoded %+v, want %+v", cfg, want)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate() = %v", err)
	}

	out, err := yaml.Marshal(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"suppress_seen:", "promoted_boost:", "max_promoted:", "max_per_category:", "max_per_creator:", "min_fresh:"} {
		if !strings.Contains(string(out), key) {
			t.Errorf("marshalled DefaultConfig lacks key %s:\n%s", key, out)
		}
	}
}
