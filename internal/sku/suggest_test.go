package sku

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func TestSuggest(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cpu     float64
		mem     float64
		gpu     int
		want    string
		inTable bool
	}{
		// Published rows, at and just above every boundary (facts §5.2).
		{"SDKDefault", 0.1, 0.5, 0, "Standard_DS1_v2", true},
		{"Row1Upper", 1, 1.2, 0, "Standard_DS1_v2", true},
		{"Row1TinyMem", 0.001, 0.001, 0, "Standard_DS1_v2", true},
		{"Row2Lower", 1.001, 1.201, 0, "Standard_F2s_v2", true},
		{"Row2JustAboveMem", 2, 1.2000001, 0, "Standard_F2s_v2", true},
		{"Row2Upper", 2, 1.7, 0, "Standard_F2s_v2", true},
		{"Row2Sample", 2, 1.5, 0, "Standard_F2s_v2", true},
		{"Row3JustAbove", 2, 1.7001, 0, "Standard_DS2_v2", true},
		{"Row3Sample", 1.5, 4, 0, "Standard_DS2_v2", true},
		{"Row3Upper", 2, 4.7, 0, "Standard_DS2_v2", true},
		{"Row4JustAbove", 2, 4.701, 0, "Standard_E2s_v3", true},
		{"Row4Upper", 2, 13.7, 0, "Standard_E2s_v3", true},
		{"Row5JustAboveCPU", 2.001, 0.5, 0, "Standard_F4s_v2", true},
		{"Row5Upper", 4, 5.7, 0, "Standard_F4s_v2", true},
		{"Row6JustAbove", 4, 5.701, 0, "Standard_DS3_v2", true},
		{"Row6Upper", 4, 11.7, 0, "Standard_DS3_v2", true},
		{"Row7JustAbove", 3, 11.701, 0, "Standard_E4s_v3", true},
		{"Row7Upper", 4, 16, 0, "Standard_E4s_v3", true},
		// Holes: the catalog policy.
		{"HoleCPU1Mem1.2001", 1, 1.2001, 0, "Standard_DS1_v2", false}, // DS1_v2 has 3.5 GB
		{"HoleCPU1Mem3.5", 1, 3.5, 0, "Standard_DS1_v2", false},
		{"HoleCPU1Mem3.6", 1, 3.6, 0, "Standard_F2s_v2", false},
		{"HoleCPU1.5Mem1.0", 1.5, 1.0, 0, "Standard_F2s_v2", false},
		{"HoleCPU2Mem1.2", 2, 1.2, 0, "Standard_F2s_v2", false},
		{"HoleCPU2Mem13.7001", 2, 13.7001, 0, "Standard_E2s_v3", false}, // E2s_v3 has 16 GB
		{"HoleCPU2Mem16.5", 2, 16.5, 0, "Standard_E4s_v3", false},
		{"HoleCPU4Mem16.001", 4, 16.001, 0, "Standard_E4s_v3", false},
		{"HoleCPU4Mem33", 4, 33, 0, "Standard_FX4mds", false},
		{"HoleCPU4.001", 4.001, 1, 0, "Standard_F8s_v2", false},
		{"HoleCPU8Mem17", 8, 17, 0, "Standard_DS4_v2", false}, // 28 GB beats D8a_v4 (32 GB),
		{"HoleCPU96", 96, 1, 0, "Standard_D96a_v4", false},
		// GPUs: smallest GPU SKU covering the request, never a CPU SKU.
		{"GPU1Small", 0.5, 1, 1, "Standard_NC4as_T4_v3", false},
		{"GPU1Big", 8, 60, 1, "Standard_NV12ads_A10_v5", false},
		{"GPU2", 4, 16, 2, "Standard_NC12s_v2", false},
		{"GPU8", 4, 16, 8, "Standard_ND40rs_v2", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, row, in, err := Suggest(tc.cpu, tc.mem, tc.gpu)
			if err != nil {
				t.Fatalf("Suggest(%v, %v, %d): %v", tc.cpu, tc.mem, tc.gpu, err)
			}
			if s.Name != tc.want || in != tc.inTable {
				t.Errorf("Suggest(%v, %v, %d) = %s, inTable %v (%s); want %s, inTable %v", tc.cpu, tc.mem, tc.gpu, s.Name, in, row, tc.want, tc.inTable)
			}
			if !strings.HasSuffix(row, "→ "+s.Name) {
				t.Errorf("row %q does not name the SKU", row)
			}
			if !in && !strings.HasPrefix(row, "outside the published table") {
				t.Errorf("row %q does not say it is outside the table", row)
			}
		})
	}
}

func TestSuggest_RowText(t *testing.T) {
	_, row, _, _ := Suggest(2, 1.5, 0)
	if want := "cpu (1, 2], memory (1.2, 1.7] GB → Standard_F2s_v2"; row != want {
		t.Errorf("row = %q; want %q", row, want)
	}
	_, row, _, _ = Suggest(1.5, 1, 0)
	if want := "outside the published table: smallest catalog SKU with ≥ 1.5 vCPU and ≥ 1 GB → Standard_F2s_v2"; row != want {
		t.Errorf("row = %q; want %q", row, want)
	}
}

func TestSuggest_Errors(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cpu, mem float64
		gpu      int
		noSKU    bool
	}{
		{"ZeroCPU", 0, 1, 0, false},
		{"ZeroMem", 1, 0, 0, false},
		{"NegativeCPU", -1, 1, 0, false},
		{"NaN", math.NaN(), 1, 0, false},
		{"Inf", 1, math.Inf(1), 0, false},
		{"NegativeGPU", 1, 1, -1, false},
		{"TooManyCPU", 200, 1, 0, true},
		{"TooMuchMemory", 1, 5000, 0, true},
		{"TooManyGPU", 1, 1, 16, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _, _, err := Suggest(tc.cpu, tc.mem, tc.gpu)
			if err == nil {
				t.Fatalf("Suggest(%v, %v, %d) = %s; want an error", tc.cpu, tc.mem, tc.gpu, s.Name)
			}
			if errors.Is(err, ErrNoSKU) != tc.noSKU {
				t.Errorf("errors.Is(%v, ErrNoSKU) = %v; want %v", err, !tc.noSKU, tc.noSKU)
			}
		})
	}
}

func TestCeilMilli(t *testing.T) {
	for _, tc := range []struct {
		in   float64
		want int64
	}{
		{1.2, 1200}, {1.7, 1700}, {4.7, 4700}, {13.7, 13700}, {5.7, 5700}, {11.7, 11700}, {16, 16000},
		{0.1, 100}, {1.2001, 1201}, {1.2000001, 1201}, {0.0001, 1}, {3.5, 3500}, {100, 100000},
	} {
		if got, err := ceilMilli(tc.in); err != nil || got != tc.want {
			t.Errorf("ceilMilli(%v) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}

// TestSuggest_TableSKUsInCatalog guards against a catalog edit that drops a
// SKU the published table names.
func TestSuggest_TableSKUsInCatalog(t *testing.T) {
	for _, r := range upgradeTable {
		if _, ok := Lookup(r.name); !ok {
			t.Errorf("table SKU %s is not in the catalog", r.name)
		}
	}
}
