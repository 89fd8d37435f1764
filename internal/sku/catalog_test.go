package sku

import "testing"

func TestLookup(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
		vcpu int
		mem  float64
	}{
		{"Standard_DS3_v2", true, 4, 14},
		{"STANDARD_DS3_V2", true, 4, 14},
		{"standard_f2s_v2", true, 2, 4},
		{"Standard_E4s_v3", true, 4, 32},
		{"Standard_NC6s_v3", true, 6, 112},
		{"Standard_L80s_v3", true, 80, 640},
		{"Standard_DS9_v2", false, 0, 0},
		{"", false, 0, 0},
	} {
		s, ok := Lookup(tc.name)
		if ok != tc.ok || s.VCPU != tc.vcpu || s.MemoryGB != tc.mem {
			t.Errorf("Lookup(%q) = %+v, %v; want vcpu %d mem %v ok %v", tc.name, s, ok, tc.vcpu, tc.mem, tc.ok)
		}
	}
}

func TestAllOrderedAndUnique(t *testing.T) {
	seen := map[string]bool{}
	all := All()
	if len(all) < 60 {
		t.Fatalf("catalog has %d SKUs, want the full managed list", len(all))
	}
	for i, s := range all {
		if seen[s.Name] {
			t.Errorf("duplicate SKU %s", s.Name)
		}
		seen[s.Name] = true
		if i > 0 && all[i-1].GPU == s.GPU && all[i-1].VCPU > s.VCPU {
			t.Errorf("catalog not ordered at %s", s.Name)
		}
	}
}
