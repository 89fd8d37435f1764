// Package sku holds the catalog of managed online endpoint instance types
// (VM SKUs) with their vCPU, memory and GPU counts, and the lookups built on it.
package sku

import (
	"sort"
	"strings"
)

// SKU is one instance type of the managed online endpoint catalog.
type SKU struct {
	// Name is the canonical ARM spelling, e.g. "Standard_DS3_v2".
	Name string `json:"name"`
	// Family is the VM family, e.g. "DSv2".
	Family string `json:"family"`
	// VCPU is the number of virtual CPUs.
	VCPU int `json:"vcpu"`
	// MemoryGB is the memory in GB (decimal as Azure publishes it).
	MemoryGB float64 `json:"memory_gb"`
	// GPU is the number of GPUs (0 for CPU SKUs); fractional GPUs are rounded up.
	GPU int `json:"gpu"`
}

// MilliCPU is VCPU in thousandths of a core, for resource limits.
func (s SKU) MilliCPU() int64 { return int64(s.VCPU) * 1000 }

// MemoryBytes is MemoryGB in bytes (GiB-based, as cgroups and Kubernetes count).
func (s SKU) MemoryBytes() int64 { return int64(s.MemoryGB * (1 << 30)) }

func row(family string, gpu int, names []string, vcpus []int, mems []float64) []SKU {
	out := make([]SKU, len(names))
	for i, n := range names {
		out[i] = SKU{Name: n, Family: family, VCPU: vcpus[i], MemoryGB: mems[i], GPU: gpu}
	}
	return out
}

// catalog is the managed online endpoint SKU list (facts/v2-endpoints.md §5).
var catalog = func() []SKU {
	var c []SKU
	c = append(c, row("DASv4", 0,
		[]string{"Standard_D2as_v4", "Standard_D4as_v4", "Standard_D8as_v4", "Standard_D16as_v4", "Standard_D32as_v4", "Standard_D48as_v4", "Standard_D64as_v4", "Standard_D96as_v4"},
		[]int{2, 4, 8, 16, 32, 48, 64, 96}, []float64{8, 16, 32, 64, 128, 192, 256, 384})...)
	c = append(c, row("DAv4", 0,
		[]string{"Standard_D2a_v4", "Standard_D4a_v4", "Standard_D8a_v4", "Standard_D16a_v4", "Standard_D32a_v4", "Standard_D48a_v4", "Standard_D64a_v4", "Standard_D96a_v4"},
		[]int{2, 4, 8, 16, 32, 48, 64, 96}, []float64{8, 16, 32, 64, 128, 192, 256, 384})...)
	c = append(c, row("DSv2", 0,
		[]string{"Standard_DS1_v2", "Standard_DS2_v2", "Standard_DS3_v2", "Standard_DS4_v2", "Standard_DS5_v2"},
		[]int{1, 2, 4, 8, 16}, []float64{3.5, 7, 14, 28, 56})...)
	c = append(c, row("ESv3", 0,
		[]string{"Standard_E2s_v3", "Standard_E4s_v3", "Standard_E8s_v3", "Standard_E16s_v3", "Standard_E32s_v3", "Standard_E48s_v3", "Standard_E64s_v3"},
		[]int{2, 4, 8, 16, 32, 48, 64}, []float64{16, 32, 64, 128, 256, 384, 432})...)
	c = append(c, row("FSv2", 0,
		[]string{"Standard_F2s_v2", "Standard_F4s_v2", "Standard_F8s_v2", "Standard_F16s_v2", "Standard_F32s_v2", "Standard_F48s_v2", "Standard_F64s_v2", "Standard_F72s_v2"},
		[]int{2, 4, 8, 16, 32, 48, 64, 72}, []float64{4, 8, 16, 32, 64, 96, 128, 144})...)
	c = append(c, row("FXMDVS", 0,
		[]string{"Standard_FX4mds", "Standard_FX12mds", "Standard_FX24mds", "Standard_FX36mds", "Standard_FX48mds"},
		[]int{4, 12, 24, 36, 48}, []float64{84, 252, 504, 756, 1008})...)
	for _, f := range []struct{ fam, suffix string }{{"LASv3", "as_v3"}, {"LSv2", "s_v2"}, {"LSv3", "s_v3"}} {
		var names []string
		for _, n := range []int{8, 16, 32, 48, 64, 80} {
			names = append(names, "Standard_L"+itoa(n)+f.suffix)
		}
		c = append(c, row(f.fam, 0, names, []int{8, 16, 32, 48, 64, 80}, []float64{64, 128, 256, 384, 512, 640})...)
	}
	c = append(c,
		SKU{"Standard_NC24ads_A100_v4", "NCADS A100 v4", 24, 220, 1},
		SKU{"Standard_NC48ads_A100_v4", "NCADS A100 v4", 48, 440, 2},
		SKU{"Standard_NC96ads_A100_v4", "NCADS A100 v4", 96, 880, 4},
		SKU{"Standard_NC4as_T4_v3", "NCASv3_T4", 4, 28, 1},
		SKU{"Standard_NC8as_T4_v3", "NCASv3_T4", 8, 56, 1},
		SKU{"Standard_NC16as_T4_v3", "NCASv3_T4", 16, 110, 1},
		SKU{"Standard_NC64as_T4_v3", "NCASv3_T4", 64, 440, 4},
		SKU{"Standard_NC6s_v2", "NCSv2", 6, 112, 1},
		SKU{"Standard_NC12s_v2", "NCSv2", 12, 224, 2},
		SKU{"Standard_NC24s_v2", "NCSv2", 24, 448, 4},
		SKU{"Standard_NC6s_v3", "NCSv3", 6, 112, 1},
		SKU{"Standard_NC12s_v3", "NCSv3", 12, 224, 2},
		SKU{"Standard_NC24s_v3", "NCSv3", 24, 448, 4},
		SKU{"Standard_NC40ads_H100_v5", "NCADS H100 v5", 40, 320, 1},
		SKU{"Standard_NC80adis_H100_v5", "NCADS H100 v5", 80, 640, 2},
		SKU{"Standard_ND96amsr_A100_v4", "NDAMSv4 A100", 96, 1800, 8},
		SKU{"Standard_ND96asr_v4", "NDASv4 A100", 96, 900, 8},
		SKU{"Standard_ND40rs_v2", "NDSv2", 40, 672, 8},
		SKU{"Standard_ND96is_H100_v5", "NDv5 H100", 96, 1900, 8},
		SKU{"Standard_ND96isr_H100_v5", "NDv5 H100", 96, 1900, 8},
		SKU{"Standard_NV6ads_A10_v5", "NVADS A10 v5", 6, 55, 1},
		SKU{"Standard_NV12ads_A10_v5", "NVADS A10 v5", 12, 110, 1},
		SKU{"Standard_NV18ads_A10_v5", "NVADS A10 v5", 18, 220, 1},
		SKU{"Standard_NV36ads_A10_v5", "NVADS A10 v5", 36, 440, 1},
		SKU{"Standard_NV36adms_A10_v5", "NVADS A10 v5", 36, 880, 1},
		SKU{"Standard_NV72ads_A10_v5", "NVADS A10 v5", 72, 880, 2},
	)
	sort.SliceStable(c, func(i, j int) bool {
		if c[i].GPU != c[j].GPU {
			return c[i].GPU < c[j].GPU
		}
		if c[i].VCPU != c[j].VCPU {
			return c[i].VCPU < c[j].VCPU
		}
		if c[i].MemoryGB != c[j].MemoryGB {
			return c[i].MemoryGB < c[j].MemoryGB
		}
		return c[i].Name < c[j].Name
	})
	return c
}()

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [8]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}

// All returns the catalog, ordered by GPU count, vCPU, memory and name.
// The returned slice is a copy; callers may modify it.
func All() []SKU { return append([]SKU(nil), catalog...) }

// Lookup finds a SKU by name, case-insensitively ("STANDARD_DS3_V2" and
// "Standard_DS3_v2" are the same instance type, as on Azure).
func Lookup(name string) (SKU, bool) {
	for _, s := range catalog {
		if strings.EqualFold(s.Name, name) {
			return s, true
		}
	}
	return SKU{}, false
}
