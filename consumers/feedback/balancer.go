package feedback

import (
	"slices"

	"github.com/segmentio/kafka-go"
)

// soleOwner assigns every partition of every topic to one member of the
// group, the one with the smallest member id; the others get nothing and
// stand by until a rebalance hands them the work. The join needs a
// prediction and the interactions of its request in one process, and an
// accuracy window sums every partition: one owner emits each window once,
// whole.
type soleOwner struct{}

var _ kafka.GroupBalancer = soleOwner{}

// ProtocolName names the assignment strategy to the group coordinator.
func (soleOwner) ProtocolName() string { return "adaptrec-sole-owner" }

// UserData is empty: the assignment needs nothing from the members.
func (soleOwner) UserData() ([]byte, error) { return nil, nil }

// AssignGroups gives all partitions to the member with the smallest id.
func (soleOwner) AssignGroups(members []kafka.GroupMember, partitions []kafka.Partition) kafka.GroupMemberAssignments {
	out := kafka.GroupMemberAssignments{}
	if len(members) == 0 {
		return out
	}
	owner := members[0].ID
	for _, m := range members {
		out[m.ID] = map[string][]int{}
		owner = min(owner, m.ID)
	}
	for _, p := range partitions {
		out[owner][p.Topic] = append(out[owner][p.Topic], p.ID)
	}
	for _, ps := range out[owner] {
		slices.Sort(ps)
	}
	return out
}
