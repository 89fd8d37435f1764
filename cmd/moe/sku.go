package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/moe-serving/moe/internal/sku"
)

func newSKUCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "sku", Short: "Instance types (VM SKUs) of managed online endpoints"}
	var output string
	list := &cobra.Command{
		Use:   "list",
		Short: "Print the SKU catalog with vCPU, memory and GPUs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			all := sku.All()
			var rows [][]string
			for _, s := range all {
				rows = append(rows, []string{s.Name, s.Family, fmt.Sprint(s.VCPU), fmt.Sprint(s.MemoryGB), fmt.Sprint(s.GPU)})
			}
			return printOut(a.stdout, output, all, []string{"NAME", "FAMILY", "VCPU", "MEMORY_GB", "GPU"}, rows)
		},
	}
	list.Flags().StringVarP(&output, "output", "o", "table", "output format: json, yaml or table")
	cmd.AddCommand(list)
	return cmd
}
