package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"gopkg.in/yaml.v3"
)

// printOut writes v as json (default, as `az ml`), yaml, or a table built
// from rows when format is "table".
func printOut(w io.Writer, format string, v any, header []string, rows [][]string) error {
	switch format {
	case "", "json":
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(w, string(b))
		return err
	case "yaml":
		// go through JSON so yaml keys are the snake_case JSON names
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		var x any
		if err := json.Unmarshal(b, &x); err != nil {
			return err
		}
		enc := yaml.NewEncoder(w)
		enc.SetIndent(2)
		return enc.Encode(x)
	case "table":
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, strings.Join(header, "\t"))
		for _, r := range rows {
			fmt.Fprintln(tw, strings.Join(r, "\t"))
		}
		return tw.Flush()
	}
	return &usageError{msg: fmt.Sprintf("-o %q: must be json, yaml or table", format)}
}

// parseTraffic parses "blue=90 green=10" (spaces or commas).
func parseTraffic(flag, s string) (map[string]int, error) {
	out := map[string]int{}
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == ',' }) {
		k, v, ok := strings.Cut(f, "=")
		var n int
		if _, err := fmt.Sscanf(v, "%d", &n); !ok || k == "" || err != nil || fmt.Sprint(n) != strings.TrimSpace(v) {
			return nil, &usageError{msg: fmt.Sprintf("%s: %q is not deployment=percent", flag, f), hint: flag + ` "blue=90 green=10"`}
		}
		out[strings.ToLower(k)] = n
	}
	return out, nil
}
