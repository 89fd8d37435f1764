package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
)

func newCACmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "ca", Short: "The local certificate authority that signs moe's TLS certificates"}
	var out string
	export := &cobra.Command{
		Use:   "export",
		Short: "Print the CA certificate (PEM) so curl, requests or a trust store can trust moe",
		Long: `Print the CA certificate (PEM) so clients can trust moe's TLS:

  moe ca export > moe-ca.pem
  curl --cacert moe-ca.pem https://my-endpoint.local.inference.localhost:8443/score ...
  REQUESTS_CA_BUNDLE=moe-ca.pem python client.py
  sudo cp moe-ca.pem /usr/local/share/ca-certificates/moe.crt && sudo update-ca-certificates`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := os.ReadFile(filepath.Join(a.dir(), "pki", "ca.pem"))
			if err != nil {
				return &usageError{msg: fmt.Sprintf("no CA in %s: %v", a.dir(), err), hint: "start `moe serve` once, or point --data-dir / MOE_HOME at its data folder"}
			}
			if out != "" {
				return os.WriteFile(out, b, 0o644)
			}
			_, err = a.stdout.Write(b)
			return err
		},
	}
	export.Flags().StringVarP(&out, "output-file", "f", "", "write to this file instead of stdout")
	cmd.AddCommand(export)
	return cmd
}

func newSigningKeyCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "token-signing-key", Short: "The key that signs aml_token access tokens"}
	cmd.AddCommand(&cobra.Command{
		Use:   "rotate",
		Short: "Sign new tokens with a new key; tokens issued before stay valid until they expire",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.connect()
			if err != nil {
				return err
			}
			if err := c.api.RotateSigningKey(cmd.Context()); err != nil {
				return fmt.Errorf("rotate the token signing key: %w", err)
			}
			fmt.Fprintln(a.stderr, "Rotated the token signing key; earlier tokens stay valid until they expire")
			return nil
		},
	})
	return cmd
}
