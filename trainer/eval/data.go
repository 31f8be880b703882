package eval

import (
	"fmt"
	"slices"

	"github.com/adaptrec/adaptrec/features/batch"
	"github.com/adaptrec/adaptrec/sim"
)

// Interaction is one rating of a data set, with dense user and item
// numbers (indexes into Dataset.UserIDs and Dataset.ItemIDs).
type Interaction struct {
	User   int32
	Item   int32
	Rating float32
	// Time is in unix seconds.
	Time int64
}

// Dataset is an interaction log over a catalogue.
type Dataset struct {
	// UserIDs and ItemIDs name the dense numbers; ItemIDs is the whole
	// catalogue, including items nobody interacted with.
	UserIDs []string
	ItemIDs []string
	// Interactions in time order (ties by user, then item).
	Interactions []Interaction
	// Catalogue, when set, is the items' metadata for the batch feature
	// lane (categories, publish times); without it the ranker's features
	// that need it keep their defaults.
	Catalogue *batch.Catalogue
}

// LoadMovieLens reads MovieLens 100K (u.data and u.item) from dir with
// sim.LoadMovieLens. Ids are the platform's ("ml-u196", "ml-i242"); users
// are numbered in id order, items in u.item order, which covers every
// movie, rated or not. The catalogue holds each movie's first genre as its
// category and its release date as its publish time (nothing derived from
// ratings).
func LoadMovieLens(dir string) (*Dataset, error) {
	ml, err := sim.LoadMovieLens(dir)
	if err != nil {
		return nil, fmt.Errorf("eval: load MovieLens from %s: %w", dir, err)
	}
	ds := &Dataset{ItemIDs: make([]string, len(ml.Movies))}
	item := make(map[int32]int32, len(ml.Movies))
	for i, mv := range ml.Movies {
		item[mv.ID] = int32(i)
		ds.ItemIDs[i] = sim.MovieLensItemID(mv.ID)
	}
	var users []int32
	seen := make(map[int32]bool)
	for _, r := range ml.Ratings {
		if !seen[r.User] {
			seen[r.User] = true
			users = append(users, r.User)
		}
	}
	slices.Sort(users)
	user := make(map[int32]int32, len(users))
	for i, u := range users {
		user[u] = int32(i)
		ds.UserIDs = append(ds.UserIDs, sim.MovieLensUserID(u))
	}
	ds.Interactions = make([]Interaction, len(ml.Ratings))
	for i, r := range ml.Ratings {
		ds.Interactions[i] = Interaction{User: user[r.User], Item: item[r.Item], Rating: float32(r.Value), Time: r.Time}
	}
	sortByTime(ds.Interactions)
	cat, err := ml.Catalogue()
	if err != nil {
		return nil, fmt.Errorf("eval: MovieLens catalogue from %s: %w", dir, err)
	}
	ds.Catalogue = batch.CatalogueFromSim(cat)
	return ds, nil
}

func sortByTime(s []Interaction) {
	slices.SortFunc(s, func(a, b Interaction) int {
		switch {
		case a.Time != b.Time:
			return cmp64(a.Time, b.Time)
		case a.User != b.User:
			return int(a.User) - int(b.User)
		}
		return int(a.Item) - int(b.Item)
	})
}

func cmp64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
