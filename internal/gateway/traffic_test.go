package gateway

import (
	"math"
	"regexp"
	"testing"
)

func TestPickWeighted(t *testing.T) {
	const picks = 20000
	tests := []struct {
		name    string
		traffic []Weight
		want    map[string]float64 // expected share; nil means no pick possible
	}{
		{"90/10", []Weight{{"blue", 90}, {"green", 10}}, map[string]float64{"blue": .9, "green": .1}},
		{"all traffic", []Weight{{"blue", 100}}, map[string]float64{"blue": 1}},
		{"zero weight ignored", []Weight{{"blue", 0}, {"green", 50}, {"red", 50}}, map[string]float64{"green": .5, "red": .5}},
		{"three way", []Weight{{"a", 20}, {"b", 30}, {"c", 50}}, map[string]float64{"a": .2, "b": .3, "c": .5}},
		{"sum below 100 is normalised", []Weight{{"a", 30}, {"b", 10}}, map[string]float64{"a": .75, "b": .25}},
		{"empty", nil, nil},
		{"only zero", []Weight{{"blue", 0}, {"green", 0}}, nil},
		{"negative", []Weight{{"blue", -5}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			counts := map[string]int{}
			for range picks {
				name, ok := pickWeighted(tt.traffic)
				if ok != (tt.want != nil) {
					t.Fatalf("pickWeighted ok = %v; want %v", ok, tt.want != nil)
				}
				if ok {
					counts[name]++
				}
			}
			for name, n := range counts {
				if _, ok := tt.want[name]; !ok {
					t.Errorf("picked %q %d times; want never", name, n)
				}
			}
			for name, share := range tt.want {
				got := float64(counts[name]) / picks
				if math.Abs(got-share) > 0.02 {
					t.Errorf("share of %q = %.3f; want %.2f ± 0.02", name, got, share)
				}
			}
		})
	}
}

func instances(loads ...int64) []*Instance {
	ins := make([]*Instance, len(loads))
	for i, l := range loads {
		ins[i] = &Instance{ID: string(rune('a' + i))}
		ins[i].Outstanding.Store(l)
	}
	return ins
}

func TestLeastOutstanding(t *testing.T) {
	const picks = 10000
	tests := []struct {
		name  string
		loads []int64
		// want maps instance index to its expected share of picks.
		want map[int]float64
	}{
		{"none", nil, nil},
		{"one", []int64{7}, map[int]float64{0: 1}},
		{"two, second idle", []int64{3, 0}, map[int]float64{1: 1}},
		{"two, first idle", []int64{0, 3}, map[int]float64{0: 1}},
		{"two tied splits evenly", []int64{2, 2}, map[int]float64{0: .5, 1: .5}},
		// Power of two choices over 4: the idle one wins whenever drawn,
		// which is half the pairs; the busiest never wins.
		{"four, one idle", []int64{0, 5, 5, 9}, map[int]float64{0: .5, 1: .25, 2: .25}},
		{"three tied", []int64{1, 1, 1}, map[int]float64{0: 1. / 3, 1: 1. / 3, 2: 1. / 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ins := instances(tt.loads...)
			counts := make([]int, len(ins))
			for range picks {
				in := leastOutstanding(ins)
				if in == nil {
					if tt.want != nil {
						t.Fatal("leastOutstanding = nil; want an instance")
					}
					continue
				}
				counts[in.ID[0]-'a']++
			}
			for i, n := range counts {
				got := float64(n) / picks
				if math.Abs(got-tt.want[i]) > 0.02 {
					t.Errorf("share of instance %d (load %d) = %.3f; want %.2f ± 0.02", i, tt.loads[i], got, tt.want[i])
				}
			}
		})
	}
}

func TestNewRequestID(t *testing.T) {
	uuid4 := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for range 1000 {
		id := newRequestID()
		if !uuid4.MatchString(id) {
			t.Fatalf("newRequestID() = %q; want a version 4 UUID", id)
		}
		if seen[id] {
			t.Fatalf("newRequestID() repeated %q", id)
		}
		seen[id] = true
	}
}
