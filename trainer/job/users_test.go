package job

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/adaptrec/adaptrec/trainer/retrieval"
)

// usersFixture is a small positive set in which users like the items of
// one of four tastes, read in an order unlike id order, and the ALS model
// and IVF index the Go trainer's embeddings stage trains from it.
func usersFixture(t *testing.T) (*positiveSet, *retrieval.Model, *retrieval.Index, []string) {
	t.Helper()
	const users, items, tastes = 120, 200, 4
	rng := rand.New(rand.NewPCG(3, 4))
	pos := &positiveSet{users: map[string]int32{}, items: map[string]int32{}, strength: map[[2]int32]float64{}}
	id := func(m map[string]int32, v string) int32 {
		k, ok := m[v]
		if !ok {
			k = int32(len(m))
			m[v] = k
		}
		return k
	}
	for _, u := range rng.Perm(users) {
		for range 12 {
			i := tastes*rng.IntN(items/tastes) + u%tastes // an item of the user's taste
			if rng.IntN(10) == 0 {
				i = rng.IntN(items) // and some noise
			}
			k := [2]int32{id(pos.users, fmt.Sprintf("user-%03d", u)), id(pos.items, fmt.Sprintf("item-%03d", i))}
			pos.strength[k] += float64(1 + rng.IntN(2))
		}
	}
	// As GoTrainer.embeddings trains.
	userIDs, userOf := sortedIDs(pos.users)
	itemIDs, itemOf := sortedIDs(pos.items)
	var data []retrieval.Interaction
	for k, s := range pos.strength {
		data = append(data, retrieval.Interaction{User: userOf[k[0]], Item: itemOf[k[1]], Strength: float32(s)})
	}
	slices.SortFunc(data, func(a, b retrieval.Interaction) int {
		return cmp.Or(cmp.Compare(a.User, b.User), cmp.Compare(a.Item, b.Item))
	})
	m, err := retrieval.Train(t.Context(), len(userIDs), len(itemIDs), data, retrieval.Config{Factors: 8, Iterations: 4, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	ivf, err := m.BuildIndex(t.Context(), itemIDs, retrieval.IndexConfig{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	return pos, m, ivf, userIDs
}

// TestFoldInUsersReproducesTheTrainedVectors: the runner's users.emb over
// the Go trainer's items.ivf is the Go trainer's, bit for bit, whatever
// the number of workers, and each user's vector ranks their own positives
// above the other items.
func TestFoldInUsersReproducesTheTrainedVectors(t *testing.T) {
	t.Parallel()
	pos, m, ivf, userIDs := usersFixture(t)
	trained, err := m.UserVectors(userIDs)
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	if err := trained.Save(&want); err != nil {
		t.Fatal(err)
	}
	for _, workers := range []int{1, 3} {
		u, err := foldInUsers(t.Context(), pos, ivf, workers)
		if err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		if err := u.Save(&got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Fatalf("%d workers: the folded-in users differ from the trained ones", workers)
		}
	}

	// Each user's own positives against the items they never touched.
	_, userOf := sortedIDs(pos.users)
	_, itemOf := sortedIDs(pos.items)
	liked := make([]map[int32]bool, trained.Len())
	for k := range pos.strength {
		u := userOf[k[0]]
		if liked[u] == nil {
			liked[u] = map[int32]bool{}
		}
		liked[u][itemOf[k[1]]] = true
	}
	var above, pairs int
	for u := range int32(trained.Len()) {
		k, ok := trained.Lookup(userIDs[u])
		if !ok || k != u {
			t.Fatalf("user %q is %d, %v", userIDs[u], k, ok)
		}
		v := trained.Vector(k)
		for i := range liked[u] {
			for j := range int32(ivf.Len()) {
				if !liked[u][j] {
					pairs++
					if dot(v, ivf.Vector(i)) > dot(v, ivf.Vector(j)) {
						above++
					}
				}
			}
		}
	}
	auc := float64(above) / float64(pairs)
	t.Logf("stored user vectors rank their positives above other items in %.3f of %d pairs", auc, pairs)
	if auc < 0.85 {
		t.Errorf("stored user vectors rank their positives above other items in %.3f of pairs, want at least 0.85 (chance: 0.5)", auc)
	}
}

func TestFoldInUsersRefuses(t *testing.T) {
	t.Parallel()
	pos, m, ivf, _ := usersFixture(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := foldInUsers(ctx, pos, ivf, 2); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	// An index without fold-in parameters cannot fold anyone in.
	ids := make([]string, ivf.Len())
	for i := range ids {
		ids[i] = ivf.ID(int32(i))
	}
	bare, err := retrieval.BuildIndex(t.Context(), ids, m.ItemFactors, m.Dims, retrieval.IndexConfig{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := foldInUsers(t.Context(), pos, bare, 2); !errors.Is(err, retrieval.ErrNoFoldIn) {
		t.Errorf("index without fold-in parameters: %v", err)
	}
}

func TestCheckUsersAgainstIVF(t *testing.T) {
	t.Parallel()
	ivf, _, _ := itemsFixture(t) // 4 dims
	users := func(dims int) ([]byte, UserVectors) {
		ids := []string{"u1", "u2", "u3"}
		u, err := retrieval.NewUserVectors(ids, make([]float32, len(ids)*dims), dims)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := u.Save(&b); err != nil {
			t.Fatal(err)
		}
		return b.Bytes(), UserVectors{Users: u.Len(), Dims: u.Dims()}
	}
	good, md := users(ivf.Dims())
	if err := checkUsers(good, md, ivf); err != nil {
		t.Fatalf("matching user vectors: %v", err)
	}
	byRunner := md
	byRunner.BuiltBy = BuiltByRunner
	if err := checkUsers(good, byRunner, ivf); err != nil {
		t.Fatalf("user vectors the runner built: %v", err)
	}
	wider, widerMD := users(ivf.Dims() + 1)
	if err := checkUsers(wider, widerMD, nil); err != nil {
		t.Fatalf("without items.ivf: %v", err)
	}
	other := md
	other.Users++
	for _, tt := range []struct {
		name string
		data []byte
		md   UserVectors
		want string
	}{
		{"metadata differs", good, other, "the metadata says"},
		{"corrupt", good[:len(good)-1], md, "truncated"},
		{"other dims", wider, widerMD, "holds vectors of 5 dims, items.ivf of 4"},
	} {
		if err := checkUsers(tt.data, tt.md, ivf); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
}

func dot(a, b []float32) float32 {
	var s float32
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}
