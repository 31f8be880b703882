package skew

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"
)

// Defaults of Thresholds.
const (
	// DefaultMeanShift flags a column whose served mean is more than half a
	// training standard deviation from the training mean.
	DefaultMeanShift = 0.5
	// DefaultPSI flags a column whose PSI exceeds 0.2, the usual bound of
	// a significant population shift.
	DefaultPSI = 0.2
	// DefaultDefaultRate flags a column whose default rate differs by more
	// than 10 percentage points.
	DefaultDefaultRate = 0.10
	// DefaultMinServed is the fewest served values a column needs to be
	// judged.
	DefaultMinServed = 30
)

// Thresholds decide which columns are flagged. Zero fields take the
// documented defaults; a negative field disables its check.
type Thresholds struct {
	// MeanShift bounds |served mean − training mean| / training std
	// (DefaultMeanShift). A column constant in training is scaled by
	// 1e-6 instead of its zero std.
	MeanShift float64 `json:"mean_shift"`
	// PSI bounds the population stability index over the training deciles
	// (DefaultPSI).
	PSI float64 `json:"psi"`
	// DefaultRate bounds |served default rate − training default rate|
	// (DefaultDefaultRate).
	DefaultRate float64 `json:"default_rate"`
	// MinServed is the fewest served values a column needs to be judged
	// (DefaultMinServed); columns with fewer are reported unflagged.
	MinServed int64 `json:"min_served"`
}

// WithDefaults returns t with zero fields set to their defaults.
func (t Thresholds) WithDefaults() Thresholds {
	if t.MeanShift == 0 {
		t.MeanShift = DefaultMeanShift
	}
	if t.PSI == 0 {
		t.PSI = DefaultPSI
	}
	if t.DefaultRate == 0 {
		t.DefaultRate = DefaultDefaultRate
	}
	if t.MinServed == 0 {
		t.MinServed = DefaultMinServed
	}
	return t
}

// Validate reports NaN or infinite thresholds.
func (t Thresholds) Validate() error {
	for _, f := range []struct {
		name string
		v    float64
	}{{"mean shift", t.MeanShift}, {"PSI", t.PSI}, {"default rate", t.DefaultRate}} {
		if math.IsNaN(f.v) || math.IsInf(f.v, 0) {
			return fmt.Errorf("skew: %s threshold %v is not a finite number", f.name, f.v)
		}
	}
	return nil
}

// Reasons a column is flagged.
const (
	ReasonMeanShift   = "mean_shift"
	ReasonPSI         = "psi"
	ReasonDefaultRate = "default_rate"
)

// FeatureSkew compares one column.
type FeatureSkew struct {
	// Name is the column (feature, or name[i] of a vector); Feature the
	// feature it belongs to.
	Name     string `json:"name"`
	Feature  string `json:"feature"`
	Training Stats  `json:"training"`
	Served   Stats  `json:"served"`
	// MeanShift is |served mean − training mean| in training stds; PSI
	// the population stability index; DefaultRateDiff served default rate
	// minus training default rate. All 0 when the column was not judged.
	MeanShift       float64 `json:"mean_shift"`
	PSI             float64 `json:"psi"`
	DefaultRateDiff float64 `json:"default_rate_diff"`
	// Judged is false when the column had fewer served values than
	// Thresholds.MinServed, or no training values.
	Judged bool `json:"judged"`
	// Reasons lists the exceeded thresholds (Reason… constants); empty
	// when not flagged.
	Reasons []string `json:"reasons,omitempty"`
	// Severity is the largest ratio of a measure to its threshold; the
	// column is flagged when it exceeds 1.
	Severity float64 `json:"severity"`
}

// Flagged reports whether any threshold was exceeded.
func (f FeatureSkew) Flagged() bool { return len(f.Reasons) > 0 }

// Report is the outcome of a comparison.
type Report struct {
	TrainingSet string     `json:"training_set"`
	SchemaHash  string     `json:"schema_hash"`
	From        time.Time  `json:"from,omitzero"`
	To          time.Time  `json:"to,omitzero"`
	Thresholds  Thresholds `json:"thresholds"`
	// TrainingRows counts the training examples read.
	TrainingRows int64 `json:"training_rows"`
	// Served describes the PredictionEvents read.
	Served ServedSummary `json:"served"`
	// Features has one row per column: flagged columns first, by
	// decreasing severity, then the rest by decreasing severity, then by
	// name.
	Features []FeatureSkew `json:"features"`
	// Flagged counts the flagged columns.
	Flagged int `json:"flagged"`
}

// maxShift caps MeanShift so that the report stays JSON-encodable.
const maxShift = 1e9

// Compare compares every column of training with the same-named column of
// served (absent columns have no served values) under th (defaults applied).
func Compare(training, served *Profile, th Thresholds) ([]FeatureSkew, error) {
	th = th.WithDefaults()
	if err := th.Validate(); err != nil {
		return nil, err
	}
	out := make([]FeatureSkew, 0, len(training.cols))
	for i, c := range training.cols {
		fs := FeatureSkew{Name: c.Name, Feature: c.Feature, Training: training.Stats(i)}
		j, ok := served.Column(c.Name)
		if ok {
			fs.Served = served.Stats(j)
		}
		if !ok || fs.Served.Count < th.MinServed || fs.Training.Count == 0 {
			out = append(out, fs)
			continue
		}
		fs.Judged = true
		fs.MeanShift = min(math.Abs(fs.Served.Mean-fs.Training.Mean)/max(fs.Training.Std, 1e-6), maxShift)
		fs.PSI = PSI(training.Sample(i), served.Sample(j))
		fs.DefaultRateDiff = fs.Served.DefaultRate - fs.Training.DefaultRate
		check := func(v, limit float64, reason string) {
			if limit < 0 {
				return
			}
			fs.Severity = max(fs.Severity, v/limit)
			if v > limit {
				fs.Reasons = append(fs.Reasons, reason)
			}
		}
		check(fs.MeanShift, th.MeanShift, ReasonMeanShift)
		check(fs.PSI, th.PSI, ReasonPSI)
		check(math.Abs(fs.DefaultRateDiff), th.DefaultRate, ReasonDefaultRate)
		out = append(out, fs)
	}
	slices.SortStableFunc(out, func(a, b FeatureSkew) int {
		if a.Flagged() != b.Flagged() {
			if a.Flagged() {
				return -1
			}
			return 1
		}
		if c := cmp.Compare(b.Severity, a.Severity); c != 0 {
			return c
		}
		return cmp.Compare(a.Name, b.Name)
	})
	return out, nil
}
