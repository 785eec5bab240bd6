package signaling

import "sort"

func sortCalls(cs []CallInfo) {
	sort.Slice(cs, func(i, j int) bool {
		if cs[i].Created.Equal(cs[j].Created) {
			return cs[i].ID < cs[j].ID
		}
		return cs[i].Created.Before(cs[j].Created)
	})
}
