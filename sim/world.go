package sim

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// WorldConfig describes a whole world. Seed, Start and Window apply to the
// parts: the Seed, Start and Window fields of Catalogue and Population are
// overwritten with them.
type WorldConfig struct {
	// Seed makes the world reproducible; parts draw from independent streams.
	Seed uint64
	// Start is the beginning of the history window; required.
	Start time.Time
	// Window is the length of the history window; default DefaultWindow.
	Window time.Duration
	// Catalogue configures the generated catalogue; ignored when Prebuilt
	// is set.
	Catalogue CatalogueConfig
	// Prebuilt, when set, is used as the catalogue instead of generating
	// one (e.g. one read back with ReadCatalogue). It needs latent vectors.
	Prebuilt *Catalogue
	// Population configures the users.
	Population PopulationConfig
	// Response configures the response model.
	Response ResponseParams
}

// World bundles a catalogue, its users and the response model.
type World struct {
	// Seed, Start and Window are those of the WorldConfig.
	Seed   uint64
	Start  time.Time
	Window time.Duration
	// Catalogue holds the items, Users the population, and Model the
	// response model (the oracle) over both.
	Catalogue *Catalogue
	Users     *Population
	Model     *ResponseModel

	// fingerprint identifies everything that shapes a log generated in
	// this world, so that logs of different worlds get different event ids.
	fingerprint uint64
}

// NewWorld builds a world; the same configuration always gives the same world.
func NewWorld(cfg WorldConfig) (*World, error) {
	if cfg.Start.IsZero() {
		return nil, errors.New("world start: required")
	}
	if cfg.Window == 0 {
		cfg.Window = DefaultWindow
	}
	cat := cfg.Prebuilt
	if cat == nil {
		cc := cfg.Catalogue
		cc.Seed, cc.Start, cc.Window = cfg.Seed, cfg.Start, cfg.Window
		var err error
		if cat, err = NewCatalogue(cc); err != nil {
			return nil, fmt.Errorf("generate catalogue: %w", err)
		}
	}
	pc := cfg.Population
	pc.Seed, pc.Start = cfg.Seed, cfg.Start
	pop, err := NewPopulation(cat, pc)
	if err != nil {
		return nil, fmt.Errorf("generate users: %w", err)
	}
	model := NewResponseModel(cat, pop, cfg.Response)
	pc = pc.withDefaults()
	rp := model.Params()
	fp := mix(cfg.Seed, uint64(cfg.Start.UnixNano()), uint64(cfg.Window), cat.fingerprint(),
		uint64(pc.Users), math.Float64bits(pc.DriftPerDay), uint64(pc.Shift.At.UnixNano()),
		math.Float64bits(pc.Shift.Share), math.Float64bits(pc.Shift.Strength),
		math.Float64bits(rp.ClickBias), math.Float64bits(rp.Affinity), math.Float64bits(rp.Quality),
		math.Float64bits(rp.Freshness), uint64(rp.FreshnessHalfLife), math.Float64bits(rp.TimeOfDay),
		math.Float64bits(rp.PositionDecay), math.Float64bits(rp.FlaggedPenalty))
	return &World{
		Seed:        cfg.Seed,
		Start:       cfg.Start.UTC(),
		Window:      cfg.Window,
		Catalogue:   cat,
		Users:       pop,
		Model:       model,
		fingerprint: fp,
	}, nil
}

// End returns the end of the history window.
func (w *World) End() time.Time { return w.Start.Add(w.Window) }
