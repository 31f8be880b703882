package predictions

import (
	"fmt"
	"math"
	"strings"
)

// Checks a version must pass to become current, the Check of a Failure.
const (
	// CheckScore: a score is NaN, infinite or negative.
	CheckScore = "score"
	// CheckEmpty: a list holds no item.
	CheckEmpty = "empty"
	// CheckLength: a list holds more than K items.
	CheckLength = "length"
	// CheckDuplicate: a list holds an item twice.
	CheckDuplicate = "duplicate"
	// CheckItemID: an item id is empty or longer than 256 bytes.
	CheckItemID = "item_id"
	// CheckCoverage: too few of the active users have a list.
	CheckCoverage = "coverage"
	// CheckUsers: fewer users than Validation.MinUsers, or a fall in users
	// against the current version beyond Validation.MaxUserDrop.
	CheckUsers = "users"
)

// Failure is one failed check of a version: the check, how many lists
// failed it (for list checks) and a detail naming the values.
type Failure struct {
	Check  string `json:"check"`
	Lists  int    `json:"lists,omitempty"`
	Detail string `json:"detail"`
}

// String renders the failure as "check: detail".
func (f Failure) String() string { return f.Check + ": " + f.Detail }

// Validation bounds what a version may look like to become current. The zero
// value checks the lists only.
type Validation struct {
	// MinCoverage is the least share of the expected (active) users that
	// must have a valid list; 0 skips the check.
	MinCoverage float64
	// MaxUserDrop is the largest relative fall in users against the
	// current version (0.5: at least half as many); 0 or 1 skips it.
	MaxUserDrop float64
	// MinUsers is the fewest users a version may have; 0 skips it.
	MinUsers int
}

// CheckList validates one list of at most k items and returns the failed
// check and its detail, or "" when the list is valid.
func CheckList(list []Entry, k int) (check, detail string) {
	if len(list) == 0 {
		return CheckEmpty, "no items"
	}
	if len(list) > k {
		return CheckLength, fmt.Sprintf("%d items, K is %d", len(list), k)
	}
	for i, e := range list {
		s := float64(e.Score)
		if math.IsNaN(s) || math.IsInf(s, 0) || s < 0 {
			return CheckScore, fmt.Sprintf("item %s at position %d scores %v", e.ItemID, i, e.Score)
		}
		if e.ItemID == "" || len(e.ItemID) > maxItemIDLen {
			return CheckItemID, fmt.Sprintf("item at position %d has a %d-byte id", i, len(e.ItemID))
		}
	}
	// Lists are short (K <= 500): a quadratic scan allocates nothing for
	// the common K of 100 and stays cheap up to the bound.
	if len(list) <= 64 {
		for i := 1; i < len(list); i++ {
			for j := range i {
				if list[i].ItemID == list[j].ItemID {
					return CheckDuplicate, fmt.Sprintf("item %s at positions %d and %d", list[i].ItemID, j, i)
				}
			}
		}
		return "", ""
	}
	seen := make(map[string]int, len(list))
	for i, e := range list {
		if j, ok := seen[e.ItemID]; ok {
			return CheckDuplicate, fmt.Sprintf("item %s at positions %d and %d", e.ItemID, j, i)
		}
		seen[e.ItemID] = i
	}
	return "", ""
}

// tally counts the lists failing each check, keeping the first example.
type tally struct {
	order []string
	n     map[string]int
	first map[string]string
}

func (t *tally) add(check, user, detail string) {
	if t.n == nil {
		t.n, t.first = map[string]int{}, map[string]string{}
	}
	if t.n[check] == 0 {
		t.order = append(t.order, check)
		t.first[check] = "user " + user + ": " + detail
	}
	t.n[check]++
}

func (t *tally) failures() []Failure {
	var out []Failure
	for _, c := range t.order {
		d := t.first[c]
		if t.n[c] > 1 {
			d = fmt.Sprintf("%d lists, first %s", t.n[c], d)
		}
		out = append(out, Failure{Check: c, Lists: t.n[c], Detail: d})
	}
	return out
}

// CheckVersion validates a version's totals: users is how many valid lists
// were written, expected how many active users there were, and previous the
// user count of the current version (0 when there is none).
func CheckVersion(v Validation, users, expected, previous int) []Failure {
	var out []Failure
	if v.MinUsers > 0 && users < v.MinUsers {
		out = append(out, Failure{Check: CheckUsers, Detail: fmt.Sprintf("%d users with a list, at least %d required (%d active)", users, v.MinUsers, expected)})
	}
	if v.MinCoverage > 0 && expected > 0 {
		if cov := float64(users) / float64(expected); cov < v.MinCoverage {
			out = append(out, Failure{Check: CheckCoverage, Detail: fmt.Sprintf("%d of %d active users have a list (%.4f), below the minimum %.4f", users, expected, cov, v.MinCoverage)})
		}
	}
	if v.MaxUserDrop > 0 && v.MaxUserDrop < 1 && previous > 0 {
		if floor := float64(previous) * (1 - v.MaxUserDrop); float64(users) < floor {
			out = append(out, Failure{Check: CheckUsers, Detail: fmt.Sprintf("%d users with a list against %d in the current version: a fall of %.1f%%, at most %.1f%% allowed",
				users, previous, 100*(1-float64(users)/float64(previous)), 100*v.MaxUserDrop)})
		}
	}
	return out
}

// Describe joins failures into one line, each as "check: detail".
func Describe(fs []Failure) string {
	s := make([]string, len(fs))
	for i, f := range fs {
		s[i] = f.String()
	}
	return strings.Join(s, "; ")
}
