package eval

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// randomLog draws n ratings at coarse times so that many share a second,
// which is what makes a boundary leak possible.
func randomLog(n, users, items int, seed uint64) []Interaction {
	rng := rand.New(rand.NewPCG(seed, 9))
	out := make([]Interaction, n)
	for i := range out {
		out[i] = Interaction{
			User:   int32(rng.IntN(users)),
			Item:   int32(rng.IntN(items)),
			Rating: float32(1 + rng.IntN(5)),
			Time:   int64(rng.IntN(n / 10)),
		}
	}
	return out
}

func TestTimeSplitNoLeakage(t *testing.T) {
	t.Parallel()
	for _, frac := range []float64{0.1, 0.2, 0.5} {
		log := randomLog(5000, 200, 300, uint64(frac*100))
		sp, err := TimeSplit(log, frac)
		if err != nil {
			t.Fatal(err)
		}
		if len(sp.Train)+len(sp.Test) != len(log) {
			t.Fatalf("f=%v: %d + %d interactions, want %d", frac, len(sp.Train), len(sp.Test), len(log))
		}
		for _, it := range sp.Train {
			if it.Time >= sp.Time {
				t.Fatalf("f=%v: train interaction at %d, not before the split time %d", frac, it.Time, sp.Time)
			}
		}
		for _, it := range sp.Test {
			if it.Time < sp.Time {
				t.Fatalf("f=%v: test interaction at %d, before the split time %d", frac, it.Time, sp.Time)
			}
		}
		// The test side holds at least the fraction (ties go to it) and
		// not more than the fraction plus one second's interactions.
		want := int(float64(len(log))*frac + 0.5)
		atSplit := 0
		for _, it := range log {
			if it.Time == sp.Time {
				atSplit++
			}
		}
		if len(sp.Test) < want || len(sp.Test) > want+atSplit {
			t.Fatalf("f=%v: %d test interactions, want %d..%d", frac, len(sp.Test), want, want+atSplit)
		}
		if !slices.IsSortedFunc(sp.Train, func(a, b Interaction) int { return cmp64(a.Time, b.Time) }) {
			t.Fatalf("f=%v: train not in time order", frac)
		}
	}
}

func TestCasesUseOnlyTheirPeriod(t *testing.T) {
	t.Parallel()
	log := randomLog(8000, 100, 200, 3)
	sp, err := TimeSplit(log, 0.3)
	if err != nil {
		t.Fatal(err)
	}
	type key struct{ u, i int32 }
	trainAny, trainPos, testPos := map[key]bool{}, map[key]bool{}, map[key]bool{}
	for _, it := range sp.Train {
		trainAny[key{it.User, it.Item}] = true
		if it.Rating >= 4 {
			trainPos[key{it.User, it.Item}] = true
		}
	}
	for _, it := range sp.Test {
		if it.Rating >= 4 {
			testPos[key{it.User, it.Item}] = true
		}
	}
	cases := sp.Cases(4)
	if len(cases) == 0 {
		t.Fatal("no cases")
	}
	for _, c := range cases {
		if len(c.Liked) == 0 || len(c.Relevant) == 0 {
			t.Fatalf("user %d: %d liked, %d relevant; want both", c.User, len(c.Liked), len(c.Relevant))
		}
		for _, i := range c.Seen {
			if !trainAny[key{c.User, i}] {
				t.Fatalf("user %d: seen item %d is not a training interaction", c.User, i)
			}
		}
		for _, i := range c.Liked {
			if !trainPos[key{c.User, i}] {
				t.Fatalf("user %d: liked item %d is not a training positive", c.User, i)
			}
		}
		for _, i := range c.Relevant {
			if !testPos[key{c.User, i}] || trainAny[key{c.User, i}] {
				t.Fatalf("user %d: relevant item %d is not an unseen test positive", c.User, i)
			}
		}
		n := 0
		for k := range testPos {
			if k.u == c.User && !trainAny[k] {
				n++
			}
		}
		if n != len(c.Relevant) {
			t.Fatalf("user %d: %d relevant, want %d", c.User, len(c.Relevant), n)
		}
	}
}

func TestTimeSplitRejects(t *testing.T) {
	t.Parallel()
	same := []Interaction{{Time: 5}, {Time: 5}, {Time: 5}}
	for name, call := range map[string]func() error{
		"fraction 0":      func() error { _, err := TimeSplit(randomLog(100, 5, 5, 1), 0); return err },
		"fraction 1":      func() error { _, err := TimeSplit(randomLog(100, 5, 5, 1), 1); return err },
		"too few":         func() error { _, err := TimeSplit(randomLog(10, 5, 5, 1)[:1], 0.2); return err },
		"all at one time": func() error { _, err := TimeSplit(same, 0.5); return err },
	} {
		if call() == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
