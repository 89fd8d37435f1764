package sku

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// upgradeRow is one row of the published v1 → managed online endpoint SKU
// table (facts/v1-services.md §5.2). Bounds are in thousandths (of a core,
// of a GB); each row covers cpu ∈ (cpuLo, cpuHi] and memory ∈ (memLo, memHi].
type upgradeRow struct {
	cpuLo, cpuHi int64
	memLo, memHi int64
	name         string
}

// upgradeTable is the published table, in its published order.
var upgradeTable = []upgradeRow{
	{0, 1000, 0, 1200, "Standard_DS1_v2"},
	{1000, 2000, 1200, 1700, "Standard_F2s_v2"},
	{1000, 2000, 1700, 4700, "Standard_DS2_v2"},
	{1000, 2000, 4700, 13700, "Standard_E2s_v3"},
	{2000, 4000, 0, 5700, "Standard_F4s_v2"},
	{2000, 4000, 5700, 11700, "Standard_DS3_v2"},
	{2000, 4000, 11700, 16000, "Standard_E4s_v3"},
}

// ErrNoSKU is returned by Suggest when no SKU of the catalog covers a request.
var ErrNoSKU = errors.New("sku: no instance type covers the request")

// Suggest maps a legacy v1 web service's resource requests (CPU cores,
// memory in GB, GPU count) to a managed online endpoint instance type.
//
// Requests inside the published upgrade table (facts/v1-services.md §5.2,
// "(a, b]" meaning greater than a and at most b) get that table's SKU and
// inTable is true; row describes the row, e.g.
// "cpu (1, 2], memory (1.2, 1.7] GB → Standard_F2s_v2".
//
// The table has holes (cpu ≤ 1 with memory > 1.2, cpu in (1, 2] with memory
// ≤ 1.2, cpu > 4, any GPU...). Outside it, Suggest picks the smallest SKU of
// the catalog (fewest GPUs, then vCPUs, then memory, then name) whose vCPU
// and memory cover the request; when gpu > 0 only GPU SKUs with at least gpu
// GPUs are considered. inTable is then false and row says so. This policy is
// moe's: the published material defines nothing outside the table.
//
// Comparisons are exact: each value is taken as the shortest decimal that
// round-trips its float64 (what the JSON document said, e.g. 1.2) and
// compared in integer thousandths, rounding any finer remainder up, so 1.2 is
// in the first row and 1.2001 is not. cpu and memGB must be finite and > 0
// and gpu ≥ 0; otherwise, or when nothing covers the request (ErrNoSKU),
// Suggest returns an error.
func Suggest(cpu, memGB float64, gpu int) (s SKU, row string, inTable bool, err error) {
	cpuM, err := ceilMilli(cpu)
	if err != nil || cpuM <= 0 {
		return SKU{}, "", false, fmt.Errorf("sku: cpu must be a number greater than 0 (got %v)", cpu)
	}
	memM, err := ceilMilli(memGB)
	if err != nil || memM <= 0 {
		return SKU{}, "", false, fmt.Errorf("sku: memory must be a number of GB greater than 0 (got %v)", memGB)
	}
	if gpu < 0 {
		return SKU{}, "", false, fmt.Errorf("sku: gpu must not be negative (got %d)", gpu)
	}
	if gpu == 0 {
		for _, r := range upgradeTable {
			if cpuM > r.cpuLo && cpuM <= r.cpuHi && memM > r.memLo && memM <= r.memHi {
				s, ok := Lookup(r.name)
				if !ok {
					return SKU{}, "", false, fmt.Errorf("sku: table SKU %s is missing from the catalog", r.name)
				}
				return s, fmt.Sprintf("cpu (%s, %s], memory (%s, %s] GB → %s",
					milliString(r.cpuLo), milliString(r.cpuHi), milliString(r.memLo), milliString(r.memHi), s.Name), true, nil
			}
		}
	}
	for _, c := range catalog {
		if (gpu == 0) != (c.GPU == 0) || c.GPU < gpu {
			continue
		}
		cm, err := ceilMilli(c.MemoryGB)
		if err != nil {
			continue
		}
		if int64(c.VCPU)*1000 >= cpuM && cm >= memM {
			what := fmt.Sprintf("≥ %s vCPU and ≥ %s GB", milliString(cpuM), milliString(memM))
			if gpu > 0 {
				what = fmt.Sprintf("≥ %d GPU, ", gpu) + what
			}
			return c, fmt.Sprintf("outside the published table: smallest catalog SKU with %s → %s", what, c.Name), false, nil
		}
	}
	return SKU{}, "", false, fmt.Errorf("%w (cpu %v, memory %v GB, gpu %d)", ErrNoSKU, cpu, memGB, gpu)
}

// ceilMilli returns ⌈1000·f⌉ computed on the shortest decimal representation
// of f, without floating-point arithmetic.
func ceilMilli(f float64) (int64, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 1e12 {
		return 0, fmt.Errorf("sku: %v is out of range", f)
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	intPart, frac, _ := strings.Cut(s, ".")
	n, err := strconv.ParseInt(intPart, 10, 64)
	if err != nil {
		return 0, err
	}
	n *= 1000
	head := frac
	if len(head) > 3 {
		head = head[:3]
	}
	for len(head) < 3 {
		head += "0"
	}
	h, err := strconv.ParseInt(head, 10, 64)
	if err != nil {
		return 0, err
	}
	n += h
	rest := len(frac) > 3 && strings.Trim(frac[3:], "0") != ""
	if neg {
		// ⌈-x⌉ = -⌊x⌋: the remainder is dropped.
		return -n, nil
	}
	if rest {
		n++
	}
	return n, nil
}

// milliString prints thousandths as a short decimal: 1200 → "1.2".
func milliString(m int64) string {
	s := strconv.FormatInt(m/1000, 10)
	if r := m % 1000; r != 0 {
		s += strings.TrimRight(fmt.Sprintf(".%03d", r), "0")
	}
	return s
}
